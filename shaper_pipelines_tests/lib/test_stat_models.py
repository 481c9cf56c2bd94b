"""The statsmodels candidates (lib.stat_models) on series whose answer is known by construction:
they must find a daily cycle in noise, a weekly one when there is enough history, and say plainly
when the history is too short."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.forecast import Context
from shaper_pipelines.lib.stat_models import StatModelError, holt_winters, mstl_level

CANDIDATES = [holt_winters, mstl_level]


def _daily(days: int, seed: int, step_minutes: int = 5) -> tuple[np.ndarray, Context]:
    """Busy 06:00-18:00, quiet at night, 10% multiplicative noise."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-03-02", periods=days * 1440 // step_minutes, freq=f"{step_minutes}min", tz="UTC")
    hour = (index.hour + index.minute / 60).to_numpy()
    shape = 10 + 8 * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    values = shape * (1 + 0.1 * rng.standard_normal(len(index)))
    return values, Context(step=60.0 * step_minutes, period=1440 // step_minutes, start=index[0])


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


@pytest.mark.parametrize("model", CANDIDATES, ids=lambda m: m.__name__)
def test_a_noisy_daily_cycle_is_forecast_far_better_than_its_mean(model):
    values, ctx = _daily(11, seed=0)
    history, truth = values[:-ctx.period], values[-ctx.period:]
    forecast = model(history, ctx.period, ctx)
    assert forecast.shape == (ctx.period,) and np.all(np.isfinite(forecast))
    flat = _mae(np.full(ctx.period, history.mean()), truth)
    assert _mae(forecast, truth) < 0.5 * flat, "the daily shape is most of the signal"


@pytest.mark.parametrize("model", CANDIDATES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("step_minutes", [1, 60])
def test_any_horizon_at_minute_and_hour_steps(model, step_minutes):
    # A 1-minute day is 1,440 steps and is fitted on hourly blocks; an hourly one is fitted as is.
    values, ctx = _daily(6, seed=1, step_minutes=step_minutes)
    for n in (1, ctx.period // 2 + 7, 2 * ctx.period + 3):  # not whole blocks, not whole days
        forecast = model(values, n, ctx)
        assert forecast.shape == (n,) and np.all(np.isfinite(forecast)) and np.all(forecast >= 0)
    day = model(values, ctx.period, ctx)
    hour = (np.arange(ctx.period) * ctx.step / 3600) % 24
    # The forecast day starts at midnight: busy at noon, quiet at night.
    assert day[(hour > 10) & (hour < 14)].mean() > day[(hour < 4) | (hour > 22)].mean() + 5


def test_mstl_level_forecasts_a_quiet_weekend_from_three_weeks():
    # Hourly, busy Monday to Friday and quiet at weekends; the history ends on a Friday at midnight,
    # so the day ahead is a Saturday. Yesterday was busy: only the weekly season says otherwise.
    rng = np.random.default_rng(2)
    index = pd.date_range("2026-03-02", periods=26 * 24, freq="h", tz="UTC")  # a Monday, 26 days
    weekday = np.asarray(index.day_of_week < 5)
    values = np.where(weekday, 100.0, 20.0) * (1 + 0.05 * rng.standard_normal(len(index)))
    assert index[-1].day_of_week == 4
    ctx = Context(step=3600.0, period=24, start=index[0])
    saturday = mstl_level(values, 24, ctx)
    assert abs(saturday.mean() - 20) < 10, saturday.mean()


def test_a_constant_series_is_forecast_constant():
    ctx = Context(step=300.0, period=288, start=pd.Timestamp("2026-03-02", tz="UTC"))
    for model in CANDIDATES:
        np.testing.assert_allclose(model(np.full(5 * 288, 7.0), 300, ctx), 7.0)


@pytest.mark.parametrize("model,days", [(holt_winters, 2), (mstl_level, 3)], ids=["holt_winters", "mstl_level"])
def test_too_short_a_history_is_refused_saying_what_is_needed(model, days):
    values, ctx = _daily(days, seed=3)
    model(values, ctx.period, ctx)  # exactly the minimum is enough
    with pytest.raises(StatModelError, match=rf"needs at least {days} days of history") as raised:
        model(values[:-1], ctx.period, ctx)
    assert isinstance(raised.value, ValueError)
    assert f"it has {len(values) - 1} step(s), {days - 1}.99 day(s)" in str(raised.value)


def test_a_repeated_fit_is_the_same_forecast_and_callers_may_change_theirs():
    # Fits are memoised (forecast backtests and plans ask for the same fit many times): the
    # memoised answer must equal the first and must not be shared with a caller that writes into it.
    for step_minutes in (5, 60):
        values, ctx = _daily(8, seed=5, step_minutes=step_minutes)
        for model in CANDIDATES:
            first = model(values, ctx.period, ctx)
            kept = first.copy()
            first[:] = -1.0
            np.testing.assert_array_equal(model(values, ctx.period, ctx), kept)


def test_incomplete_history_is_refused():
    values, ctx = _daily(4, seed=4)
    values[100] = np.nan
    for model in CANDIDATES:
        with pytest.raises(StatModelError, match="missing or infinite"):
            model(values, ctx.period, ctx)


def test_importing_the_module_does_not_import_statsmodels():
    # The command line imports lib.forecast (and so this module) at start; statsmodels takes about
    # a second to import and is only wanted when these candidates run.
    code = "import sys, shaper_pipelines.lib.stat_models; print('statsmodels' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
