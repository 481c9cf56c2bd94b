"""Which model serves each calendar day and business event of a forecast's horizon, judged on
the history's own past occurrences of that kind.

The ordinary candidates are chosen on the last few days (``lib.forecast``), which are almost never
holidays, so they say nothing about a holiday. Here every holiday, working day before or after
one, and event of the horizon gets its own verdict:

- a day kind: at each of the latest ``MAX_JUDGED`` past occurrences in the history, the like-days
  model (``lib.like_days``) and today's ordinary model forecast that day from the history before
  its local midnight; the lower mean absolute error serves the kind. With no past occurrence
  there is nothing to judge on, and like days serve with their prior ("like a weekend day").
- an event: the same origins, the ordinary forecast with and without the event's factor (learnt
  from the occurrences before each origin, shrunk towards its configured uplift) over the steps
  the event covers. With no past occurrence, the configured uplift applies as given.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from shaper_pipelines.lib import like_days as like
from shaper_pipelines.lib.day_kinds import CALENDAR_KINDS, HOLIDAY, DayCalendar, weekday

MAX_JUDGED = 8  # latest past occurrences judged per kind: enough evidence at a bounded cost
MIN_BEFORE_DAYS = 7  # an occurrence is judged only with a week of history before it
PRIOR_WORDS = {HOLIDAY: "like a weekend day"}


def calendar_steps(cal: DayCalendar, index: pd.DatetimeIndex) -> np.ndarray:
    """Steps on calendar days (holidays and the working days around them) or under an event: the
    ordinary backtest leaves them out, since they are judged on their own."""
    dates = cal.dates(index)
    unique, row = np.unique(dates, return_inverse=True)
    mask = np.isin(cal.kinds(unique), CALENDAR_KINDS)[row]
    for covered in cal.event_steps(index).values():
        mask |= covered
    return mask


def is_weekend(cal: DayCalendar, when: pd.Timestamp | pd.DatetimeIndex):
    """Whether labels fall on a Saturday or Sunday of the calendar's local days."""
    index = pd.DatetimeIndex([when]) if isinstance(when, pd.Timestamp) else when
    weekend = weekday(cal.dates(index)) >= 5
    return bool(weekend[0]) if isinstance(when, pd.Timestamp) else weekend


def serve(values: np.ndarray, history: pd.DatetimeIndex, future: pd.DatetimeIndex, yhat: np.ndarray, ctx,
          ordinary: Callable[[int, int], np.ndarray], label: str) -> tuple[np.ndarray, list[dict]]:
    """``yhat`` (today's ordinary model over ``future``) with every calendar day and event served
    by its verdict, and one record per day and event saying what served it and why."""
    cal: DayCalendar = ctx.calendar
    n = len(values)
    days = like.cut(values, history.append(future), ctx.step, ctx.period, cal)
    out = yhat.copy()
    served: list[dict] = []
    verdicts: dict[str, tuple[bool, str]] = {}
    like_future = None
    future_rows = days.row[n:]
    calendar_days = [d for d in np.unique(future_rows) if days.kinds[d] in CALENDAR_KINDS]
    coming = {k: m for k, m in cal.event_steps(future).items() if m.any()}
    if not calendar_days and not coming:
        return out, served
    # What the whole history teaches, fitted once: every verdict's description and every event's
    # factor read it.
    effects = like.fit(values, 0, ctx)[1]
    for d in calendar_days:
        kind = days.kinds[d]
        if kind not in verdicts:
            verdicts[kind] = _judge_day_kind(kind, values, days, ctx, ordinary, effects)
        wins, why = verdicts[kind]
        steps = future_rows == d
        if wins and like_future is None:
            try:
                like_future = like.like_days(values, len(future), ctx)
            except ValueError as exc:  # too few ordinary days to draw a profile from
                verdicts = {k: (False, f"like days cannot be made from this history: {exc}") for k in CALENDAR_KINDS}
                wins, why = verdicts[kind]
        if wins:
            out[steps] = like_future[steps]
        name = cal.name(days.dates[d])
        served.append({"date": str(days.dates[d]), "kind": kind, "holiday": name,
                       "model": "like_days" if wins else label, "steps": int(steps.sum()), "why": why})
    _serve_events(values, history, coming, out, ctx, ordinary, days, effects, served)
    return out, served


def _judge_day_kind(kind: str, values: np.ndarray, days: like.Days, ctx,
                    ordinary: Callable[[int, int], np.ndarray], effects: like.Effects) -> tuple[bool, str]:
    n = len(values)
    history_rows = days.row[:n]
    rows = [d for d in range(len(days.dates))
            if days.kinds[d] == kind and d >= MIN_BEFORE_DAYS and days.full(d) and d < days.row[n - 1]]
    errors = []
    for d in rows[-MAX_JUDGED:]:
        steps = np.flatnonzero(history_rows == d)
        origin, length = int(steps[0]), int(steps[-1] - steps[0] + 1)
        truth = values[origin: origin + length]
        try:
            by_like = like.like_days(values[:origin], length, ctx)
        except ValueError:
            continue
        by_ordinary = ordinary(origin, length)
        errors.append((float(np.mean(np.abs(by_like - truth))), float(np.mean(np.abs(by_ordinary - truth)))))
    a, b = effects.mix[kind]
    learnt = effects.occurrences.get(kind, 0)
    mix = f"{a:.2f} x weekend + {b:.2f} x working day, from {learnt} past occurrence(s)"
    if not errors:
        prior = PRIOR_WORDS.get(kind, "like a working day")
        return True, f"no past {kind} in the history to judge on: like days ({mix}; prior {prior})"
    by_like, by_ordinary = (float(np.mean(e)) for e in zip(*errors))
    ratio = by_like / by_ordinary if by_ordinary > 0 else (1.0 if by_like == 0 else np.inf)
    verdict = "like days" if by_like < by_ordinary else "today's model"
    return by_like < by_ordinary, (f"{verdict}: like days' MAE was {ratio:.2f}x today's model's on the last "
                                   f"{len(errors)} past {kind}(s) ({mix})")


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    covered = np.flatnonzero(mask)
    return np.split(covered, np.flatnonzero(np.diff(covered) > 1) + 1) if len(covered) else []


def _serve_events(values, history, coming: dict[str, np.ndarray], out, ctx, ordinary, days: like.Days,
                  now: like.Effects, served: list[dict]) -> None:
    """Apply, or not, the factor of each event with steps in the horizon (``coming``: its mask)."""
    cal: DayCalendar = ctx.calendar
    n = len(values)
    past = cal.event_steps(history)
    for name, mask in coming.items():
        factor = now.factors.get(name, cal.uplift(name))
        with_factor, without = [], []
        for run in _runs(past.get(name, np.zeros(n, dtype=bool)))[-MAX_JUDGED:]:
            origin = int(np.flatnonzero(days.row[:n] == days.row[run[0]])[0])
            if origin < MIN_BEFORE_DAYS * ctx.period:
                continue
            base = ordinary(origin, int(run[-1]) + 1 - origin)[run - origin]
            before = like.fit(values[:origin], 0, ctx)[1].factors.get(name, cal.uplift(name))
            with_factor.append(float(np.mean(np.abs(base * before - values[run]))))
            without.append(float(np.mean(np.abs(base - values[run]))))
        measured = now.event_occurrences.get(name, 0)
        if with_factor:
            apply = float(np.mean(with_factor)) < float(np.mean(without))
            why = (f"factor {factor:.2f} (from {measured} past occurrence(s), prior {cal.uplift(name):g}) "
                   f"{'applied' if apply else 'not applied'}: MAE with it {np.mean(with_factor):.4g}, "
                   f"without {np.mean(without):.4g} on the last {len(with_factor)} past occurrence(s)")
        else:
            apply = factor != 1.0
            why = (f"no past occurrence in the history to judge on: its configured uplift {factor:g}"
                   + ("" if apply else " (none configured): not applied"))
        if apply:
            out[mask] *= factor
        served.append({"event": name, "kind": "event", "factor": round(float(factor), 4) if apply else 1.0,
                       "steps": int(mask.sum()), "why": why})


def describe(record: dict) -> str:
    """One line for the command line's and the UI's notes."""
    if "event" in record:
        return f"event {record['event']} ({record['steps']} step(s)): {record['why']}"
    what = f"{record['date']} {record['kind']}" + (f" ({record['holiday']})" if record["holiday"] else "")
    return f"{what}: served by {record['model']}; {record['why']}"
