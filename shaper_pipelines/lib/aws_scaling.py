"""Applying a scaling plan to AWS: scheduled actions that raise a group's floor ahead of load.

A plan holds one desired capacity per timestamp: the instances needed from that moment on. shaper
applies it as a *floor* and nothing more: an Auto Scaling group gets scheduled update-group actions
that set ``MinSize``, an ECS service's scalable target gets Application Auto Scaling scheduled
actions that set ``MinCapacity``. Neither a desired capacity nor a maximum is ever written: a
plan can never scale a group in below what its own policies want, and a maximum an operator
raised after the plan was made stays raised (AWS accepts a scheduled action with either bound
alone).

Scheduled actions shaper owns are named ``shaper-<UTC minute>`` (``shaper-20261128T1400Z``).
Those names are scoped by the group or scalable target, so re-applying a plan puts the same names
again (no duplicates), shaper-named actions that are no longer in the plan are deleted, and
actions with any other name are never touched.

This module reads a target and turns a plan into actions; ``aws_apply`` carries them out and
``aws_calls`` talks to AWS.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd

from shaper_pipelines.lib.aws_calls import ScalingError, call, make_client, read_all
from shaper_pipelines.lib.durations import format_duration
from shaper_pipelines.lib.scaling_config import ScalingTarget

NAME_PREFIX = "shaper-"
_OWN_NAME = re.compile(r"^shaper-\d{8}T\d{4}Z$")
ECS_NAMESPACE = "ecs"
ECS_DIMENSION = "ecs:service:DesiredCount"

# The operations that carry the actions out, as the audit records them. Auto Scaling groups take
# batches of up to 50 actions per call; Application Auto Scaling has only single calls.
ASG_PUT = "batch_put_scheduled_update_group_action"
ASG_DELETE = "batch_delete_scheduled_action"
ECS_PUT = "put_scheduled_action"
ECS_DELETE = "delete_scheduled_action"


@dataclass(frozen=True)
class Scheduled:
    """A scheduled action as AWS reports it; ``described`` is AWS's whole description of it, kept
    so that a rollback can put it back."""

    name: str
    at: datetime | None
    min_capacity: int | None
    max_capacity: int | None = None
    desired_capacity: int | None = None
    recurrence: str | None = None
    schedule: str | None = None  # ECS: the raw Schedule expression, e.g. at(2026-11-28T14:00:00)
    described: dict = field(default_factory=dict, hash=False, compare=False, repr=False)

    @property
    def owned(self) -> bool:
        return bool(_OWN_NAME.match(self.name))


@dataclass(frozen=True)
class TargetState:
    """An Auto Scaling group's (or ECS scalable target's) bounds now, and its scheduled actions.
    ``desired_capacity`` is None for ECS unless the ECS service was asked."""

    min_capacity: int
    max_capacity: int
    desired_capacity: int | None
    scheduled: tuple[Scheduled, ...] = ()


@dataclass(frozen=True)
class Action:
    """One scheduled action to put or delete, and why: ``operation`` is the AWS call that carries
    it (for a group, a batch call with ``params`` as one item, the group's name aside)."""

    target: str
    kind: str
    resource: str
    region: str
    operation: str
    params: dict = field(hash=False, compare=True)
    reason: str = ""
    name: str = ""
    at: datetime | None = None
    min_capacity: int | None = None

    @property
    def is_put(self) -> bool:
        return self.operation in (ASG_PUT, ECS_PUT)


def action_name(at: datetime) -> str:
    """The deterministic name of shaper's scheduled action at ``at`` (a UTC minute)."""
    return f"{NAME_PREFIX}{at.astimezone(timezone.utc):%Y%m%dT%H%MZ}"


# ---------------------------------------------------------------- reading a target


def describe_target(cfg: ScalingTarget, client, *, ecs_client=None) -> TargetState:
    """Current min/max/desired and every scheduled action (all pages) of ``cfg``'s group or
    scalable target. For ECS the desired count comes from the ECS service, and only when
    ``ecs_client`` is given."""
    return _describe(cfg.kind, cfg.resource, cfg.region, client, ecs_client=ecs_client)


def _describe(kind: str, resource: str, region: str, client, *, ecs_client=None) -> TargetState:
    if kind == "asg":
        groups = call(client, "describe_auto_scaling_groups", {"AutoScalingGroupNames": [resource]},
                      resource=resource)["AutoScalingGroups"]
        if not groups:
            raise ScalingError(f"no Auto Scaling group named {resource!r} in {region}: check the resource of "
                               "the target in scaling.yaml, the region, and the account")
        group = groups[0]
        scheduled = read_all(client, "describe_scheduled_actions", {"AutoScalingGroupName": resource},
                             "ScheduledUpdateGroupActions", resource=resource)
        return TargetState(int(group["MinSize"]), int(group["MaxSize"]), int(group["DesiredCapacity"]),
                           tuple(_asg_scheduled(a) for a in scheduled))
    where = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION}
    targets = call(client, "describe_scalable_targets", {**where, "ResourceIds": [resource]},
                   resource=resource)["ScalableTargets"]
    if not targets:
        raise ScalingError(f"ECS service {resource!r} is not registered as a scalable target with Application "
                           f"Auto Scaling in {region} (register_scalable_target for {ECS_DIMENSION} first, or "
                           "check the resource in scaling.yaml)")
    desired = None
    if ecs_client is not None:
        _, cluster, service = resource.split("/", 2)
        services = call(ecs_client, "describe_services", {"cluster": cluster, "services": [service]},
                        resource=resource)["services"]
        desired = int(services[0]["desiredCount"]) if services else None
    scheduled = read_all(client, "describe_scheduled_actions", {**where, "ResourceId": resource},
                         "ScheduledActions", resource=resource)
    return TargetState(int(targets[0]["MinCapacity"]), int(targets[0]["MaxCapacity"]), desired,
                       tuple(_ecs_scheduled(a) for a in scheduled))


def _asg_scheduled(a: dict) -> Scheduled:
    start = a.get("StartTime") or a.get("Time")
    return Scheduled(name=a["ScheduledActionName"], at=_as_utc(start) if start else None,
                     min_capacity=a.get("MinSize"), max_capacity=a.get("MaxSize"),
                     desired_capacity=a.get("DesiredCapacity"), recurrence=a.get("Recurrence"), described=a)


def _ecs_scheduled(a: dict) -> Scheduled:
    schedule = a.get("Schedule", "")
    at = None
    match = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", schedule)
    if match and a.get("Timezone", "UTC") in ("UTC", "Etc/UTC"):
        at = datetime.fromisoformat(match.group(1)).replace(tzinfo=timezone.utc)
    action = a.get("ScalableTargetAction") or {}
    return Scheduled(name=a["ScheduledActionName"], at=at, min_capacity=action.get("MinCapacity"),
                     max_capacity=action.get("MaxCapacity"), schedule=schedule, described=a)


# ---------------------------------------------------------------- from a plan to actions


@dataclass(frozen=True)
class _Floor:
    at: datetime
    value: int
    reason: str


def actions_for_plan(target_cfg: ScalingTarget, plan_frame: pd.DataFrame, now: datetime,
                     current_bounds: TargetState) -> list[Action]:
    """The AWS calls that make the target's shaper-owned scheduled actions match the plan.

    Each plan row holds from its timestamp until the next row (the last one holds on). The floor
    rises ``warmup`` ahead of each increase so the instances are serving when the load arrives, and
    falls only once no step inside the coming warmup needs more (a rolling maximum). Times are
    whole UTC minutes: rises rounded down, falls rounded up. Values below ``min_capacity`` are
    raised to it; a value above ``max_capacity`` or the group's own maximum is a ScalingError and
    no action is returned. Only change points after ``now`` become actions; puts identical to what
    AWS already has are left out, and obsolete shaper-named actions are deleted.

    Deletes come first, puts after: applied in that order, the number of actions on the target
    never exceeds what it is before or after the run. A shaper action that carries something a put
    cannot take away (a maximum, as shaper once wrote for ECS; a desired count; a recurrence) is
    deleted and put again, since a put leaves unspecified fields as they are.
    """
    now = _as_utc(now)
    steps = _plan_steps(target_cfg, plan_frame)
    _check_bounds(target_cfg, steps, now, current_bounds)
    floors = [f for f in _floors(target_cfg, steps) if f.at > now]

    existing = {s.name: s for s in current_bounds.scheduled if s.owned}
    wanted: dict[str, Action] = {}
    for f in floors:
        action = (_asg_put if target_cfg.kind == "asg" else _ecs_put)(target_cfg, f)
        wanted[action.name] = action
    puts = [a for name, a in wanted.items() if not _same(target_cfg.kind, existing.get(name), a)]
    deletes = [_delete(target_cfg, s) for name, s in sorted(existing.items()) if name not in wanted]
    deletes += [_delete(target_cfg, existing[a.name], replaced=_unremovable(existing[a.name]))
                for a in puts if a.name in existing and _unremovable(existing[a.name])]
    return deletes + puts


def _plan_steps(cfg: ScalingTarget, frame: pd.DataFrame) -> list[tuple[datetime, int, str]]:
    missing = {"timestamp", "desired_capacity", "reason"} - set(frame.columns)
    if missing:
        raise ValueError(f"a scaling plan needs columns timestamp, desired_capacity, reason; missing "
                         f"{', '.join(sorted(missing))}")
    if frame.empty:
        raise ScalingError(f"{cfg.name}: the plan is empty; nothing to apply")
    ts = pd.DatetimeIndex(frame["timestamp"])
    if ts.tz is None:
        raise ValueError("plan timestamps must be timezone-aware (UTC)")
    steps = []
    for t, value, reason in zip(ts.tz_convert("UTC"), frame["desired_capacity"], frame["reason"]):
        if value is None or not float(value) == float(value) or float(value) != int(float(value)):
            raise ScalingError(f"{cfg.name}: plan step {t.isoformat()} asks for {value!r} instances, "
                               "which is not a whole number")
        steps.append((t.to_pydatetime(), int(float(value)), "" if reason is None else str(reason)))
    steps.sort(key=lambda s: s[0])
    for (a, _, _), (b, _, _) in zip(steps, steps[1:]):
        if a == b:
            raise ValueError(f"{cfg.name}: plan timestamp {a.isoformat()} appears twice")
    return steps


def _in_effect_after(steps: list[tuple[datetime, int, str]], now: datetime):
    """The steps that still hold at or after ``now``: the one in force now and every later one."""
    for i, step in enumerate(steps):
        if i + 1 == len(steps) or steps[i + 1][0] > now:
            yield step


def _check_bounds(cfg: ScalingTarget, steps, now: datetime, state: TargetState) -> None:
    if cfg.min_capacity > state.max_capacity:
        raise ScalingError(f"{cfg.name}: min_capacity {cfg.min_capacity} in scaling.yaml is above the "
                           f"{_bound_name(cfg.kind)} {state.max_capacity} of {cfg.resource!r}; nothing was applied")
    limits = [(cfg.max_capacity, f"max_capacity {cfg.max_capacity} of target {cfg.name!r} in scaling.yaml"),
              (state.max_capacity, f"the {_bound_name(cfg.kind)} {state.max_capacity} of {cfg.resource!r}")]
    for bound, what in limits:
        over = [(t, v) for t, v, _ in _in_effect_after(steps, now) if v > bound]
        if over:
            t, v = over[0]
            more = f" (and {len(over) - 1} later steps)" if len(over) > 1 else ""
            raise ScalingError(f"{cfg.name}: plan step {t.isoformat()} asks for {v} instances, above {what}"
                               f"{more}; nothing was applied. Raise the bound or re-plan; shaper does not clip")


def _bound_name(kind: str) -> str:
    return "Auto Scaling group's MaxSize" if kind == "asg" else "scalable target's MaxCapacity"


def _floors(cfg: ScalingTarget, steps) -> list[_Floor]:
    """The floor at each UTC minute where it changes (all of them, past ones included)."""
    lead = timedelta(seconds=cfg.warmup)
    minute = timedelta(minutes=1)
    times = [t for t, _, _ in steps]
    candidates = sorted({_floor_minute(t - lead) for t in times} | {_ceil_minute(t) for t in times})
    out: list[_Floor] = []
    for m in candidates:
        # Minute m holds a floor that covers every step overlapping [m, m + 1 min + warmup): from
        # the step in force at m to the last one starting before the window ends.
        first = max(0, bisect.bisect_right(times, m) - 1)
        window = steps[first:bisect.bisect_left(times, m + minute + lead)]
        if not window:
            continue
        t, v, reason = max(window, key=lambda s: (s[1], -s[0].timestamp()))
        value = max(v, cfg.min_capacity)
        notes = []
        if v < cfg.min_capacity:
            notes.append(f"plan asked for {v}; min_capacity is {cfg.min_capacity}")
        if t > m:
            notes.append(f"raised {format_duration((t - m).total_seconds())} before the step at "
                         f"{t:%Y-%m-%dT%H:%MZ} for the {format_duration(cfg.warmup)} warmup")
        text = "; ".join([reason] * bool(reason) + notes) or f"plan step {t.isoformat()}"
        if not out or out[-1].value != value:
            out.append(_Floor(m, value, text))
    return out


def _floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _ceil_minute(t: datetime) -> datetime:
    down = _floor_minute(t)
    return down if down == t else down + timedelta(minutes=1)


def _asg_put(cfg: ScalingTarget, f: _Floor) -> Action:
    name = action_name(f.at)
    params = {"AutoScalingGroupName": cfg.resource, "ScheduledActionName": name,
              "StartTime": f"{f.at:%Y-%m-%dT%H:%M:%SZ}", "MinSize": f.value}
    return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ASG_PUT, params, f.reason, name, f.at, f.value)


def _ecs_put(cfg: ScalingTarget, f: _Floor) -> Action:
    name = action_name(f.at)
    # MinCapacity alone: a MaxCapacity here would put back, when the action runs, whatever maximum
    # the plan was made with, undoing an operator who raised it since (and scaling the service in).
    params = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION, "ResourceId": cfg.resource,
              "ScheduledActionName": name, "Schedule": f"at({f.at:%Y-%m-%dT%H:%M:%S})", "Timezone": "UTC",
              "ScalableTargetAction": {"MinCapacity": f.value}}
    return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ECS_PUT, params, f.reason, name, f.at, f.value)


def _delete(cfg: ScalingTarget, s: Scheduled, replaced: str = "") -> Action:
    when = f" at {s.at:%Y-%m-%dT%H:%MZ}" if s.at else ""
    reason = (f"replaced: it carries {replaced}, which a put cannot remove" if replaced
              else f"no longer in the plan: floor {s.min_capacity}{when}")
    if cfg.kind == "asg":
        return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ASG_DELETE,
                      {"AutoScalingGroupName": cfg.resource, "ScheduledActionName": s.name}, reason, s.name, s.at)
    params = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION, "ResourceId": cfg.resource,
              "ScheduledActionName": s.name}
    return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ECS_DELETE, params, reason, s.name, s.at)


def _same(kind: str, existing: Scheduled | None, action: Action) -> bool:
    """Whether AWS already holds exactly ``action``: the floor at that time and nothing else."""
    if existing is None or _unremovable(existing) or existing.min_capacity != action.min_capacity:
        return False
    if kind == "asg":
        return existing.at == action.at
    return existing.schedule == action.params["Schedule"] and existing.at is not None


def _unremovable(s: Scheduled) -> str:
    """What ``s`` carries that a put of a floor would leave in place, or "" (puts update only the
    fields they name)."""
    found = [f"{what} {value}" for what, value in (("a maximum", s.max_capacity),
                                                     ("a desired capacity", s.desired_capacity),
                                                     ("a recurrence", s.recurrence)) if value is not None]
    return " and ".join(found)


def _as_utc(value) -> datetime:
    ts = pd.Timestamp(value)
    if ts.tz is None:
        raise ValueError(f"{value!r} has no timezone; shaper schedules in UTC and needs an aware time")
    return ts.tz_convert("UTC").to_pydatetime()


__all__ = ["Action", "Scheduled", "ScalingError", "TargetState", "action_name", "actions_for_plan",
           "describe_target", "make_client"]
