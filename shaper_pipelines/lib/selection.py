"""Which stored profiles to rehearse now: their trigger conditions, their priority, and what the
fleet can run at once. Every profile gets a decision and the reason for it, chosen or not, so
that the UI can show why a profile did not run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from croniter import croniter

from shaper_pipelines.lib.profile import Profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    profile_id: str
    version: int
    resource: str
    priority: int
    chosen: bool
    why: str


def cron_due(expression: str, tz: str, now: datetime, window_s: float) -> bool:
    """Whether the schedule fired in ``(now - window, now]``."""
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(tz))
    previous = croniter(expression, local).get_prev(datetime)
    return (local - previous).total_seconds() < window_s


def metric_condition(promql: str, comparator: str, threshold: float, for_s: float) -> str:
    """PromQL that is 1 when ``promql comparator threshold`` has held for ``for_s`` seconds."""
    condition = f"(({promql}) {comparator} bool {threshold!r})"
    if for_s <= 0:
        return f"min({condition})"
    return f"min(min_over_time({condition}[{int(for_s)}s:30s]))"


def select(
    profiles: list[tuple[Profile, int]],
    *,
    now: datetime,
    window_s: float,
    events: set[str],
    evaluate_metric: Callable[[str], bool | None],
    slots: dict[str, int],
    requested: set[str] | None = None,
) -> list[Decision]:
    """Decide for each ``(profile, version)``: due by a trigger, or, when ``requested`` names ids,
    exactly those (an operator who names what to rehearse means only that: a cron firing at the
    same hour must not add a 90-minute backup to an 8-second check); then highest priority first
    while the fleet has a free slot for its resource."""
    due: list[tuple[Profile, int, str]] = []
    decisions: list[Decision] = []
    for profile, version in profiles:
        try:
            reason = _due(profile, now, window_s, events, evaluate_metric, requested or set())
        except Exception as exc:  # noqa: BLE001 - one bad profile must not stop the selection of the others
            reason = f"skipped: its triggers cannot be evaluated ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
            log.warning("selection: profile %r version %s %s", profile.profile_id, version, reason)
        if reason.startswith("due"):
            due.append((profile, version, reason))
        else:
            decisions.append(Decision(profile.profile_id, version, profile.resource_type.value, profile.priority,
                                      False, reason))
    free = dict(slots)
    for profile, version, reason in sorted(due, key=lambda d: (-d[0].priority, d[0].profile_id)):
        resource = profile.resource_type.value
        if free.get(resource, 0) > 0:
            free[resource] -= 1
            decisions.append(Decision(profile.profile_id, version, resource, profile.priority, True, reason))
        else:
            why = (f"{reason}, but no agent of the fleet runs {resource} load" if not slots.get(resource)
                   else f"{reason}, but the fleet's {resource} slots went to higher priorities")
            decisions.append(Decision(profile.profile_id, version, resource, profile.priority, False, why))
    return sorted(decisions, key=lambda d: (not d.chosen, -d.priority, d.profile_id))


def _due(profile: Profile, now: datetime, window_s: float, events: set[str],
         evaluate_metric: Callable[[str], bool | None], requested: set[str]) -> str:
    if profile.profile_id in requested:
        return "due: requested by id"
    if requested:
        return "not requested: this run rehearses only the profiles named"
    if not profile.trigger_conditions:
        return "no trigger conditions: runs only when requested by id"
    notes = []
    for trigger in profile.trigger_conditions:
        if trigger.kind == "cron":
            if cron_due(trigger.cron, trigger.timezone, now, window_s):
                return f"due: cron '{trigger.cron}' ({trigger.timezone}) fired in the last {window_s / 60:g} min"
            notes.append(f"cron '{trigger.cron}' not due")
        elif trigger.kind == "event":
            if trigger.event in events:
                return f"due: event {trigger.event} arrived"
            notes.append(f"event {trigger.event} has not arrived")
        else:
            query = metric_condition(trigger.promql, trigger.comparator, trigger.threshold, trigger.for_)
            held = evaluate_metric(query)
            if held:
                return f"due: {trigger.promql} {trigger.comparator} {trigger.threshold:g} held"
            notes.append("metric condition not evaluated (no Prometheus)" if held is None
                         else f"{trigger.promql} {trigger.comparator} {trigger.threshold:g} does not hold")
    return "not due: " + "; ".join(notes)
