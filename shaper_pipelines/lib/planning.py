"""Scaling plans: a floor of warm instances per step, chosen so that, with reactive target tracking
still in charge above it, a service breaches less than reactive tracking alone at the same cost.

How the floor is made. Reactive tracking breaches on rising edges: it sees load one step late and
new instances need two more to serve. A day-ahead floor helps exactly there, if it holds the
instances the coming rise needs before it starts. So the floor is the demand that has been seen at
that time of day over the last week (a high quantile of it), widened by a window either side so
that a rise a little earlier than usual is still covered, at the target utilisation - or the p90
demand forecast, when it beats seasonal naive. Which candidate, or no floor at all, is decided per series by replaying the last days of its
own history (``lib.replay``): the candidate that would have breached least relative to reactive
tracking at no higher cost wins, and only if it wins clearly (``MARGIN``): a series whose floors
do not beat reactive tracking on its own history - no daily cycle, or only spikes - gets none.
Do no harm.

Every change of the floor is an AWS scheduled action, so the chosen floor is merged to an action
budget (``lib.action_budget``) before it is returned: the plan judged is the plan that would be
applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from scipy.ndimage import maximum_filter1d

from shaper_pipelines.lib import replay
from shaper_pipelines.lib.action_budget import DEFAULT_MAX_ACTIONS, DEFAULT_MERGE, budget_for, segments, within_budget
from shaper_pipelines.lib.durations import format_duration

PROFILE_DAYS = 7
BACKTEST_DAYS = 4
# Candidate floors: (quantile of the week's demand at that time of day, minutes either side a rise
# may come early or late). From a cheap median floor to the week's peak held an hour around it.
SHAPES = ((0.5, 0), (0.5, 10), (0.8, 10), (0.8, 30), (1.0, 30), (1.0, 60))
# A single breached step in the backtest is a spike, not a pattern: a floor chosen to cover it adds
# cost on every later day, and reactive tracking with a slightly lower target does as well for less.
MIN_MISSES = 2
MARGIN = 0.9  # a floor must beat reactive tracking by this much on history to be worth its cost
WORK_STEP = 300.0  # plans are made on 5-minute means, the grid replay judges on


class PlanError(ValueError):
    """A plan that cannot be made or would break its bounds, said plainly."""


@dataclass(frozen=True)
class FloorRule:
    quantile: float | None  # None: no floor, reactive tracking alone
    window_min: int = 0
    source: str = "week"  # "week": the last week's demand at that time; "forecast": the demand forecast

    @property
    def name(self) -> str:
        if self.quantile is None:
            return "no floor"
        if self.source == "forecast":
            return f"p{round(self.quantile * 100)} demand forecast ±{self.window_min} min"
        return f"p{round(self.quantile * 100)} of the last week ±{self.window_min} min"


NO_FLOOR = FloorRule(None)
FORECAST_RULES = [FloorRule(0.9, 0, "forecast"), FloorRule(0.9, 30, "forecast")]
RULES = [NO_FLOOR] + [FloorRule(q, w) for q, w in SHAPES]

# A forecaster gives the p90 demand for ``n`` steps after the first ``origin`` steps of history.
Forecaster = Callable[[int, int], np.ndarray]


def floor_demand(h: np.ndarray, period: int, n: int, rule: FloorRule, step: float,
                 forecaster: Forecaster | None = None) -> np.ndarray:
    """The demand the floor is sized for over the next ``n`` steps after history ``h``."""
    if rule.quantile is None:
        return np.zeros(n)
    w = int(round(rule.window_min * 60 / step))
    if rule.source == "forecast":
        demand = np.asarray(forecaster(len(h), n), dtype=np.float64)
        return maximum_filter1d(demand, size=2 * w + 1, mode="nearest") if w else demand
    k = min(PROFILE_DAYS, len(h) // period)
    days = h[len(h) - k * period:].reshape(k, period)
    if w:
        days = maximum_filter1d(days, size=2 * w + 1, axis=1, mode="nearest")
    return np.resize(np.quantile(days, rule.quantile, axis=0), n)


def calendar_floor(demand: np.ndarray, names: np.ndarray, index: pd.DatetimeIndex, calendar, served: list[dict],
                   forecast: np.ndarray, target_utilization: float) -> tuple[np.ndarray, np.ndarray]:
    """``demand`` with the calendar days the forecast served by like days taken from the
    forecast, and event steps whose factor applies raised to it (see ``make_plan``)."""
    if calendar is None or not served:
        return demand, names
    demand, names = demand.copy(), names.copy()
    dates = calendar.dates(index).astype(str)
    for record in served:
        if record.get("model") == "like_days":
            here = dates == record["date"]
            demand[here] = forecast[here]
            what = record["holiday"] or record["kind"]
            names[here] = f"{record['date']} {what}: the like-day forecast at {target_utilization:g} utilisation needs "
    events = calendar.event_steps(index)
    for record in served:
        if record.get("event") and record.get("factor", 1.0) > 1.0 and record["event"] in events:
            here = events[record["event"]] & (forecast > demand)
            demand[here] = forecast[here]
            names[here] = (f"event {record['event']} (x{record['factor']:g}): the forecast at "
                           f"{target_utilization:g} utilisation needs ")
    return demand, names


def daily_cycle(h: np.ndarray, period: int) -> float:
    """How alike consecutive days are: the median correlation of their hourly means over the last
    week. Near 1 for a service with office hours; near 0 for noise or a one-off trend."""
    hours = max(1, period // 24)
    k = min(PROFILE_DAYS + 1, len(h) // period)
    if k < 2:
        return 0.0
    days = h[len(h) - k * period:].reshape(k, period)
    hourly = days[:, : hours * (period // hours)].reshape(k, -1, hours).mean(axis=2)
    corr = []
    for a, b in zip(hourly[:-1], hourly[1:]):
        if a.std() > 0 and b.std() > 0:
            corr.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.median(corr)) if corr else 0.0


@dataclass
class RuleChoice:
    rule: FloorRule
    cycle: float
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (breach_ratio, cost)
    why: str = ""


def choose_rule(h: np.ndarray, c: float, target: float, period: int, step: float,
                backtest_days: int = BACKTEST_DAYS, forecaster: Forecaster | None = None) -> RuleChoice:
    """Replay the last days of the history under each rule and keep the best."""
    cycle = daily_cycle(h, period)
    days = len(h) // period
    b = min(backtest_days, days - 2)
    if b < 1:
        return RuleChoice(NO_FLOOR, cycle, why=f"{days} day(s) of history are too few to prove a floor on")
    # Replay only what the backtest needs: one day to settle, then the b days it scores. Every
    # reactive setting of the frontier and every candidate floor run side by side in one pass.
    seg = h[len(h) - (b + 1) * period:]
    start = period
    rules = RULES + (FORECAST_RULES if forecaster is not None else [])
    floors = np.zeros((len(replay.TARGETS) + len(rules), len(seg)), dtype=np.int64)
    for i, rule in enumerate(rules):
        if rule.quantile is None:
            continue
        row = floors[len(replay.TARGETS) + i]
        for d in range(b):
            origin = len(h) - (b - d) * period
            row[start + d * period: start + (d + 1) * period] = replay.wish(
                floor_demand(h[:origin], period, period, rule, step, forecaster), c, target)
    targets = np.concatenate([replay.TARGETS, np.full(len(rules), target)])
    caps = replay.serving_many(seg, c, targets, floors)
    frontier = [(float(t), _score(seg, cap, c, start)) for t, cap in zip(replay.TARGETS, caps)]
    max_cost = max(s.cost for _, s in frontier)  # reactive at its lowest target: the range compared
    choice = RuleChoice(NO_FLOOR, cycle)
    reactive_alone = caps[len(replay.TARGETS) + rules.index(NO_FLOOR)]
    misses = int(np.sum(seg[start:] > reactive_alone[start:] * c))
    if misses < MIN_MISSES:
        choice.why = (f"reactive tracking at {target:g} breached on {misses} step(s) of the last {b} day(s) of "
                      "history: no rise for a floor to anticipate, so a floor would only add cost")
        return choice
    best = None
    for rule, cap in zip(rules, caps[len(replay.TARGETS):]):
        s = _score(seg, cap, c, start)
        ratio = replay.breach_ratio(s, frontier)
        choice.scores[rule.name] = (ratio, s.cost)
        # A floor dearer than reactive tracking at its most generous setting has left the range
        # where the comparison means anything: headroom bought, not foresight.
        if s.cost > max_cost:
            continue
        key = (ratio, s.cost)
        if best is None or key < best[0]:
            best = (key, rule)
    if best is None or best[1].quantile is None or best[0][0] > MARGIN:
        choice.why = "no floor beat reactive tracking at equal cost on the last days of history"
        return choice
    choice.rule = best[1]
    choice.why = (f"{best[1].name}: breached {best[0][0]:.2f}x as often as reactive tracking at no higher cost "
                  f"over the last {b} day(s) of history (day-to-day likeness {cycle:.2f})")
    return choice


def _score(seg: np.ndarray, cap: np.ndarray, c: float, start: int) -> replay.Score:
    d, cp = seg[start:], cap[start:]
    oracle = replay.wish(d, c, replay.REACTIVE_TARGET).sum()
    return replay.Score(float(np.mean(d > cp * c) * 100), float(cp.sum() / oracle))


@dataclass
class Plan:
    frame: pd.DataFrame  # timestamp, desired_capacity, launch_at, planned_demand, reason
    rule: RuleChoice
    notes: list[str] = field(default_factory=list)


def make_plan(series: pd.Series, horizon: pd.Timedelta, *, capacity_per_instance: float,
              target_utilization: float = 0.7, warmup: pd.Timedelta = pd.Timedelta(seconds=300),
              min_capacity: int = 1, max_capacity: int | None = None,
              out_step: float | None = None, forecast_options: dict | None = None,
              use_forecast: bool = True, start: pd.Timestamp | None = None,
              max_actions: int | None = DEFAULT_MAX_ACTIONS, merge: str = DEFAULT_MERGE,
              published: pd.Series | None = None, served: list[dict] | None = None) -> Plan:
    """A floor per step over ``horizon`` after a regular ``series``, at ``out_step`` seconds
    (default: the series' own step). Desired capacity at a timestamp is what must be serving, warm,
    at that time; ``launch_at`` is when to start it. The plan begins at the first step after the
    history, or at the first step at or after ``start`` when that is later (a plan made now for
    history that ended at midnight starts now, not in the past).

    The floor changes at most ``budget_for(max_actions, horizon)`` times (``max_actions`` per 48
    hours; None: no budget), merged by ``merge`` (``lib.action_budget``): what is returned is
    exactly what would be scheduled on AWS, and what a replay of the plan judges.

    With ``use_forecast``, floors sized on the p90 demand forecast (``lib.forecast``, called with
    ``forecast_options``) compete with the week's profiles, unless the forecast loses to seasonal
    naive in its own backtest: such a forecast never reaches a plan, and the plan says so.
    ``published`` is a p90 forecast already made and judged (the demand_forecast asset's, indexed
    by timestamp): the plan's floor then uses it rather than fitting its own, and only the
    backtests at past origins fit the history again.

    Calendar days: where the forecast served a holiday (or a working day around one) by like
    days, because they did best on that kind's past occurrences (``lib.day_choice``), the floor
    there is sized on the forecast even when a week's profile is the rule, so a quiet holiday does
    not hold a working day's floor; under an event whose factor applies, the floor is at least the
    forecast's, so a campaign day gets its rise. ``served`` is the published forecast's record of
    that (the forecast fitted here keeps its own)."""
    if not capacity_per_instance > 0 or not math.isfinite(capacity_per_instance):
        raise PlanError(f"capacity per instance must be a positive number, not {capacity_per_instance}")
    if not 0 < target_utilization <= 1:
        raise PlanError(f"target utilisation must be in (0, 1], not {target_utilization}")
    if min_capacity < 1 or (max_capacity is not None and max_capacity < min_capacity):
        raise PlanError(f"capacity bounds must satisfy 1 <= min <= max (got {min_capacity}..{max_capacity})")
    step = float((series.index[1] - series.index[0]).total_seconds())
    out_step = float(out_step or step)
    notes: list[str] = []
    work = series
    if step < WORK_STEP:
        work = series.resample(pd.Timedelta(seconds=WORK_STEP), origin="epoch").mean().interpolate()
        notes.append(f"planned on {WORK_STEP:g}s means of the {step:g}s history")
    elif step > WORK_STEP:
        # A coarse sample is the load at its stamp, and between stamps the load moves on to the next
        # one: a floor sized on the sample alone is an hour late for a morning rise. Planned on
        # 5-minute steps interpolated between the samples; each coarse output step then holds the
        # highest floor inside it.
        work = series.resample(pd.Timedelta(seconds=WORK_STEP), origin="epoch").interpolate(method="time")
        notes.append(f"planned on {WORK_STEP:g}s steps interpolated between the {step:g}s samples")
    wstep = float((work.index[1] - work.index[0]).total_seconds()) if len(work) > 1 else step
    period = int(round(86400 / wstep))
    h = work.to_numpy(dtype=np.float64)
    end = series.index[-1] + pd.Timedelta(seconds=step)  # first instant after the history
    begin = end  # the plan's first step: on the history's grid, at or after ``start``
    if start is not None and pd.Timestamp(start) > end:
        begin = end + math.ceil((pd.Timestamp(start) - end) / pd.Timedelta(seconds=out_step)) * \
            pd.Timedelta(seconds=out_step)
        notes.append(f"the history ends {format_duration((begin - end).total_seconds())} before the plan "
                     f"starts at {begin:%Y-%m-%d %H:%M} UTC")
    first = work.index[-1] + pd.Timedelta(seconds=wstep)  # start of the first future work step
    n = int(math.ceil((begin + horizon - first) / pd.Timedelta(seconds=wstep))) + 1
    forecaster = None
    if use_forecast and len(h) >= 3 * period:
        forecaster, verdict = _forecaster(work, wstep, max(n, 1), forecast_options or {}, published)
        notes.append(verdict)
    # The rule is chosen on its floors as they are, which show its foresight; merged to the budget,
    # candidates differ mostly by how their merges fell, and choosing among those was measurably
    # noisier (benchmarks/merges.py). The chosen floor is merged below, and that is what is judged.
    choice = choose_rule(h, capacity_per_instance, target_utilization, period, wstep, forecaster=forecaster)
    demand = floor_demand(h, period, max(n, 1), choice.rule, wstep, forecaster)
    work_index = work.index[-1] + pd.to_timedelta(np.arange(1, max(n, 1) + 1) * wstep, unit="s")
    names = np.full(max(n, 1), f"{choice.rule.name} at {target_utilization:g} utilisation needs ", dtype=object)
    if forecaster is not None and choice.rule.quantile is not None and choice.rule.source != "forecast":
        calendar = (forecast_options or {}).get("calendar")
        served = served if served is not None else getattr(forecaster, "served", [])
        demand, names = calendar_floor(demand, names, work_index, calendar, served, forecaster(len(h), max(n, 1)),
                                       target_utilization)
    wanted = replay.wish(demand, capacity_per_instance, target_utilization) if choice.rule.quantile else \
        np.ones(max(n, 1), dtype=np.int64)
    desired = np.maximum(wanted, min_capacity)
    reasons = np.where(wanted >= min_capacity, names + wanted.astype(str),
                       f"the configured minimum {min_capacity}").astype(object)  # not cut to a fixed width
    if choice.rule.quantile is None:
        reasons[:] = f"floor at the minimum {min_capacity}: {choice.why}"
    if max_capacity is not None and np.any(desired > max_capacity):
        i = int(np.argmax(desired > max_capacity))
        raise PlanError(f"the plan needs {desired[i]} instances at {work_index[i].isoformat()}, above the "
                        f"maximum {max_capacity}; raise max_capacity or the capacity per instance")
    # Out on the caller's grid: each output step takes the work step it falls in, so any 5-minute
    # mean, first or max of the plan gives back the same value.
    out_index = begin + pd.to_timedelta(np.arange(0, int(math.ceil(horizon.total_seconds() / out_step))) * out_step,
                                        unit="s")
    # work_index stamps mark the START of each work step, so step i covers [idx[i], idx[i+1]).
    pos = np.clip(np.searchsorted(work_index.asi8, out_index.as_unit(work_index.unit).asi8, side="right") - 1,
                  0, len(work_index) - 1)
    if out_step > wstep:  # an output step spans several work steps: it holds the busiest of them
        ends = np.searchsorted(work_index.asi8, (out_index + pd.Timedelta(seconds=out_step)).as_unit(
            work_index.unit).asi8, side="left")
        pos = np.array([a + int(np.argmax(desired[a:max(b, a + 1)])) for a, b in zip(pos, ends)])
    floor = desired[pos].astype(np.int64)
    reason = reasons[pos]
    if max_actions is not None:
        budget = budget_for(max_actions, horizon.total_seconds() / 3600)
        floor, reason = _within_budget(floor, reason, out_index, budget, merge, out_step)
        notes.append(f"{segments(floor)} floor change(s) within a budget of {budget} scheduled actions "
                     f"({max_actions} per 48 h, merged by {merge})")
    frame = pd.DataFrame({
        "timestamp": out_index,
        "desired_capacity": floor,
        "launch_at": out_index - warmup,
        "planned_demand": demand[pos],
        "reason": reason,
    })
    return Plan(frame=frame, rule=choice, notes=notes)


def _within_budget(floor: np.ndarray, reason: np.ndarray, index: pd.DatetimeIndex, budget: int, merge: str,
                   step: float) -> tuple[np.ndarray, np.ndarray]:
    """The floor merged to ``budget`` segments, and the reason of each merged block: what the plan
    asked for inside it, and that it is held at one level to stay within the budget."""
    merged = within_budget(floor, budget, merge=merge, steps_per_hour=max(1, int(round(3600 / step))))
    if segments(merged) == segments(floor):
        return merged, reason
    reason = reason.copy()
    bounds = np.flatnonzero(np.r_[True, merged[1:] != merged[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        if np.array_equal(merged[a:b], floor[a:b]):
            continue
        peak = a + int(np.argmax(floor[a:b]))
        end = index[b - 1] + pd.Timedelta(seconds=step)
        reason[a:b] = (f"held at {merged[a]} from {index[a]:%H:%M} to {end:%H:%M} to keep within {budget} "
                       f"scheduled actions; the plan asks {floor[a:b].min()}..{floor[a:b].max()} here "
                       f"({reason[peak]} at {index[peak]:%H:%M})")
    return merged, reason


def _forecaster(work: pd.Series, step: float, n: int, options: dict,
                published: pd.Series | None = None) -> tuple[Forecaster | None, str]:
    """p90 demand forecasts from any origin of ``work``, if the forecast of the plan's ``n`` steps
    from the last origin beats seasonal naive in its backtest; else None and why. That forecast is
    ``published`` when it covers the plan's steps (it was judged where it was made); otherwise it
    is fitted here and kept, so the plan's own floor does not fit it again."""
    from shaper_pipelines.lib.forecast import forecast

    cache: dict[tuple[int, int], np.ndarray] = {}

    def p90(origin: int, n: int) -> np.ndarray:
        if (origin, n) not in cache:
            f = forecast(work.iloc[:origin], pd.Timedelta(seconds=n * step), **options)
            cache[(origin, n)] = f.frame["p90"].to_numpy()
        return cache[(origin, n)]

    backtests = "floors are backtested at past origins, where the history is fitted again"
    if published is not None and len(published) > 1:
        steps = work.index[-1] + pd.to_timedelta(np.arange(1, n + 1) * step, unit="s")
        known = published.sort_index()
        if known.index[0] <= steps[0] + pd.Timedelta(seconds=step) and known.index[-1] >= steps[-1] - pd.Timedelta(
                seconds=step):
            # On the plan's work grid: nearest earlier value of a finer forecast, linear between the
            # points of a coarser one.
            on_grid = known.reindex(known.index.union(steps)).interpolate(method="time",
                                                                           limit_direction="both").reindex(steps)
            cache[(len(work), n)] = on_grid.to_numpy(dtype=np.float64)
            return p90, f"the published demand forecast competes, as demand_forecast fitted it; {backtests}"
        note = (f"the published demand forecast covers {known.index[0]:%Y-%m-%d %H:%M} .. "
                f"{known.index[-1]:%Y-%m-%d %H:%M} UTC, not the plan's steps: fitted again here; ")
    else:
        note = ""

    now = forecast(work, pd.Timedelta(seconds=n * step), **options)
    cache[(len(work), n)] = now.frame["p90"].to_numpy()
    p90.served = now.served
    if not now.beats_naive:
        return None, (f"{note}the demand forecast ({now.model}) lost to seasonal naive in its backtest "
                      f"(MAE ratio {now.mase:.2f}); floors come from the history alone")
    return p90, (f"{note}the demand forecast ({now.model}, MAE ratio {now.mase:.2f} against seasonal naive) "
                 f"competes; {backtests}")
