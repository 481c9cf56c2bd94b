"""Scaling floors: chosen by replaying the series' own history, bounded, on the caller's grid."""

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib import replay
from shaper_pipelines.lib.action_budget import segments
from shaper_pipelines.lib.planning import PlanError, daily_cycle, make_plan


def _office_hours(days: int, step: str = "5min", seed: int = 0) -> pd.Series:
    """Quiet nights, a steep 08:00 rise (too fast for reactive tracking), busy days."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-03-02", periods=days * pd.Timedelta("1D") // pd.Timedelta(step), freq=step, tz="UTC")
    hour = (index.hour + index.minute / 60).to_numpy()
    level = np.where((hour >= 8) & (hour < 18), 100.0, 10.0)
    return pd.Series(level * (1 + 0.05 * rng.standard_normal(len(index))), index=index)


def test_office_hours_get_a_floor_that_covers_the_morning_rise():
    s = _office_hours(12)
    c = float(np.percentile(s, 99)) / 10
    plan = make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=c, warmup=pd.Timedelta(minutes=10))
    f = plan.frame
    assert plan.rule.rule.quantile is not None, plan.rule.why
    assert len(f) == 288 and f["desired_capacity"].dtype == np.int64 and (f["desired_capacity"] >= 1).all()
    at_eight = f.loc[f["timestamp"].dt.hour == 8, "desired_capacity"].iloc[0]
    assert at_eight * c * 0.7 >= 100 * 0.95, "the floor is warm when the rise begins"
    night = f.loc[f["timestamp"].dt.hour == 2, "desired_capacity"].max()
    assert night < at_eight
    assert (f["launch_at"] == f["timestamp"] - pd.Timedelta(minutes=10)).all()
    assert f["reason"].str.len().min() > 10


def test_the_floor_beats_reactive_tracking_in_replay():
    s = _office_hours(16, seed=1)
    trace = replay.prepare(s)
    frontier = replay.reactive_frontier(trace)
    plan = np.zeros(len(trace.demand), dtype=np.int64)
    for o in trace.origins():
        p = make_plan(pd.Series(trace.demand[:o], index=trace.index[:o]), pd.Timedelta(days=1),
                      capacity_per_instance=trace.c)
        plan[o:o + replay.DAY] = p.frame["desired_capacity"].to_numpy()
    s_plan = replay.score(trace, replay.serving(trace, 0.7, plan))
    assert replay.breach_ratio(s_plan, frontier) < 0.5


def test_noise_gets_no_floor():
    rng = np.random.default_rng(5)
    index = pd.date_range("2026-03-02", periods=10 * 288, freq="5min", tz="UTC")
    s = pd.Series(np.abs(50 + 10 * rng.standard_normal(len(index))), index=index)
    assert daily_cycle(s.to_numpy(), 288) < 0.3
    plan = make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=10.0, min_capacity=2)
    # Whatever rule the replay picks, the floor never goes below the configured minimum.
    assert (plan.frame["desired_capacity"] >= 2).all()


def test_one_minute_history_plans_in_constant_five_minute_blocks():
    s = _office_hours(9, step="1min")
    plan = make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=15.0)
    f = plan.frame
    assert len(f) == 1440 and f["timestamp"].iloc[0] == s.index[-1] + pd.Timedelta(minutes=1)
    blocks = f.groupby(f["timestamp"].dt.floor("5min"))["desired_capacity"].nunique()
    assert (blocks == 1).all()


def test_bounds_and_bad_parameters_are_refused():
    s = _office_hours(9)
    with pytest.raises(PlanError, match="above the maximum 3"):
        make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=5.0, max_capacity=3)
    with pytest.raises(PlanError, match="positive number"):
        make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=float("nan"))
    with pytest.raises(PlanError, match="target utilisation"):
        make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=5.0, target_utilization=1.5)


def test_a_plan_made_later_than_its_history_starts_at_the_next_step_after_now():
    s = _office_hours(9)
    midnight = s.index[-1] + pd.Timedelta(minutes=5)  # the history ends with the 23:55 step
    now = midnight + pd.Timedelta(hours=3, minutes=7)
    plan = make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=15.0, start=now)
    f = plan.frame
    assert f["timestamp"].iloc[0] == midnight + pd.Timedelta(hours=3, minutes=10) and len(f) == 288
    assert any("before the plan starts" in n for n in plan.notes)
    # The same floor as a plan from midnight, three hours and ten minutes on (the week's profile;
    # a forecast fitted for another horizon may differ a little).
    kw = dict(capacity_per_instance=15.0, max_actions=None, use_forecast=False)
    from_midnight = make_plan(s, pd.Timedelta(hours=30), **kw)
    later = make_plan(s, pd.Timedelta(hours=24), start=now, **kw)
    assert later.rule.rule.quantile is not None
    assert np.array_equal(later.frame["desired_capacity"].to_numpy(),
                          from_midnight.frame["desired_capacity"].to_numpy()[38:38 + 288])


def test_the_floor_changes_at_most_as_often_as_its_budget_allows_and_says_why():
    s = _office_hours(12, seed=3)
    c = float(np.percentile(s, 99)) / 40  # many instances, so the floor moves by one often
    unlimited = make_plan(s, pd.Timedelta(hours=48), capacity_per_instance=c, max_actions=None).frame
    budgeted = make_plan(s, pd.Timedelta(hours=48), capacity_per_instance=c, max_actions=6)
    f = budgeted.frame
    assert segments(unlimited["desired_capacity"].to_numpy()) > 6
    assert segments(f["desired_capacity"].to_numpy()) <= 6
    assert any("within a budget of 6 scheduled actions" in n for n in budgeted.notes)
    assert f["reason"].str.contains(r"^held at \d+ from \d\d:\d\d to \d\d:\d\d to keep within 6 scheduled actions; "
                                    r"the plan asks \d+\.\.\d+ here").any()
    assert (f["desired_capacity"] >= 1).all()


def test_one_spike_in_the_backtest_is_not_a_reason_for_a_floor():
    rng = np.random.default_rng(2)
    index = pd.date_range("2026-03-02", periods=10 * 288, freq="5min", tz="UTC")
    values = 50 + 2 * rng.standard_normal(len(index))
    values[-100] = 400  # one five-minute spike two days before the plan
    s = pd.Series(values, index=index)
    plan = make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=40.0)
    assert plan.rule.rule.quantile is None
    assert "breached on 1 step(s)" in plan.rule.why and "only add cost" in plan.rule.why
    assert (plan.frame["reason"] == f"floor at the minimum 1: {plan.rule.why}").all()  # whole, not cut


def test_hourly_samples_are_planned_between_the_samples_so_a_rise_is_not_an_hour_late():
    s = _office_hours(12).resample("1h").first()  # 10 at 07:00, 100 at 08:00: sampled, not averaged
    c = 10.0
    plan = make_plan(s, pd.Timedelta(hours=24), capacity_per_instance=c, use_forecast=False)
    f = plan.frame.set_index("timestamp")
    assert len(f) == 24 and any("interpolated between the 3600s samples" in n for n in plan.notes)
    assert plan.rule.rule.quantile is not None, plan.rule.why
    # Between 07:00 and 08:00 the load climbs towards the 08:00 sample; the 07:00 hour holds for it.
    seven = f.loc[f.index.hour == 7, "desired_capacity"].iloc[0]
    assert seven * c * 0.7 >= 0.9 * 95

