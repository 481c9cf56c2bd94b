"""Like days: a holiday, the working day around it, or a business event forecast from the days
that resemble it, with each kind's effect learnt from the history's own past occurrences.

The model, per local day (``lib.day_kinds``):

- a working day is the median profile of the last working days, a weekend day that of the last
  weekend days (only ordinary days count: a past holiday never becomes a working day's profile);
- a holiday, or the working day before or after one, is a mix ``a * weekend + b * working day`` of
  those profiles. ``(a, b)`` is fitted by least squares on the kind's past occurrences, each
  against the profiles of the weeks before it, shrunk towards a prior by ridge: a holiday's prior
  is "like a weekend day" (1, 0), the days around it "like a working day" (0, 1), and a named
  holiday (Thanksgiving) shrinks towards all holidays pooled. ``PRIOR_WEIGHT`` is how many
  occurrences the prior counts as, so one past Thanksgiving moves the estimate half-way;
- a business event multiplies the steps it covers by a factor: the mean over its past occurrences
  of load over the like-day base, shrunk towards the configured ``expected_uplift`` (1 when none).

Assumed: a day's shape is a mix of the two ordinary shapes, which holds for what people drive
(a holiday looks like a Sunday, Veterans Day like a quiet Tuesday); a day unlike both is fitted
only in level. Pure numpy; the forecaster (``lib.forecast``) decides where this model serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shaper_pipelines.lib.day_kinds import (
    AFTER,
    BEFORE,
    HOLIDAY,
    WEEKEND,
    WORKDAY,
    DayCalendar,
    holiday_kind,
    weekday,
)

PRIOR_WEIGHT = 1.0  # occurrences the prior counts as
LOOKBACK_DAYS = 42  # ordinary days are looked for in the six weeks before a day
WORKDAYS, WEEKEND_DAYS = 10, 6  # ordinary days a profile is the median of: two working weeks, three weekends
FULL = 0.8  # a day with at least this share of its steps is a whole day for profiles and fits
PRIORS = {HOLIDAY: (1.0, 0.0), AFTER: (0.0, 1.0), BEFORE: (0.0, 1.0)}


@dataclass
class Days:
    """A series cut into local days: ``values[d, s]`` is slot ``s`` of day ``dates[d]`` (NaN where
    the series has no step), ``row``/``slot`` place each step."""

    dates: np.ndarray  # datetime64[D]
    kinds: np.ndarray
    values: np.ndarray
    row: np.ndarray
    slot: np.ndarray

    def full(self, d: int) -> bool:
        return np.isfinite(self.values[d]).mean() >= FULL


def cut(values: np.ndarray, index: pd.DatetimeIndex, step: float, period: int, cal: DayCalendar) -> Days:
    local = cal.local(index)
    dates = local.to_numpy().astype("datetime64[D]")
    slot = np.clip(((local - local.normalize()).total_seconds().to_numpy() // step).astype(int), 0, period - 1)
    unique, row = np.unique(dates, return_inverse=True)
    grid = np.full((len(unique), period), np.nan)
    grid[row[: len(values)], slot[: len(values)]] = values  # steps past the history stay NaN
    return Days(unique, cal.kinds(unique), grid, row, slot)


def profiles(days: Days, before: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(weekend, working day) median profiles from the ordinary whole days before row ``before``."""
    lo = max(0, before - LOOKBACK_DAYS)
    rows = [d for d in range(lo, before) if days.full(d)]
    work = [d for d in rows if days.kinds[d] == WORKDAY][-WORKDAYS:]
    rest = [d for d in rows if days.kinds[d] == WEEKEND][-WEEKEND_DAYS:]
    if len(work) < 2 or len(rest) < 2:  # a mix of the two needs both
        return None
    return _median(days.values[rest]), _median(days.values[work])


def _median(block: np.ndarray) -> np.ndarray:
    m = np.nanmedian(block, axis=0) if np.isfinite(block).any() else np.zeros(block.shape[1])
    # A slot no day had (a DST gap): its neighbours' level.
    if np.isnan(m).any():
        ok = np.flatnonzero(np.isfinite(m))
        m = np.interp(np.arange(len(m)), ok, m[ok]) if len(ok) else np.zeros(len(m))
    return m


def _ridge(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], prior: tuple[float, float]) -> np.ndarray:
    """(a, b) minimising |y - a e - b w|^2 over the occurrences plus PRIOR_WEIGHT occurrences' worth
    of pull towards ``prior``."""
    theta0 = np.asarray(prior, dtype=float)
    if not pairs:
        return theta0
    xs, ys = [], []
    for y, e, w in pairs:
        ok = np.isfinite(y)
        xs.append(np.column_stack([e[ok], w[ok]]))
        ys.append(y[ok])
    x, y = np.vstack(xs), np.concatenate(ys)
    xtx = x.T @ x
    lam = PRIOR_WEIGHT * np.trace(xtx) / 2 / len(pairs)
    if lam <= 0:
        return theta0
    return np.linalg.solve(xtx + lam * np.eye(2), x.T @ y + lam * theta0)


@dataclass
class Effects:
    """What the history before a point says about each kind of day and event."""

    mix: dict[str, np.ndarray]  # day kind, or "holiday:<name>" -> (a, b)
    occurrences: dict[str, int]  # the same keys -> past occurrences learnt from
    factors: dict[str, float]  # event name -> load multiplier
    event_occurrences: dict[str, int]

    def for_day(self, kind: str, name: str) -> np.ndarray:
        if kind == HOLIDAY:
            return self.mix.get(f"{HOLIDAY}:{holiday_kind(name)}", self.mix[HOLIDAY])
        return self.mix.get(kind, np.array([1.0, 0.0]) if kind == WEEKEND else np.array([0.0, 1.0]))


def learn(days: Days, before: int, cal: DayCalendar) -> Effects:
    """The effect of every calendar kind from the whole days before row ``before``."""
    groups: dict[str, list] = {}
    for d in range(before):
        kind = days.kinds[d]
        if kind not in PRIORS or not days.full(d):
            continue
        if kind == HOLIDAY and weekday(days.dates[d]) >= 5:
            continue  # a holiday on a weekend is a weekend anyway: it says nothing of one on a weekday
        p = profiles(days, d)
        if p is None:
            continue
        sample = (days.values[d], p[0], p[1])
        groups.setdefault(kind, []).append(sample)
        if kind == HOLIDAY:
            groups.setdefault(f"{HOLIDAY}:{holiday_kind(cal.name(days.dates[d]))}", []).append(sample)
    mix = {kind: _ridge(groups.get(kind, []), prior) for kind, prior in PRIORS.items()}
    for key, pairs in groups.items():
        if key.startswith(f"{HOLIDAY}:"):
            mix[key] = _ridge(pairs, tuple(mix[HOLIDAY]))
    return Effects(mix, {k: len(v) for k, v in groups.items()}, {}, {})


def base(days: Days, d: int, effects: Effects, cal: DayCalendar) -> np.ndarray | None:
    """The like-day profile of row ``d`` from the ordinary whole days before it."""
    p = profiles(days, d)
    if p is None:
        return None
    a, b = effects.for_day(days.kinds[d], cal.name(days.dates[d]))
    return a * p[0] + b * p[1]


def learn_events(values: np.ndarray, index: pd.DatetimeIndex, days: Days, effects: Effects,
                 cal: DayCalendar) -> None:
    """Fill ``effects.factors``: per event, its past occurrences' load over their like-day base."""
    n = len(values)
    for name, mask in cal.event_steps(index).items():
        ratios = []
        covered = np.flatnonzero(mask[:n])
        # one ratio per occurrence: split the covered steps where they stop being consecutive
        for run in np.split(covered, np.flatnonzero(np.diff(covered) > 1) + 1) if len(covered) else []:
            rows = np.unique(days.row[run])
            bases = {d: base(days, d, effects, cal) for d in rows}
            if any(bases[d] is None for d in rows):
                continue
            expected = np.array([bases[days.row[i]][days.slot[i]] for i in run])
            total = float(expected.sum())
            if total > 0:
                ratios.append(float(values[run].sum()) / total)
        prior = cal.uplift(name)
        effects.factors[name] = (sum(ratios) + PRIOR_WEIGHT * prior) / (len(ratios) + PRIOR_WEIGHT)
        effects.event_occurrences[name] = len(ratios)


def history_index(ctx, n: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ctx.start + pd.to_timedelta(np.arange(n) * ctx.step, unit="s"))


def fit(h: np.ndarray, n: int, ctx) -> tuple[Days, Effects, pd.DatetimeIndex]:
    """Cut history and ``n`` steps after it into days and learn every effect from the history."""
    index = history_index(ctx, len(h) + n)
    days = cut(h, index, ctx.step, ctx.period, ctx.calendar)
    # Days after the history are NaN, never whole, so they are never learnt from.
    effects = learn(days, len(days.dates), ctx.calendar)
    learn_events(h, index[: len(h)], days, effects, ctx.calendar)
    return days, effects, index


def like_days(h: np.ndarray, n: int, ctx) -> np.ndarray:
    """The like-day forecast of the ``n`` steps after ``h``. Events are not in it: the forecaster
    applies their factors to whatever serves their day (``lib.day_choice``)."""
    if ctx.calendar is None:
        raise ValueError("like_days needs a calendar")
    days, effects, index = fit(h, n, ctx)
    future_rows, future_slots = days.row[len(h):], days.slot[len(h):]
    out = np.empty(n)
    for d in np.unique(future_rows):
        b = base(days, int(d), effects, ctx.calendar)
        if b is None:
            raise ValueError("like_days needs two ordinary working days and two weekend days in the six weeks "
                             "before each day it forecasts")
        here = future_rows == d
        out[here] = b[future_slots[here]]
    return out


def cleaned(h: np.ndarray, ctx) -> np.ndarray:
    """The history with its calendar days made ordinary, for the ordinary candidates: a past
    holiday becomes the profile of the ordinary days before it (a working day's on a weekday), and
    event steps are divided by the event's factor, so "yesterday repeated" never repeats a holiday
    or last month's batch."""
    days, effects, index = fit(h, 0, ctx)
    out = h.copy()
    for d in np.flatnonzero(days.kinds == HOLIDAY):
        steps = np.flatnonzero(days.row[: len(h)] == d)
        p = profiles(days, int(d))
        if len(steps) == 0 or p is None:
            continue
        working = weekday(days.dates[d]) < 5
        out[steps] = (p[1] if working else p[0])[days.slot[steps]]
    for name, mask in ctx.calendar.event_steps(index).items():
        f = effects.factors.get(name, 1.0)
        if f > 0:
            out[mask[: len(h)]] /= f
    return out
