"""Deriving profiles: shapes fitted to real traces, uplifts measured around events, scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.derive import (
    Behaviour, Scenario, behaviour_profiles, calendar_profiles, fit_weekly_shape, history_profile,
    measure_uplift, scenario_profile,
)
from shaper_pipelines.lib.history import load_history
from shaper_pipelines.lib.profile import render
from shaper_pipelines_tests.conftest import REAL_DATA


@pytest.mark.parametrize("trace", [f"cpu_{i}" for i in range(5)])
def test_fitted_shape_beats_a_flat_profile_on_the_held_back_day(trace):
    series, _ = load_history(REAL_DATA / "crane" / f"{trace}.csv", 300)
    cut = series.index[-1].floor("D")
    train, test = series[series.index < cut], series[series.index >= cut]
    profile = history_profile("svc", "cpu", train, lineage={"window": "test"})
    rendered = render(profile, start=test.index[0].timestamp(), step=300, duration=len(test) * 300)
    derived = np.mean(np.abs(rendered.values - test.to_numpy()))
    flat = np.mean(np.abs(train.mean() - test.to_numpy()))
    assert derived < 0.8 * flat


def synthetic(days: int = 28) -> pd.Series:
    index = pd.date_range("2026-10-05", periods=days * 288, freq="5min", tz="UTC")  # a Monday
    hour = index.hour + index.minute / 60
    base = 100 + 80 * np.exp(-((hour - 14) ** 2) / 8)
    weekend = np.where(index.day_of_week >= 5, 0.5, 1.0)
    return pd.Series(base * weekend, index=index)


def test_fit_recovers_peak_hour_valley_and_weekend():
    shape = fit_weekly_shape(synthetic())
    assert int(np.argmax(shape.hourly)) == 14
    assert shape.weekday[5] < 0.6 and shape.weekday[0] == pytest.approx(1.0)
    assert shape.valley == pytest.approx(50, rel=0.05)  # a weekend night


def test_uplift_is_measured_against_the_same_hours_of_ordinary_days():
    series = synthetic()
    events = pd.DataFrame({"name": ["close-1", "close-2", "close-3"], "kind": ["month_end"] * 3,
                           "start": pd.to_datetime(["2026-10-07 18:00", "2026-10-21 18:00", "2026-11-18 18:00"], utc=True),
                           "end": pd.to_datetime(["2026-10-07 22:00", "2026-10-21 22:00", "2026-11-18 22:00"], utc=True),
                           "expected_uplift": [1.2] * 3})
    boosted = series.copy()
    for s, e in zip(events["start"][:2], events["end"][:2]):
        boosted[(boosted.index >= s) & (boosted.index < e)] *= 1.6
    uplift = measure_uplift(boosted, events, "month_end")
    assert uplift.occurrences == 2 and uplift.ratio == pytest.approx(1.6, rel=0.02)
    profiles = calendar_profiles("svc", "cpu", boosted, events, now=pd.Timestamp("2026-11-01", tz="UTC"),
                                 horizon=pd.Timedelta(days=30), lineage={})
    assert len(profiles) == 1
    p = profiles[0]
    assert p.source.value == "calendar" and p.lineage["uplift_source"] == "measured"
    assert p.lineage["uplift"] == pytest.approx(1.6, rel=0.02) and p.duration == 4 * 3600
    assert p.trigger_conditions[0].event == "close-3"
    # No past occurrence: the calendar's expected uplift is used, and the profile says so.
    future_only = events.iloc[2:]
    p2 = calendar_profiles("svc", "cpu", series, future_only, now=pd.Timestamp("2026-11-01", tz="UTC"),
                           horizon=pd.Timedelta(days=30), lineage={})[0]
    assert p2.lineage["uplift_source"] == "configured" and p2.lineage["uplift"] == 1.2


def test_behaviour_and_scenario_profiles_scale_the_baseline():
    series = synthetic()
    network, cpu = behaviour_profiles("svc", series, Behaviour(10, 0.02, 1000), lineage={})
    monday_2pm = network.load_pattern.values[14]
    assert monday_2pm == pytest.approx(series[series.index.day_of_week == 0].groupby(
        series[series.index.day_of_week == 0].index.hour).mean()[14], rel=1e-3)
    assert cpu.load_pattern.values[14] == pytest.approx(monday_2pm * 0.02, rel=1e-3)
    scenario = Scenario("one-click", "ab_test", "svc", "cpu", 0.3, [(0.5, 3600.0), (1.0, 3600.0)])
    p = scenario_profile(scenario, series, lineage={})
    start = pd.Timestamp("2026-11-02 14:00", tz="UTC").timestamp()  # a Monday peak
    r = render(p, start=start, step=3600, duration=4 * 3600)
    baseline = fit_weekly_shape(series).at(pd.to_datetime(r.timestamps, unit="s", utc=True))
    assert np.allclose(r.values / baseline, [1.0, 1.15, 1.3, 1.3], rtol=1e-3)


def test_re_deriving_unchanged_input_gives_the_same_version():
    series = synthetic()
    a = history_profile("svc", "cpu", series, lineage={"window": "w"})
    b = history_profile("svc", "cpu", series.copy(), lineage={"window": "w"})
    c = history_profile("svc", "cpu", series * 1.1, lineage={"window": "w"})
    assert a.content_hash == b.content_hash != c.content_hash
