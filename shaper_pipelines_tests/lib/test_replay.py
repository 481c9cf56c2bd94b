"""The capacity-replay protocol's mechanics on small traces worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib import replay as R


def trace(demand) -> R.Trace:
    demand = np.asarray(demand, dtype=float)
    index = pd.date_range("2026-11-01", periods=len(demand), freq="5min", tz="UTC")
    return R.Trace(demand, index, c=10.0)


def test_reactive_tracking_lags_one_step_boots_two_and_scales_in_after_three():
    # c = 10 at target 0.5: 5 per instance. Demand jumps from 5 (1 instance) to 20 (4 instances).
    t = trace([5, 5, 20, 20, 20, 20, 5, 5, 5, 5, 5, 5])
    s = R.serving(t, 0.5)
    # Step 3 sees step 2's 20 and launches 3; they serve from step 5.
    assert list(s[:7]) == [1, 1, 1, 1, 1, 4, 4]
    # Wishes fall to 1 from step 7 (seeing step 6); after three such steps it drops to 1.
    assert list(s[7:]) == [4, 4, 1, 1, 1]


def test_a_plan_is_a_floor_never_a_ceiling():
    t = trace([5, 5, 20, 20, 20, 20, 5, 5])
    plan = np.array([0, 0, 4, 4, 0, 0, 0, 0])
    s = R.serving(t, 0.5, plan)
    assert s[2] == 4 and s[3] == 4  # warm when its step begins
    assert s[4] >= 3  # the reactive layer launched for the demand it saw and keeps it
    assert (s >= plan).all()


def test_scores_and_ratio_against_the_reactive_frontier():
    # Every day the same sudden jump: reacting to it breaches while the new instances boot;
    # yesterday's demand as a floor has them warm in time.
    day = np.full(R.DAY, 50.0)
    day[100:130] = 400.0
    rng = np.random.default_rng(1)
    demand = np.tile(day, 6) * (1 + rng.normal(0, 0.01, 6 * R.DAY))
    index = pd.date_range("2026-11-01", periods=len(demand), freq="5min", tz="UTC")
    t = R.prepare(pd.Series(demand, index=index))
    assert t.c == pytest.approx(np.percentile(demand, 99) / 10)
    frontier = R.reactive_frontier(t)
    assert len(frontier) == len(R.TARGETS) == 27
    reactive = R.score(t, R.serving(t, 0.7))
    assert reactive.breach_pct > 0 and R.breach_ratio(reactive, frontier) <= 1.0
    perfect = R.score(t, np.maximum(1, np.ceil(t.demand / t.c)).astype(int))
    assert perfect.breach_pct == 0 and R.breach_ratio(perfect, frontier) == 0
    floor = R.floor_from_forecast(t, R.seasonal_naive(t))
    assert R.breach_ratio(R.score(t, R.serving(t, 0.7, floor)), frontier) < 0.5
    assert R.mae_ratio(t, R.seasonal_naive(t)) == pytest.approx(1.0)


def test_short_traces_test_fewer_days_and_empty_ones_are_refused_clearly():
    index = pd.date_range("2026-11-01", periods=3 * R.DAY + 40, freq="5min", tz="UTC")
    t = R.prepare(pd.Series(np.arange(len(index), dtype=float), index=index))
    assert t.test_days == 2 and t.origins() == [len(index) - 2 * R.DAY, len(index) - R.DAY]
    index = pd.date_range("2026-11-01", periods=R.DAY + 100, freq="5min", tz="UTC")
    with pytest.raises(ValueError, match="at least 2 days"):
        R.prepare(pd.Series(np.ones(len(index)), index=index))
    index = pd.date_range("2026-11-01", periods=6 * R.DAY, freq="5min", tz="UTC")
    with pytest.raises(ValueError, match="no load"):
        R.prepare(pd.Series(np.zeros(len(index)), index=index))
