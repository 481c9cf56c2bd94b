"""Day-ahead demand forecasts: several simple, fast candidates and Prophet, judged per series by a
rolling-origin backtest against seasonal naive, then combined by their backtest error.

Why simple candidates: on real utilisation traces a robust daily profile (the median of the same
time of day over the last days) or a flat recent level usually beats both "yesterday repeated"
(which copies yesterday's noise) and Prophet with defaults (which smooths away sharp daily edges).
Which one wins depends on the series, so every series gets its own backtest, not a global choice.

With a business calendar (``lib.day_kinds``), past calendar days are kept out of the ordinary
candidates' inputs and backtest, weekend days are judged on weekend days, and each holiday, day
around one and event of the horizon is served by what did best on its past occurrences
(``lib.like_days``, ``lib.day_choice``).

Everything works on a regular grid of ``step`` seconds with ``period`` steps a day; the caller
regularises history first (``lib.history``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from shaper_pipelines.lib import day_choice, like_days as like, stat_models
from shaper_pipelines.lib.day_kinds import DayCalendar

PROFILE_DAYS = 7  # days a daily profile is taken over: one week evens out the weekday mix
BACKTEST_DAYS = 4  # rolling origins, one a day, before the forecast's own origin
CALENDAR_BACKTEST_DAYS = 7  # with a calendar: a whole week, working days and weekend days apart
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
    """What a candidate may know besides the history: the grid and the business calendar."""

    step: float
    period: int  # steps per day
    start: pd.Timestamp  # timestamp of history[0]
    calendar: DayCalendar | None = None  # holidays and events on the series' clock (lib.day_kinds)


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
    if ctx.calendar is None:
        raise ForecastError("no business calendar")
    p = ctx.period
    k = min(21, len(h) // p)
    days = h[len(h) - k * p:].reshape(k, p)
    first = len(h) - k * p
    past_days = ctx.start + pd.to_timedelta((first + np.arange(k) * p) * ctx.step, unit="s")
    past_kind = ctx.calendar.business(pd.DatetimeIndex(past_days))
    out = np.empty(n)
    future_days = ctx.start + pd.to_timedelta((len(h) + np.arange(0, n, p)) * ctx.step, unit="s")
    for i, kind in enumerate(ctx.calendar.business(pd.DatetimeIndex(future_days))):
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
    holidays = ctx.calendar.prophet_holidays() if ctx.calendar is not None else None
    if holidays is not None and len(holidays):
        kwargs["holidays"] = holidays
    model = Prophet(**kwargs)
    model.fit(pd.DataFrame({"ds": ds.tz_localize(None), "y": h}))
    return model


CANDIDATES: dict[str, Model] = {
    "seasonal_naive_day": naive_day,
    "seasonal_naive_week": naive_week,
    "daily_profile": daily_profile,
    "leveled_profile": leveled_profile,
    "business_profile": business_profile,
    "like_days": like.like_days,
    "recent_level": recent_level,
    "holt_winters": stat_models.holt_winters,
    "mstl_level": stat_models.mstl_level,
    "prophet": prophet_model,
}
# mstl_level is offered, not run by default: on the carried traces it won no more than
# holt_winters alone, and its weekly season costs ~45 ms a fit (lib/stat_models.py).
FAST = [name for name in CANDIDATES if name not in ("prophet", "mstl_level")]
CALENDAR_MODELS = {"business_profile", "like_days"}  # candidates that need a calendar
# Candidates that read the history as it was: Prophet models holidays itself and like_days is
# the calendar model. The rest read it with past calendar days made ordinary (like.cleaned).
RAW_INPUT = {"prophet", "like_days"}


def _needs(name: str, days: float) -> bool:
    """Whether ``days`` of history are enough to fit and backtest a candidate at all."""
    # holt_winters needs two days at every backtest origin; mstl_level three
    need = {"seasonal_naive_week": 8, "business_profile": 7, "like_days": 7, "holt_winters": 5, "mstl_level": 6,
            "prophet": 2}.get(name, 1)
    return days >= need + 1


@dataclass
class Forecast:
    frame: pd.DataFrame  # timestamp, yhat, yhat_lower, yhat_upper, p90
    model: str  # what produced yhat: one name, or a weighted combination
    weights: dict[str, float]
    backtest_mae: dict[str, float]  # per candidate, over the rolling origins
    mase: float  # the combination's backtest MAE over seasonal naive's (below 1 beats it)
    notes: list[str] = field(default_factory=list)
    # Which model served each calendar day and event of the horizon, and why (lib.day_choice).
    served: list[dict] = field(default_factory=list)

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
    calendar: DayCalendar | None = None,
    backtest_days: int = BACKTEST_DAYS,
) -> Forecast:
    """Forecast a regular series ``horizon`` ahead at its own step. With a ``calendar``, past
    calendar days are kept out of the ordinary candidates' inputs and judgement, and each
    holiday, day around one and event of the horizon is served by what did best on its past
    occurrences (``lib.day_choice``)."""
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
    if calendar is not None and calendar.empty:
        calendar = None
    ctx = Context(step=step, period=period, start=series.index[0], calendar=calendar)
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
    names = [m for m in wanted if _needs(m, days) and (m not in CALENDAR_MODELS or calendar is not None)]
    if "seasonal_naive_day" not in names:
        names.insert(0, "seasonal_naive_day")
    if calendar is not None:  # a week of origins, so weekend days are judged on weekend days
        backtest_days = max(backtest_days, CALENDAR_BACKTEST_DAYS)
    b = max(1, min(backtest_days, int(days) - 1))
    if b < backtest_days:
        notes.append(f"backtested on {b} day(s) of history (fewer than {backtest_days})")

    # The ordinary candidates read the history with its holidays and events made ordinary, and are
    # judged on ordinary steps only: calendar steps are judged apart, on their own past occurrences.
    inputs = {False: values, True: values}
    skip = np.zeros(len(values), dtype=bool)
    if calendar is not None:
        inputs[False] = like.cleaned(values, ctx)
        skip = day_choice.calendar_steps(calendar, series.index)

    def run(m: str, upto: int, steps: int) -> np.ndarray:
        return CANDIDATES[m](inputs[m in RAW_INPUT][:upto], steps, ctx)

    # Rolling origins: one a day over the last b days, each forecasting the day that follows.
    errors: dict[str, list[np.ndarray]] = {m: [] for m in names}
    preds: dict[str, list[np.ndarray]] = {m: [] for m in names}
    actual, weekend = [], []
    for d in range(b, 0, -1):
        origin = len(values) - d * period
        truth = values[origin: origin + period]
        ordinary = ~skip[origin: origin + period]
        keep = ordinary if ordinary.any() else np.ones(len(truth), dtype=bool)
        actual.append(truth[keep])
        if calendar is not None:  # the kind of the day the origin mostly forecasts
            weekend.append(day_choice.is_weekend(calendar, series.index[min(origin + period // 2, len(values) - 1)]))
        for m in list(names):
            try:
                p = run(m, origin, period)
            except Exception as exc:  # a candidate that cannot fit this origin drops out, said
                notes.append(f"{m} dropped: {type(exc).__name__}: {str(exc)[:120]}")
                errors.pop(m, None), preds.pop(m, None)
                names = [x for x in names if x != m]
                continue
            preds[m].append(p[keep])
            errors[m].append(np.abs(p - truth)[keep])
    every = list(range(len(actual)))
    weights, mae, combined_bt, combined_mae = _combine(names, errors, preds, actual, every)
    naive_mae = mae["seasonal_naive_day"]
    mase = combined_mae / naive_mae if naive_mae > 0 else (0.0 if combined_mae == 0 else math.inf)
    label = _label(weights)

    def ordinary_model(upto: int, steps: int, w: dict[str, float] = weights) -> np.ndarray:
        return sum(x * run(m, upto, steps) for m, x in w.items())

    yhat = ordinary_model(len(values), n)
    if calendar is not None and any(weekend) and not all(weekend):
        # With a calendar the backtest spans a week, and weekend days are forecast by what did best
        # on the backtest's weekend days: four working days say nothing about a Saturday.
        rest = [i for i in every if weekend[i]]
        rest_weights = _combine(names, errors, preds, actual, rest)[0]
        future_weekend = day_choice.is_weekend(calendar, index)
        if rest_weights != weights and future_weekend.any():
            yhat = np.where(future_weekend, ordinary_model(len(values), n, rest_weights), yhat)
            notes.append(f"weekend days: {_label(rest_weights)} (best on the backtest's {len(rest)} weekend day(s))")
    served: list[dict] = []
    if calendar is not None:
        # Past calendar days are judged against today's model without Prophet when it has other
        # members: a Prophet fit per past holiday costs seconds each and would rarely change a verdict.
        fast = {m: w for m, w in weights.items() if m != "prophet"}
        judge = ordinary_model
        if fast and len(fast) < len(weights):
            total = sum(fast.values())
            judge = functools.partial(ordinary_model, w={m: w / total for m, w in fast.items()})
        yhat, served = day_choice.serve(values, series.index, index, yhat, ctx, judge, label)
        notes += [day_choice.describe(s) for s in served]
    residuals = np.concatenate(actual) - combined_bt
    result = _finish(index, yhat, residuals, values, label, weights, mae, mase, notes)
    result.served = served
    return result


def _combine(names, errors, preds, actual, which: list[int]):
    """Weights of the best three candidates by inverse squared backtest error over the origins
    ``which`` (or the best alone, when that is better), their MAEs, and the combination's
    backtest and MAE: averaging rivals of similar skill beats picking one on a few days."""
    mae = {m: float(np.mean(np.concatenate([errors[m][i] for i in which]))) for m in names}
    truth = np.concatenate([actual[i] for i in which])
    ranked = sorted(names, key=lambda m: mae[m])[:3]
    inv = np.array([1.0 / max(mae[m], 1e-12) ** 2 for m in ranked])
    weights = {m: float(w) for m, w in zip(ranked, inv / inv.sum())}
    combined = sum(weights[m] * np.concatenate([preds[m][i] for i in which]) for m in ranked)
    combined_mae = float(np.mean(np.abs(combined - truth)))
    if mae[ranked[0]] < combined_mae:  # the single best is better still: keep it alone
        weights = {ranked[0]: 1.0}
        combined = np.concatenate([preds[ranked[0]][i] for i in which])
        combined_mae = mae[ranked[0]]
    return weights, mae, combined, combined_mae


def _label(weights: dict[str, float]) -> str:
    return " + ".join(f"{w:.2f}*{m}" for m, w in weights.items()) if len(weights) > 1 else next(iter(weights))


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
