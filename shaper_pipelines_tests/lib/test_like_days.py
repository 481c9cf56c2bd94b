"""Calendar-aware forecasts (issue 13): day kinds on the series' own clock, holiday and event
effects learnt from past occurrences, the per-kind verdict, and plans that follow it. Series are
built so the right answer is known; one test runs on the real bike trace."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.day_kinds import AFTER, BEFORE, HOLIDAY, WEEKEND, WORKDAY, DayCalendar, from_region
from shaper_pipelines.lib.forecast import forecast


def _office(start: str, end: str, holiday_level: float, calendar: DayCalendar, seed: int = 0,
            freq: str = "1h") -> pd.Series:
    """Working days busy (100 at midday), weekends at 40, holidays at ``holiday_level``, 3 % noise."""
    index = pd.date_range(start, end, freq=freq, tz="UTC", inclusive="left")
    kinds = calendar.kinds(calendar.dates(index))
    hour = (index.hour + index.minute / 60).to_numpy()
    shape = 0.3 + 0.7 * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    level = np.where(kinds == HOLIDAY, holiday_level, np.where(kinds == WEEKEND, 40.0, 100.0))
    rng = np.random.default_rng(seed)
    return pd.Series(level * shape * (1 + 0.03 * rng.standard_normal(len(index))), index=index)


def test_day_kinds_know_subdivisions_and_the_days_around_a_holiday():
    dc = from_region("US-DC", pd.Timestamp("2012-04-01", tz="UTC"), pd.Timestamp("2012-04-30", tz="UTC"))
    us = from_region("US", pd.Timestamp("2012-04-01", tz="UTC"), pd.Timestamp("2012-04-30", tz="UTC"))
    assert dt.date(2012, 4, 16) in dc.holidays and dt.date(2012, 4, 16) not in us.holidays  # Emancipation Day
    days = np.arange(np.datetime64("2012-04-13"), np.datetime64("2012-04-19"))  # Friday to Wednesday
    assert list(dc.kinds(days)) == [WORKDAY, WEEKEND, WEEKEND, HOLIDAY, AFTER, WORKDAY]
    july = from_region("US", pd.Timestamp("2012-07-01", tz="UTC"), pd.Timestamp("2012-07-10", tz="UTC"))
    days = np.arange(np.datetime64("2012-07-03"), np.datetime64("2012-07-06"))  # the 4th is a Wednesday
    assert list(july.kinds(days)) == [BEFORE, HOLIDAY, AFTER]
    with pytest.raises(ValueError, match="subdivision"):
        from_region("US-XX", pd.Timestamp("2012-04-01", tz="UTC"), pd.Timestamp("2012-04-30", tz="UTC"))


def test_naive_timestamps_are_their_own_wall_clock_and_aware_ones_are_converted():
    steps = pd.DatetimeIndex(["2026-11-26 02:00"], tz="UTC")  # Thanksgiving 02:00, or Wednesday 21:00 in New York
    aware = from_region("US", steps[0], steps[0] + pd.Timedelta(days=1), zone="America/New_York")
    naive = from_region("US", steps[0], steps[0] + pd.Timedelta(days=1), zone="America/New_York", naive=True)
    assert aware.kinds(aware.dates(steps))[0] == BEFORE
    assert naive.kinds(naive.dates(steps))[0] == HOLIDAY


def test_a_quiet_holiday_is_learnt_from_past_holidays_not_taken_for_a_weekend():
    # Holidays at 10, far below the weekend's 40: the prior ("like a weekend day") is wrong here and
    # the past year's holidays say so. The history ends the evening before Thanksgiving.
    start, end = pd.Timestamp("2025-09-01", tz="UTC"), pd.Timestamp("2026-11-27", tz="UTC")
    cal = from_region("US", start, end + pd.Timedelta(days=2))
    s = _office(str(start.date()), "2026-11-26", 10.0, cal)
    f = forecast(s, pd.Timedelta(hours=24), calendar=cal)
    day = f.frame["yhat"].to_numpy()
    truth = _office("2026-11-26", "2026-11-27", 10.0, cal, seed=1).to_numpy()
    assert np.mean(np.abs(day - truth)) < 3, (f.served, day.round(1))
    [record] = [r for r in f.served if r.get("date") == "2026-11-26"]
    assert record["kind"] == HOLIDAY and record["model"] == "like_days"
    assert "past holiday" in record["why"]
    # Without the calendar the same history forecasts a working day.
    assert forecast(s, pd.Timedelta(hours=24)).frame["yhat"].mean() > 3 * day.mean()


def test_the_day_after_a_holiday_is_not_a_copy_of_the_holiday():
    # Yesterday was Thanksgiving (quiet); "yesterday repeated" would forecast a quiet Friday.
    start = pd.Timestamp("2026-09-01", tz="UTC")
    cal = from_region("US", start, pd.Timestamp("2026-12-01", tz="UTC"))
    s = _office("2026-09-01", "2026-11-27", 10.0, cal)
    f = forecast(s, pd.Timedelta(hours=24), models=["seasonal_naive_day"], calendar=cal)
    truth = _office("2026-11-27", "2026-11-28", 10.0, cal, seed=1).to_numpy()
    assert np.mean(np.abs(f.frame["yhat"].to_numpy() - truth)) < 5, f.served
    plain = forecast(s, pd.Timedelta(hours=24), models=["seasonal_naive_day"])
    assert np.mean(np.abs(plain.frame["yhat"].to_numpy() - truth)) > 20


def _with_batches(s: pd.Series, cal: DayCalendar, factor: float) -> pd.Series:
    out = s.copy()
    for mask in cal.event_steps(s.index).values():
        out[mask] *= factor
    return out


def _batch_calendar(tmp_path, uplift: float | None) -> str:
    folder = tmp_path / "calendars"
    folder.mkdir()
    line = f"\n    expected_uplift: {uplift}" if uplift else ""
    (folder / "batches.yaml").write_text(
        "timezone: UTC\nevents:\n  - name: month-end\n    kind: month_end\n    rule: last_business_day_of_month\n"
        f'    time: "18:00"\n    duration: 6h{line}\n')
    return str(folder)


def test_an_event_takes_its_measured_effect_over_the_configured_uplift(tmp_path):
    # Month-end batches double the load; the calendar file says 1.3. Four past month-ends teach 2.
    folder = _batch_calendar(tmp_path, 1.3)
    start, end = pd.Timestamp("2026-06-01", tz="UTC"), pd.Timestamp("2026-10-30", tz="UTC")
    cal = from_region("", start, end + pd.Timedelta(days=3), folder=folder)
    s = _with_batches(_office("2026-06-01", "2026-10-30", 40.0, cal), cal, 2.0)
    f = forecast(s, pd.Timedelta(hours=24), calendar=cal)  # Friday 30 October, the last business day
    [record] = [r for r in f.served if r.get("event") == "month-end"]
    assert 1.6 < record["factor"] < 2.05 and "applied" in record["why"], record
    truth = _with_batches(_office("2026-10-30", "2026-10-31", 40.0, cal, seed=1), cal, 2.0).to_numpy()
    assert np.mean(np.abs(f.frame["yhat"].to_numpy() - truth)) < 6


def test_an_event_with_no_past_occurrence_applies_its_configured_uplift(tmp_path):
    folder = _batch_calendar(tmp_path, 1.5)
    start, end = pd.Timestamp("2026-10-05", tz="UTC"), pd.Timestamp("2026-10-30", tz="UTC")
    cal = from_region("", start, end + pd.Timedelta(days=3), folder=folder)
    s = _office("2026-10-05", "2026-10-30", 40.0, cal)
    f = forecast(s, pd.Timedelta(hours=24), calendar=cal)
    [record] = [r for r in f.served if r.get("event") == "month-end"]
    assert record["factor"] == 1.5 and "no past occurrence" in record["why"]
    batch = cal.event_steps(pd.DatetimeIndex(f.frame["timestamp"]))["month-end"]
    plain = forecast(s, pd.Timedelta(hours=24))
    ratio = f.frame["yhat"].to_numpy()[batch] / plain.frame["yhat"].to_numpy()[batch]
    assert np.allclose(ratio, 1.5, rtol=0.15)


def test_holiday_floors_follow_the_like_day_forecast():
    from shaper_pipelines.lib.planning import make_plan

    start = pd.Timestamp("2025-10-01", tz="UTC")
    cal = from_region("US", start, pd.Timestamp("2026-11-28", tz="UTC"))
    s = _office("2025-10-01", "2026-11-25", 10.0, cal, freq="5min")  # ends Tuesday night
    plan = make_plan(s, pd.Timedelta(hours=48), capacity_per_instance=10, target_utilization=0.7,
                     forecast_options={"calendar": cal}, max_actions=None)
    frame = plan.frame.set_index("timestamp")
    wednesday = frame.loc["2026-11-25 10:00":"2026-11-25 14:00", "desired_capacity"].max()
    thanksgiving = frame.loc["2026-11-26 10:00":"2026-11-26 14:00", "desired_capacity"].max()
    assert thanksgiving <= wednesday / 4, (plan.rule.why, frame["reason"].loc["2026-11-26 12:00"])


def test_holidays_of_the_real_bike_trace_beat_seasonal_naive():
    # Washington D.C. bike rentals (data/real/bike): Memorial Day 2012, forecast from the history
    # before it with the District's calendar; seasonal naive copies the Monday before.
    from benchmarks.calendar import TRACE, history_before, seasonal_naive
    from shaper_pipelines.lib.history import read_history_csv

    raw = read_history_csv(TRACE)
    origin = pd.Timestamp("2012-05-28", tz="UTC")
    series = history_before(raw, origin)
    cal = from_region("US-DC", series.index[0], origin + pd.Timedelta(days=2), naive=True)
    f = forecast(series, origin + pd.Timedelta(hours=24) - series.index[-1], calendar=cal)
    day = pd.date_range(origin, periods=24, freq="h")
    truth = raw.reindex(day).to_numpy()
    ok = np.isfinite(truth)
    ours = np.mean(np.abs(f.frame.set_index("timestamp")["yhat"].reindex(day).to_numpy() - truth)[ok])
    naive = np.mean(np.abs(seasonal_naive(series, day) - truth)[ok])
    assert ours < 0.7 * naive, f.served


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_event_steps_do_not_depend_on_the_index_unit(tmp_path, unit):
    # pandas keeps the unit it parsed: a history read from Unix seconds has second-unit stamps.
    cal = from_region("", pd.Timestamp("2026-10-01", tz="UTC"), pd.Timestamp("2026-11-10", tz="UTC"),
                      folder=_batch_calendar(tmp_path, 1.4))
    index = pd.date_range("2026-10-28", "2026-11-02", freq="1h", tz="UTC").as_unit(unit)
    steps = cal.event_steps(index)["month-end"]
    assert list(index[steps].hour) == [18, 19, 20, 21, 22, 23]  # Friday 30 October, 18:00 UTC for 6 h


def test_a_history_too_short_for_like_days_is_served_by_todays_model_and_says_why():
    # Tuesday and Wednesday only, then Thanksgiving: no weekend day to draw a holiday from.
    index = pd.date_range("2026-11-24", "2026-11-26", freq="1h", tz="UTC", inclusive="left")
    s = pd.Series(np.arange(len(index), dtype=float) % 24 + 5, index=index)
    cal = from_region("US", index[0], index[-1] + pd.Timedelta(days=2))
    f = forecast(s, pd.Timedelta(hours=24), calendar=cal)
    [record] = f.served
    assert record["model"] == f.model and "like days cannot be made from this history" in record["why"]
    assert np.isfinite(f.frame["yhat"]).all()
