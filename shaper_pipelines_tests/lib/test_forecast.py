"""Forecast candidates, the rolling-origin backtest and its fallbacks, on series whose answer is
known by construction."""

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.day_kinds import from_region
from shaper_pipelines.lib.forecast import ForecastError, forecast

STEP = 300


def _daily(days: int, noise: float = 0.1, seed: int = 0, start: str = "2026-03-02") -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=days * 288, freq="5min", tz="UTC")
    hour = (index.hour + index.minute / 60).to_numpy()
    shape = 10 + 8 * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)  # busy 06:00-18:00
    return pd.Series(shape * (1 + noise * rng.standard_normal(len(index))), index=index)


def test_daily_cycle_beats_seasonal_naive_with_ordered_quantiles():
    s = _daily(14)
    f = forecast(s, pd.Timedelta(hours=48))
    frame = f.frame
    assert len(frame) == 48 * 12
    assert frame["timestamp"].iloc[0] == s.index[-1] + pd.Timedelta(minutes=5)
    assert (frame["timestamp"].diff().dropna() == pd.Timedelta(minutes=5)).all()
    assert f.mase < 0.9, f"a noisy fixed cycle is forecast better by a profile than by yesterday: {f.model}"
    assert (frame["yhat_lower"] <= frame["yhat"]).all() and (frame["yhat"] <= frame["p90"]).all()
    assert (frame["p90"] <= frame["yhat_upper"]).all()
    # The interval should cover most of what really happens next (a fresh draw of the same process).
    truth = _daily(16, seed=1).to_numpy()[14 * 288:]
    inside = np.mean((truth >= frame["yhat_lower"]) & (truth <= frame["yhat_upper"]))
    assert inside > 0.75


def test_noise_without_cycle_is_forecast_flat():
    rng = np.random.default_rng(3)
    index = pd.date_range("2026-03-02", periods=10 * 288, freq="5min", tz="UTC")
    s = pd.Series(50 + 10 * rng.standard_normal(len(index)), index=index)
    f = forecast(s, pd.Timedelta(hours=24))
    assert f.mase < 0.85  # yesterday's noise is a worse guess than the level
    assert f.frame["yhat"].std() < 3


def test_short_history_falls_back_and_says_so():
    s = _daily(14).iloc[: int(1.5 * 288)]
    f = forecast(s, pd.Timedelta(hours=24))
    assert len(f.frame) == 288
    assert f.model == "seasonal_naive_day"
    assert any("not backtested" in n for n in f.notes)


def test_holidays_are_forecast_like_weekends_with_a_calendar():
    # Business days busy, weekends and US holidays quiet; the day after the history is Thanksgiving.
    index = pd.date_range("2026-10-26", "2026-11-26", freq="5min", tz="UTC", inclusive="left")
    calendar = from_region("US", index[0], index[-1] + pd.Timedelta(days=2))
    busy = calendar.business(index)
    s = pd.Series(np.where(busy, 100.0, 10.0), index=index)
    without = forecast(s, pd.Timedelta(hours=24))
    with_cal = forecast(s, pd.Timedelta(hours=24), calendar=calendar)
    assert with_cal.frame["yhat"].mean() < 20, with_cal.model
    assert without.frame["yhat"].mean() > with_cal.frame["yhat"].mean()


def test_bad_history_and_models_are_refused():
    s = _daily(5)
    s.iloc[10] = np.nan
    with pytest.raises(ForecastError, match="complete regular series"):
        forecast(s, pd.Timedelta(hours=1))
    with pytest.raises(ForecastError, match="unknown model"):
        forecast(_daily(5), pd.Timedelta(hours=1), models=["crystal_ball"])
    with pytest.raises(ForecastError, match="shorter than one step"):
        forecast(_daily(5), pd.Timedelta(seconds=10))


def test_prophet_is_a_candidate_when_asked():
    f = forecast(_daily(6), pd.Timedelta(hours=6), models=["prophet", "daily_profile"], backtest_days=1)
    assert "prophet" in f.backtest_mae


def test_a_local_holiday_is_a_day_of_the_calendars_zone():
    from shaper_pipelines.lib.calendars import events_frame, public_holidays
    from shaper_pipelines.lib.day_kinds import from_events

    events = events_frame(public_holidays("US", None, "2026-11-20", "2026-11-30", "America/New_York"))
    calendar = from_events(events)  # the zone the holidays were written in
    assert calendar.zone == "America/New_York"
    # Thanksgiving runs 05:00 UTC Thursday to 05:00 UTC Friday: a day in New York.
    steps = pd.DatetimeIndex(["2026-11-26 04:59", "2026-11-26 05:00", "2026-11-27 04:59", "2026-11-27 05:00"],
                             tz="UTC")
    assert list(calendar.business(steps)) == [True, False, False, True]
    assert list(calendar.prophet_holidays()["ds"]) == [pd.Timestamp("2026-11-26")]


def test_accuracy_scores_against_yesterday_on_shared_steps():
    from shaper_pipelines.lib.accuracy import score

    index = pd.date_range("2026-11-20", periods=4, freq="5min", tz="UTC")
    actual = pd.Series([10.0, 20.0, 30.0, 40.0], index=index)
    yesterday = pd.Series([14.0, 24.0, 34.0, np.nan], index=index)  # off by 4 where known
    forecast = pd.DataFrame({"timestamp": index, "yhat": [11.0, 22.0, 33.0, 99.0],
                             "yhat_lower": [9.0, 21.0, 25.0, 0.0], "yhat_upper": [12.0, 23.0, 35.0, 100.0]})
    a = score(forecast, actual, yesterday)
    assert a.points == 3 and a.mase == pytest.approx(2 / 4)  # errors 1, 2, 3 against 4, 4, 4
    assert a.coverage == pytest.approx(2 / 3) and a.bias == pytest.approx(2 / 20)
    assert not a.worse_than_naive and a.degraded  # coverage under 70 %
