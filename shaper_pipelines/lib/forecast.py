"""Day-ahead demand forecasts: several simple, fast candidates and Prophet, judged per series by a
rolling-origin backtest against seasonal naive, then combined by their backtest error.

Why simple candidates: on real utilisation traces a robust daily profile (the median of the same
time of day over the last days) or a flat recent level usually beats both "yesterday repeated"
(which copies yesterday's noise) and Prophet with defaults (which smooths away sharp daily edges).
Which one wins depends on the series, so every series gets its own backtest, not a global choice.

Everything works on a regular grid of ``step`` seconds with ``period`` steps a day; the caller
regularises history first (``lib.history``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

PROFILE_DAYS = 7  # days a daily profile is taken over: one week evens out the weekday mix
BACKTEST_DAYS = 4  # rolling origins, one a day, before the forecast's own origin
QUANTILES = {"yhat_lower": 0.05, "p90": 0.90, "yhat_upper": 0.95}
# How far ahead a forecast may reach. Day-ahead forecasting is what shaper does (the loop asks for
# 48 h, a plan at most a week or two); a year is the absolute maximum, and at most this many times
# the history's own length (a forecast further ahead than a few times what it learnt from repeats
# its guess). Both are checked before anything is allocated: --horizon 100000d took 96 s and 3.8 GB.
MAX_HORIZON = pd.Timedelta(days=366)
MAX_HORIZON_STEPS = 2_000_000
HORIZON_PER_HISTORY = 4


class ForecastError(ValueError):
    """History a forecast cannot be made from, said plainly."""


@dataclass(frozen=True)
class Context:
    """What a candidate may know besides the history: the grid and which days are business days."""

    step: float
    period: int  # steps per day
    start: pd.Timestamp  # timestamp of history[0]
    business: Callable[[pd.DatetimeIndex], np.ndarray] | None = None  # day -> is a business day
    holidays: pd.DataFrame | None = None  # Prophet-style ds/holiday frame, for Prophet


Model = Callable[[np.ndarray, int, Context], np.ndarray]


def _tile(block: np.ndarray, n: int) -> np.ndarray:
    return np.resize(block, n)


def naive_day(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    """Yesterday repeated: the reference every forecast is judged against."""
    return _tile(h[-ctx.period:], n)


def naive_week(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    return _tile(h[-7 * ctx.period:], n)


def _days(h: np.ndarray, period: int, k: int) -> np.ndarray:
    k = min(k, len(h) // period)
    return h[len(h) - k * period:].reshape(k, period)


def daily_profile(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    """The median of each time of day over the last week: yesterday without its noise."""
    return _tile(np.median(_days(h, ctx.period, PROFILE_DAYS), axis=0), n)


def recent_level(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    """Flat at the median of the last day: the best guess for a series with no cycle."""
    return np.full(n, float(np.median(h[-ctx.period:])))


def leveled_profile(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    """The daily profile moved to the level of the last quarter day, the shift fading over a day:
    a series that stepped up yesterday evening is still up this morning."""
    p = ctx.period
    days = _days(h, p, PROFILE_DAYS)
    profile = np.median(days, axis=0)
    q = max(1, p // 4)
    # The profile starts a day boundary before len(h), so the last q steps sit at its end.
    shift = float(np.median(h[-q:]) - np.median(profile[p - q:]))
    fade = np.exp(-np.arange(n) / p)
    return _tile(profile, n) + shift * fade


def business_profile(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    """Daily profiles kept apart for business days and the rest (weekends, holidays), each the
    median over up to the last three weeks of its kind."""
    if ctx.business is None:
        raise ForecastError("no business calendar")
    p = ctx.period
    k = min(21, len(h) // p)
    days = h[len(h) - k * p:].reshape(k, p)
    first = len(h) - k * p
    past_days = ctx.start + pd.to_timedelta((first + np.arange(k) * p) * ctx.step, unit="s")
    past_kind = ctx.business(pd.DatetimeIndex(past_days))
    out = np.empty(n)
    future_days = ctx.start + pd.to_timedelta((len(h) + np.arange(0, n, p)) * ctx.step, unit="s")
    for i, kind in enumerate(ctx.business(pd.DatetimeIndex(future_days))):
        same = days[past_kind == kind][-PROFILE_DAYS:]
        block = np.median(same if len(same) >= 2 else days[-PROFILE_DAYS:], axis=0)
        out[i * p:(i + 1) * p] = block[: n - i * p]
    return out


def prophet_model(h: np.ndarray, n: int, ctx: Context) -> np.ndarray:
    """Prophet with its defaults, the business calendar's holidays and events as holidays."""
    fit = fit_prophet(h, ctx)
    future = ctx.start + pd.to_timedelta((len(h) + np.arange(n)) * ctx.step, unit="s")
    return fit.predict(pd.DataFrame({"ds": future.tz_localize(None)}))["yhat"].to_numpy()


def fit_prophet(h: np.ndarray, ctx: Context):
    import logging

    # Prophet logs a missing plotly at ERROR on import and cmdstanpy every fit at INFO through
    # handlers of their own: switch those loggers off rather than fight their levels.
    for name in ("prophet", "prophet.plot", "cmdstanpy"):
        logging.getLogger(name).disabled = True
    from prophet import Prophet

    ds = ctx.start + pd.to_timedelta(np.arange(len(h)) * ctx.step, unit="s")
    kwargs = {}
    if ctx.holidays is not None and len(ctx.holidays):
        kwargs["holidays"] = ctx.holidays
    model = Prophet(**kwargs)
    model.fit(pd.DataFrame({"ds": ds.tz_localize(None), "y": h}))
    return model


CANDIDATES: dict[str, Model] = {
    "seasonal_naive_day": naive_day,
    "seasonal_naive_week": naive_week,
    "daily_profile": daily_profile,
    "leveled_profile": leveled_profile,
    "business_profile": business_profile,
    "recent_level": recent_level,
    "prophet": prophet_model,
}
FAST = [name for name in CANDIDATES if name != "prophet"]


def _needs(name: str, days: float) -> bool:
    """Whether ``days`` of history are enough to fit and backtest a candidate at all."""
    need = {"seasonal_naive_week": 8, "business_profile": 7, "prophet": 2}.get(name, 1)
    return days >= need + 1


@dataclass
class Forecast:
    frame: pd.DataFrame  # timestamp, yhat, yhat_lower, yhat_upper, p90
    model: str  # what produced yhat: one name, or a weighted combination
    weights: dict[str, float]
    backtest_mae: dict[str, float]  # per candidate, over the rolling origins
    mase: float  # the combination's backtest MAE over seasonal naive's (below 1 beats it)
    notes: list[str] = field(default_factory=list)

    @property
    def beats_naive(self) -> bool:
        return self.mase < 1.0


def check_horizon(horizon: pd.Timedelta, step: float, history_span: pd.Timedelta | None = None) -> int:
    """The number of ``step`` steps in ``horizon``, or a ForecastError saying which bound it exceeds
    and what to do: at most MAX_HORIZON, MAX_HORIZON_STEPS steps and, when ``history_span`` is
    given, HORIZON_PER_HISTORY times the history's length."""
    seconds = horizon.total_seconds()
    if seconds > MAX_HORIZON.total_seconds():
        raise ForecastError(f"horizon {_span(seconds)} is beyond the maximum of {MAX_HORIZON.days} days; "
                            "ask for a shorter --horizon")
    if history_span is not None and seconds > HORIZON_PER_HISTORY * history_span.total_seconds():
        raise ForecastError(f"horizon {_span(seconds)} is more than {HORIZON_PER_HISTORY} times the history's "
                            f"{_span(history_span.total_seconds())}; ask for a shorter --horizon or give more history")
    n = int(seconds // step)
    if n > MAX_HORIZON_STEPS:
        raise ForecastError(f"horizon {_span(seconds)} is {n:,} steps of {step:g}s, above the limit of "
                            f"{MAX_HORIZON_STEPS:,}; ask for a shorter --horizon")
    return n


def _span(seconds: float) -> str:
    return f"{seconds / 86400:,.0f} days" if seconds >= 2 * 86400 else f"{seconds / 3600:,.3g} h"


def forecast(
    series: pd.Series,
    horizon: pd.Timedelta,
    *,
    models: list[str] | None = None,
    business: Callable[[pd.DatetimeIndex], np.ndarray] | None = None,
    holidays: pd.DataFrame | None = None,
    backtest_days: int = BACKTEST_DAYS,
) -> Forecast:
    """Forecast a regular series ``horizon`` ahead at its own step."""
    values = series.to_numpy(dtype=np.float64)
    if len(values) < 2 or not np.all(np.isfinite(values)):
        raise ForecastError("history must be a complete regular series (regularise it first)")
    step = float((series.index[1] - series.index[0]).total_seconds())
    period = int(round(86400 / step))
    n = check_horizon(horizon, step)
    if n < 1:
        raise ForecastError(f"horizon {horizon} is shorter than one step ({step:g}s)")
    if period < 2:
        raise ForecastError(f"a step of {step:g}s is too coarse for a daily forecast")
    ctx = Context(step=step, period=period, start=series.index[0], business=business, holidays=holidays)
    days = len(values) / period
    notes: list[str] = []
    index = series.index[-1] + pd.to_timedelta(np.arange(1, n + 1) * step, unit="s")

    if days < 2:
        # Under two daily cycles nothing can be backtested: the last day (or all there is) repeated,
        # with an interval from the spread of what was seen.
        notes.append(f"only {days:.1f} day(s) of history: the last day repeated, not backtested")
        yhat = _tile(values[-min(period, len(values)):], n)
        spread = values - np.median(values)
        return _finish(index, yhat, spread, values, "seasonal_naive_day", {"seasonal_naive_day": 1.0}, {},
                       1.0, notes)

    wanted = models or FAST
    unknown = sorted(set(wanted) - set(CANDIDATES))
    if unknown:
        raise ForecastError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    names = [m for m in wanted if _needs(m, days) and (m != "business_profile" or business is not None)]
    if "seasonal_naive_day" not in names:
        names.insert(0, "seasonal_naive_day")
    b = max(1, min(backtest_days, int(days) - 1))
    if b < backtest_days:
        notes.append(f"backtested on {b} day(s) of history (fewer than {backtest_days})")

    # Rolling origins: one a day over the last b days, each forecasting the day that follows.
    errors: dict[str, list[np.ndarray]] = {m: [] for m in names}
    preds: dict[str, list[np.ndarray]] = {m: [] for m in names}
    actual = []
    for d in range(b, 0, -1):
        origin = len(values) - d * period
        truth = values[origin: origin + period]
        actual.append(truth)
        for m in names:
            try:
                p = CANDIDATES[m](values[:origin], period, ctx)
            except Exception as exc:  # a candidate that cannot fit this origin drops out, said
                notes.append(f"{m} dropped: {type(exc).__name__}: {str(exc)[:120]}")
                errors.pop(m, None), preds.pop(m, None)
                names = [x for x in names if x != m]
                continue
            preds[m].append(p)
            errors[m].append(np.abs(p - truth))
    mae = {m: float(np.mean(np.concatenate(errors[m]))) for m in names}
    naive_mae = mae["seasonal_naive_day"]

    # Combine the best three by inverse squared backtest error: averaging rivals of similar skill
    # beats picking one on a few days of evidence.
    ranked = sorted(names, key=lambda m: mae[m])[:3]
    inv = np.array([1.0 / max(mae[m], 1e-12) ** 2 for m in ranked])
    weights = {m: float(w) for m, w in zip(ranked, inv / inv.sum())}
    combined_bt = sum(weights[m] * np.concatenate(preds[m]) for m in ranked)
    truth_all = np.concatenate(actual)
    combined_mae = float(np.mean(np.abs(combined_bt - truth_all)))
    if mae[ranked[0]] < combined_mae:  # the single best is better still: keep it alone
        weights = {ranked[0]: 1.0}
        combined_bt = np.concatenate(preds[ranked[0]])
        combined_mae = mae[ranked[0]]
    mase = combined_mae / naive_mae if naive_mae > 0 else (0.0 if combined_mae == 0 else math.inf)

    yhat = sum(w * CANDIDATES[m](values, n, ctx) for m, w in weights.items())
    if business is not None and "business_profile" in names:
        # A holiday in the horizon is rarely in the backtest's few days, so the backtest cannot
        # have learnt it: on a weekday that is not a business day, the calendar's profile decides.
        future = index.tz_convert("UTC") if index.tz is not None else index
        off = (future.day_of_week < 5) & ~business(future.normalize())
        if off.any():
            yhat = np.where(off, business_profile(values, n, ctx), yhat)
            notes.append(f"{int(off.sum())} step(s) fall on public holidays: forecast like non-business days")
    residuals = truth_all - combined_bt
    label = " + ".join(f"{w:.2f}*{m}" for m, w in weights.items()) if len(weights) > 1 else next(iter(weights))
    return _finish(index, yhat, residuals, values, label, weights, mae, mase, notes)


def _finish(index, yhat, residuals, values, label, weights, mae, mase, notes) -> Forecast:
    """Intervals from the backtest's residuals; a series that never went negative is not
    forecast negative."""
    q = {k: float(np.quantile(residuals, v)) for k, v in QUANTILES.items()}
    nonneg = bool(np.min(values) >= 0)
    frame = pd.DataFrame({"timestamp": index, "yhat": yhat})
    for k, v in q.items():
        frame[k] = yhat + v
    cols = ["yhat", "yhat_lower", "yhat_upper", "p90"]
    if nonneg:
        frame[cols] = frame[cols].clip(lower=0)
    frame["yhat_lower"] = np.minimum(frame["yhat_lower"], frame["yhat"])
    frame["yhat_upper"] = np.maximum(frame["yhat_upper"], frame["yhat"])
    frame["p90"] = np.maximum(frame["p90"], frame["yhat"])
    return Forecast(frame=frame, model=label, weights=weights, backtest_mae=mae, mase=mase, notes=notes)


def calendar_inputs(country: str, start: pd.Timestamp, end: pd.Timestamp, subdiv: str | None = None):
    """The public holidays of ``country`` between ``start`` and ``end`` as forecasts use them
    (see ``calendar_from_events``): the command line's ``--calendar`` without a calendar asset."""
    from shaper_pipelines.lib.calendars import events_frame, public_holidays

    return calendar_from_events(events_frame(public_holidays(country, subdiv, start, end)))


def calendar_from_events(events: pd.DataFrame):
    """The same two inputs from a business calendar frame (``lib.calendars.events_frame``): days a
    holiday covers are not business days; every event day is a Prophet holiday named for it."""
    off = {d for e in events[events["kind"] == "holiday"].itertuples() for d in _utc_days(e.start, e.end)}
    business = _business_days(off)
    rows = [{"ds": d, "holiday": str(e.name)} for e in events.itertuples() for d in _utc_days(e.start, e.end)]
    return business, pd.DataFrame(rows, columns=["ds", "holiday"]).drop_duplicates()


def _business_days(off: set[pd.Timestamp]) -> Callable[[pd.DatetimeIndex], np.ndarray]:
    """day -> Monday to Friday and not one of the ``off`` dates (naive UTC midnights)."""

    def business(days: pd.DatetimeIndex) -> np.ndarray:
        local = days.tz_convert("UTC").tz_localize(None).normalize() if days.tz is not None else days.normalize()
        return np.array([d.weekday() < 5 and d not in off for d in local], dtype=bool)

    return business


def _utc_days(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """The UTC days (naive midnights) an event covers for at least half of the day - forecasts
    count days in UTC, so a local holiday is the UTC day it covers most of - or, for a short
    event, the day it starts on."""
    start, end = start.tz_convert("UTC"), end.tz_convert("UTC")
    days = [day for day in pd.date_range(start.floor("D"), end, freq="D", inclusive="left")
            if min(end, day + pd.Timedelta(days=1)) - max(start, day) >= pd.Timedelta(hours=12)]
    return [d.tz_localize(None) for d in (days or [start.floor("D")])]
