"""Day-ahead candidates from statsmodels: Holt-Winters exponential smoothing and an MSTL
decomposition, with the signature of ``lib.forecast``'s candidates (``h``, ``n``, ``ctx``).

Both fit hourly medians of the last days rather than every step, and the hourly forecast is
interpolated back onto the series' own grid: a day-ahead forecast of utilisation is about the
shape of the day, not its minutes. On the traces in data/real, Holt-Winters fitted on every step
took ten times as long on 1-minute steps (a day is 1,440 seasonal states) for the same error,
and on 5-minute CloudWatch metrics forecast far worse (MAE 1.05 times seasonal naive's, against
0.76 on hourly medians): their noise and spikes move the states. Medians rather than means for
the same reason: one spike moves a whole hour's mean (medians cut Holt-Winters' error by a tenth
overall, by two fifths on the spikiest traces).

Fits are memoised on the data they are made from. ``lib.forecast`` backtests every candidate at
four rolling origins, and a scaling plan forecasts again at its own past origins, so a plan fits
the same days of the same series again and again: in the fleet benchmark (a forecast and a plan
per series) each series asks a candidate for about 25 fits, of which 9 differ. A Holt-Winters fit
takes 5-10 ms; unmemoised, it alone would more than double the benchmark's time.

statsmodels is imported inside the functions: importing it takes about a second, which the
command line should not pay unless a forecast runs these candidates.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

HW_FIT_DAYS = 14  # days Holt-Winters is fitted on: two weeks, so its weights see level shifts come and go
HW_MIN_DAYS = 2  # two daily cycles: what its initial seasonal states are estimated from
MSTL_FIT_DAYS = 21  # days MSTL is fitted on: a weekly season needs more than two weeks, and three
# weeks forecast the bike trace better than four (the weekly shape drifts)
MSTL_MIN_DAYS = 3  # MSTL drops a season that is half the data or more: over two days are needed
BLOCKS_PER_DAY = 24  # the aggregate's resolution: hours
MEMO_FITS = 256  # fits remembered per candidate: a few kB each
# STL evaluates its loess smoothers every ``jump`` points and interpolates between, as R's stl does
# by default (about a tenth of the window); statsmodels' default of every point made a fit with the
# weekly season three to five times as long, for backtest errors within a few per cent.
STL_JUMPS = {"trend_jump": 5, "low_pass_jump": 3}


class StatModelError(ValueError):
    """History a statistical candidate cannot be fitted on, said plainly."""


def _block(period: int) -> int:
    """Steps per aggregate block: the largest divisor of ``period`` that leaves at least
    BLOCKS_PER_DAY blocks a day (1 for steps of an hour or longer)."""
    for k in range(max(1, period // BLOCKS_PER_DAY), 0, -1):
        if period % k == 0:
            return k
    return 1


def _aggregate(h: np.ndarray, period: int, days: int, min_days: int, name: str) -> tuple[np.ndarray, int, int]:
    """The medians of ``k``-step blocks over the last ``days`` days of ``h`` (the last block
    ending where the history ends), ``k``, and the blocks in a day."""
    if period < 2:
        raise StatModelError(f"{name}: a day of {period} step(s) has no daily cycle to fit")
    if len(h) < min_days * period:
        raise StatModelError(f"{name}: needs at least {min_days} days of history ({min_days * period} steps of "
                             f"this series); it has {len(h)} step(s), {math.floor(100 * len(h) / period) / 100:g} day(s)")
    if not np.all(np.isfinite(h)):
        raise StatModelError(f"{name}: history has missing or infinite values (regularise it first)")
    k = _block(period)
    m = min(len(h), days * period) // k * k
    y = np.median(np.asarray(h[len(h) - m:], dtype=np.float64).reshape(-1, k), axis=1)
    return y, k, period // k


def _to_grid(last: float, blocks: np.ndarray, k: int, n: int, nonneg: bool) -> np.ndarray:
    """``n`` steps from block forecasts: each block's value at its centre, straight lines between,
    starting from the last observed block (``last``); not below zero for a series that never was."""
    if k == 1:
        out = np.array(blocks[:n])  # a copy: ``blocks`` may be a memoised result
    else:
        centres = np.arange(-1, len(blocks)) * k + (k - 1) / 2
        out = np.interp(np.arange(n), centres, np.concatenate(([last], blocks)))
    return np.maximum(out, 0.0) if nonneg else out


def holt_winters(h: np.ndarray, n: int, ctx) -> np.ndarray:
    """Holt-Winters exponential smoothing (statsmodels ``ExponentialSmoothing``) with an additive
    level and an additive daily season and no trend, its smoothing weights fitted by least squares
    on the hourly medians of the last HW_FIT_DAYS days; interpolated back to the series' step.

    Assumes ``h`` is complete and regular with ``ctx.period`` steps a day (only ``ctx.period`` is
    read) and at least HW_MIN_DAYS days long, StatModelError otherwise; that the daily shape adds
    to the level rather than scaling with it; that a weekly cycle is weak (it sees days, not
    weekdays); and no trend over the day ahead - a damped additive trend was tried: slightly
    worse on the traces in data/real, no better in the fleet benchmark, and nearly twice the
    fitting time. Its weights follow how fast the
    level and the shape move, which is where it beats fixed profiles: series whose level steps up
    or down for days at a time."""
    y, k, sp = _aggregate(h, ctx.period, HW_FIT_DAYS, HW_MIN_DAYS, "holt_winters")
    if len(y) < 10 + 2 * (sp // 2):  # statsmodels' heuristic initialisation, for steps of hours
        raise StatModelError(f"holt_winters: needs at least {10 + 2 * (sp // 2)} steps of history at "
                             f"{sp} steps a day; it has {len(y)}")
    blocks = _holt_winters_blocks(y.tobytes(), sp, math.ceil(n / k) + 1)
    return _to_grid(y[-1], blocks, k, n, bool(np.min(h) >= 0))


@functools.lru_cache(maxsize=MEMO_FITS)
def _holt_winters_blocks(data: bytes, sp: int, steps: int) -> np.ndarray:
    """``steps`` block forecasts from the blocks in ``data`` (float64), ``sp`` blocks a day."""
    y = np.frombuffer(data)
    mu, sd = float(np.mean(y)), float(np.std(y))
    if not sd > 0:
        return _frozen(np.full(steps, y[-1]))
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    with warnings.catch_warnings():
        # Convergence and bound warnings on flat or spiky stretches: the fit is still usable, and
        # the backtest judges it.
        warnings.simplefilter("ignore")
        # Fitted on the standardised series: the optimiser's tolerance is on the sum of squares, so
        # in bytes it never stops and in fractions it stops at once. Forecasts scale back exactly.
        fit = ExponentialSmoothing((y - mu) / sd, seasonal="add", seasonal_periods=sp,
                                   initialization_method="heuristic").fit(method="SLSQP", use_brute=False)
    # The textbook forecast from the last states (the level, and the last day of seasonal states),
    # computed here rather than by fit.forecast(), which makes another pure-Python pass over the
    # history and, for the last hour of the day ahead, takes the seasonal state of a day earlier
    # than the latest.
    blocks = fit.level[-1] + np.resize(np.asarray(fit.season)[-sp:], steps)
    return _frozen(mu + sd * blocks)


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a``, read-only: memoised results are shared between callers."""
    a.flags.writeable = False
    return a


def mstl_level(h: np.ndarray, n: int, ctx) -> np.ndarray:
    """MSTL (statsmodels) of the hourly medians of the last MSTL_FIT_DAYS days: a daily season,
    a weekly one when there are more than two weeks, and the rest. The forecast is each season's
    last cycle repeated on the level of the rest: its median over the last quarter day, held
    flat. Interpolated back to the series' step.

    Assumes ``h`` is complete and regular with ``ctx.period`` steps a day (only ``ctx.period`` is
    read) and at least MSTL_MIN_DAYS days long, StatModelError otherwise; that the seasons add to
    the level; and no trend over the next day. The seasons are loess-smoothed across days and
    weeks, so a shape that drifts is followed and one odd day counts little. Its weekly season is
    what it brings: with two weeks of history or less it is a smoothed daily profile (a fit takes
    2-3 ms), with more the weekly STL makes a fit take 40-50 ms."""
    y, k, sp = _aggregate(h, ctx.period, MSTL_FIT_DAYS, MSTL_MIN_DAYS, "mstl_level")
    blocks = _mstl_level_blocks(y.tobytes(), sp, math.ceil(n / k) + 1)
    return _to_grid(y[-1], blocks, k, n, bool(np.min(h) >= 0))


@functools.lru_cache(maxsize=MEMO_FITS)
def _mstl_level_blocks(data: bytes, sp: int, steps: int) -> np.ndarray:
    """``steps`` block forecasts from the blocks in ``data`` (float64), ``sp`` blocks a day."""
    y = np.frombuffer(data)
    if not np.ptp(y) > 0:
        return _frozen(np.full(steps, y[-1]))
    from statsmodels.tsa.seasonal import MSTL

    periods = [sp, 7 * sp] if len(y) > 14 * sp else [sp]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = MSTL(y, periods=periods, stl_kwargs=dict(STL_JUMPS)).fit()
    seasonal = np.asarray(parts.seasonal).reshape(len(y), -1)
    rest = y - seasonal.sum(axis=1)
    blocks = np.full(steps, float(np.median(rest[-max(1, sp // 4):])))
    for i, p in enumerate(periods):
        blocks = blocks + np.resize(seasonal[-p:, i], steps)
    return _frozen(blocks)
