"""Applying a scaling plan to AWS: scheduled actions that raise a group's floor ahead of load.

A plan holds one desired capacity per timestamp: the instances needed from that moment on. shaper
applies it as a *floor* and nothing more: an Auto Scaling group gets scheduled update-group actions
that set ``MinSize``, an ECS service's scalable target gets Application Auto Scaling scheduled
actions that set ``MinCapacity``. Desired capacity is never set, so a plan can never scale a
group in below what its own policies want, and it never raises a maximum.

Scheduled actions shaper owns are named ``shaper-<UTC minute>`` (``shaper-20261128T1400Z``).
Those names are scoped by the group or scalable target, so re-applying a plan puts the same names
again (no duplicates), shaper-named actions that are no longer in the plan are deleted, and
actions with any other name are never touched.

boto3 is imported inside the functions that need it so that importing this module stays cheap.
"""

from __future__ import annotations

import bisect
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

import pandas as pd

from shaper_pipelines.lib.durations import format_duration
from shaper_pipelines.lib.scaling_config import ScalingTarget

NAME_PREFIX = "shaper-"
_OWN_NAME = re.compile(r"^shaper-\d{8}T\d{4}Z$")
ECS_NAMESPACE = "ecs"
ECS_DIMENSION = "ecs:service:DesiredCount"

ASG_PUT = "put_scheduled_update_group_action"
ASG_DELETE = "delete_scheduled_action"
ECS_PUT = "put_scheduled_action"
ECS_DELETE = "delete_scheduled_action"

THROTTLING = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"})
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
# Server-side hiccups are retried like throttling: every call made here is an idempotent upsert,
# a delete (where "already gone" counts as done) or a read.
_TRANSIENT = frozenset({"ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout",
                        "RequestTimeoutException"})


class ScalingError(Exception):
    """A plan that cannot be applied as it stands, or an AWS call that failed; the message names
    the target, the resource and what to do."""


@dataclass(frozen=True)
class Scheduled:
    """A scheduled action as AWS reports it."""

    name: str
    at: datetime | None
    min_capacity: int | None
    max_capacity: int | None = None
    desired_capacity: int | None = None
    recurrence: str | None = None
    schedule: str | None = None  # ECS: the raw Schedule expression, e.g. at(2026-11-28T14:00:00)

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
    """One AWS call: ``operation`` on the client with exactly ``params``, and why."""

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


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with full jitter for throttled calls: attempt n waits a random time in
    [0, min(max_delay, base_delay * 2**(n-1))]."""

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        return self.rng() * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


def action_name(at: datetime) -> str:
    """The deterministic name of shaper's scheduled action at ``at`` (a UTC minute)."""
    return f"{NAME_PREFIX}{at.astimezone(timezone.utc):%Y%m%dT%H%MZ}"


# ---------------------------------------------------------------- AWS clients and reading state


def make_client(cfg: ScalingTarget, endpoint_url: str | None = None):
    """The boto3 client that scales ``cfg``: autoscaling for an ASG, application-autoscaling for
    ECS. botocore's own retries are off so that throttling backoff is ``Retry``'s alone (two retry
    layers multiply their attempts)."""
    import boto3
    from botocore.config import Config

    service = "autoscaling" if cfg.kind == "asg" else "application-autoscaling"
    return boto3.client(service, region_name=cfg.region, endpoint_url=endpoint_url,
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def describe_target(cfg: ScalingTarget, client, *, ecs_client=None, retry: Retry | None = None) -> TargetState:
    """Current min/max/desired and scheduled actions of ``cfg``'s group or scalable target.
    For ECS the desired count comes from the ECS service, and only when ``ecs_client`` is given."""
    return _describe(cfg.kind, cfg.resource, cfg.region, client, ecs_client=ecs_client, retry=retry or Retry())


def _describe(kind: str, resource: str, region: str, client, *, ecs_client=None, retry: Retry) -> TargetState:
    if kind == "asg":
        groups = _call(client, "describe_auto_scaling_groups", {"AutoScalingGroupNames": [resource]},
                       resource=resource, retry=retry)["AutoScalingGroups"]
        if not groups:
            raise ScalingError(f"no Auto Scaling group named {resource!r} in {region}: check the resource of "
                               "the target in scaling.yaml, the region, and the account")
        group = groups[0]
        scheduled = [_asg_scheduled(a) for page in _pages(client, "describe_scheduled_actions",
                                                           {"AutoScalingGroupName": resource}, resource, retry)
                     for a in page["ScheduledUpdateGroupActions"]]
        return TargetState(int(group["MinSize"]), int(group["MaxSize"]), int(group["DesiredCapacity"]),
                           tuple(scheduled))
    where = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION}
    targets = _call(client, "describe_scalable_targets", {**where, "ResourceIds": [resource]},
                    resource=resource, retry=retry)["ScalableTargets"]
    if not targets:
        raise ScalingError(f"ECS service {resource!r} is not registered as a scalable target with Application "
                           f"Auto Scaling in {region} (register_scalable_target for {ECS_DIMENSION} first, or "
                           "check the resource in scaling.yaml)")
    desired = None
    if ecs_client is not None:
        _, cluster, service = resource.split("/", 2)
        services = _call(ecs_client, "describe_services", {"cluster": cluster, "services": [service]},
                         resource=resource, retry=retry)["services"]
        desired = int(services[0]["desiredCount"]) if services else None
    scheduled = [_ecs_scheduled(a) for page in _pages(client, "describe_scheduled_actions",
                                                       {**where, "ResourceId": resource}, resource, retry)
                 for a in page["ScheduledActions"]]
    return TargetState(int(targets[0]["MinCapacity"]), int(targets[0]["MaxCapacity"]), desired, tuple(scheduled))


def _pages(client, operation: str, params: dict, resource: str, retry: Retry):
    # By hand rather than with a botocore paginator, so that every page goes through _call's retries.
    token = None
    while True:
        page = _call(client, operation, {**params, **({"NextToken": token} if token else {})},
                     resource=resource, retry=retry)
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _asg_scheduled(a: dict) -> Scheduled:
    start = a.get("StartTime") or a.get("Time")
    return Scheduled(name=a["ScheduledActionName"], at=_as_utc(start) if start else None,
                     min_capacity=a.get("MinSize"), max_capacity=a.get("MaxSize"),
                     desired_capacity=a.get("DesiredCapacity"), recurrence=a.get("Recurrence"))


def _ecs_scheduled(a: dict) -> Scheduled:
    schedule = a.get("Schedule", "")
    at = None
    match = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", schedule)
    if match and a.get("Timezone", "UTC") in ("UTC", "Etc/UTC"):
        at = datetime.fromisoformat(match.group(1)).replace(tzinfo=timezone.utc)
    action = a.get("ScalableTargetAction") or {}
    return Scheduled(name=a["ScheduledActionName"], at=at, min_capacity=action.get("MinCapacity"),
                     max_capacity=action.get("MaxCapacity"), schedule=schedule)


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
    """
    now = _as_utc(now)
    steps = _plan_steps(target_cfg, plan_frame)
    _check_bounds(target_cfg, steps, now, current_bounds)
    floors = [f for f in _floors(target_cfg, steps) if f.at > now]

    existing = {s.name: s for s in current_bounds.scheduled if s.owned}
    wanted: dict[str, Action] = {}
    for f in floors:
        action = (_asg_put if target_cfg.kind == "asg" else _ecs_put)(target_cfg, f, current_bounds)
        wanted[action.name] = action
    puts = [a for name, a in wanted.items() if not _same(target_cfg.kind, existing.get(name), a)]
    deletes = [_delete(target_cfg, s) for name, s in sorted(existing.items()) if name not in wanted]
    # Puts first: if a run stops half-way, the group keeps its new floors rather than losing old ones.
    return puts + deletes


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


def _asg_put(cfg: ScalingTarget, f: _Floor, state: TargetState) -> Action:
    name = action_name(f.at)
    params = {"AutoScalingGroupName": cfg.resource, "ScheduledActionName": name,
              "StartTime": f"{f.at:%Y-%m-%dT%H:%M:%SZ}", "MinSize": f.value}
    return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ASG_PUT, params, f.reason, name, f.at, f.value)


def _ecs_put(cfg: ScalingTarget, f: _Floor, state: TargetState) -> Action:
    name = action_name(f.at)
    # Application Auto Scaling sets both bounds when the action runs; MaxCapacity is today's so that
    # shaper only ever moves the floor.
    params = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION, "ResourceId": cfg.resource,
              "ScheduledActionName": name, "Schedule": f"at({f.at:%Y-%m-%dT%H:%M:%S})", "Timezone": "UTC",
              "ScalableTargetAction": {"MinCapacity": f.value, "MaxCapacity": state.max_capacity}}
    return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ECS_PUT, params, f.reason, name, f.at, f.value)


def _delete(cfg: ScalingTarget, s: Scheduled) -> Action:
    when = f" at {s.at:%Y-%m-%dT%H:%MZ}" if s.at else ""
    reason = f"no longer in the plan: floor {s.min_capacity}{when}"
    if cfg.kind == "asg":
        return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ASG_DELETE,
                      {"AutoScalingGroupName": cfg.resource, "ScheduledActionName": s.name}, reason, s.name, s.at)
    params = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION, "ResourceId": cfg.resource,
              "ScheduledActionName": s.name}
    return Action(cfg.name, cfg.kind, cfg.resource, cfg.region, ECS_DELETE, params, reason, s.name, s.at)


def _same(kind: str, existing: Scheduled | None, action: Action) -> bool:
    if existing is None:
        return False
    if kind == "asg":
        return (existing.at == action.at and existing.min_capacity == action.min_capacity
                and existing.max_capacity is None and existing.desired_capacity is None
                and existing.recurrence is None)
    target_action = action.params["ScalableTargetAction"]
    return (existing.schedule == action.params["Schedule"] and existing.at is not None
            and existing.min_capacity == target_action["MinCapacity"]
            and existing.max_capacity == target_action["MaxCapacity"])


# ---------------------------------------------------------------- applying


def action_record(action: Action, *, actor: str, dry_run: bool, outcome: str, plan_id: int | None,
                  at: datetime | None = None) -> dict:
    """What ScalingStore.record_actions keeps of one action: who, what, when, why and how it went."""
    return {"at": at or datetime.now(timezone.utc), "actor": actor, "target": action.target, "kind": action.kind,
            "resource": action.resource, "action": action.operation, "params": action.params,
            "reason": action.reason, "dry_run": dry_run, "outcome": outcome, "plan_id": plan_id}


def apply(actions: Sequence[Action], client, *, dry_run: bool = True, actor: str, store, plan_id: int | None,
          retry: Retry | None = None) -> list[dict]:
    """Apply ``actions`` (all for one target) and record each in ``store`` (a ScalingStore).

    Everything is validated first (the group or scalable target exists, no floor above its current
    maximum) and nothing changes when that fails. A dry run calls only describe operations and
    records ``would-apply``. A real run stops at the first failed call and records it, and the
    actions after it, as failed. Raises ScalingError on any failure; returns the records.
    """
    if not actions:
        return []
    retry = retry or Retry()
    first = actions[0]
    if any((a.target, a.kind, a.resource) != (first.target, first.kind, first.resource) for a in actions):
        raise ValueError("apply() takes the actions of one target at a time")
    records: list[dict] = []

    def record(action: Action, outcome: str) -> None:
        records.append(action_record(action, actor=actor, dry_run=dry_run, outcome=outcome, plan_id=plan_id))

    try:
        _validate(actions, client, retry)
    except ScalingError as exc:
        for a in actions:
            record(a, f"failed: {exc}")
        store.record_actions(records)
        raise

    if dry_run:
        for a in actions:
            record(a, "would-apply")
        store.record_actions(records)
        return records

    failure: ScalingError | None = None
    failed_name = ""
    try:
        for a in actions:
            if failure is not None:
                record(a, f"failed: not attempted because {failed_name} failed before it")
                continue
            try:
                _call(client, a.operation, a.params, resource=a.resource, retry=retry, gone_ok=not a.is_put)
                record(a, "applied")
            except ScalingError as exc:
                failure, failed_name = exc, f"{a.operation} {a.name}"
                record(a, f"failed: {exc}")
    finally:
        # Whatever happened, what was changed is on record.
        store.record_actions(records)
    if failure is not None:
        raise failure
    return records


def _validate(actions: Sequence[Action], client, retry: Retry) -> None:
    first = actions[0]
    state = _describe(first.kind, first.resource, first.region, client, retry=retry)
    for a in actions:
        if a.is_put and a.min_capacity is not None and a.min_capacity > state.max_capacity:
            raise ScalingError(f"{a.target}: {a.name} would set the floor to {a.min_capacity}, above the "
                               f"{_bound_name(a.kind)} {state.max_capacity} of {a.resource!r} now; "
                               "nothing was applied")
        # An ECS scheduled action sets MaxCapacity too; one computed against an older maximum would
        # quietly put that maximum back when it runs.
        if a.operation == ECS_PUT and a.params["ScalableTargetAction"]["MaxCapacity"] != state.max_capacity:
            raise ScalingError(f"{a.target}: the scalable target's MaxCapacity of {a.resource!r} is now "
                               f"{state.max_capacity}, not the {a.params['ScalableTargetAction']['MaxCapacity']} "
                               "the actions were computed with; describe and compute them again. Nothing was applied")


def apply_plan(cfg: ScalingTarget, plan_frame: pd.DataFrame, client, *, store, plan_id: int | None, actor: str,
               dry_run: bool = True, now: datetime | None = None, retry: Retry | None = None) -> list[dict]:
    """Describe the target, turn the plan into actions and apply them: the whole path in one call."""
    retry = retry or Retry()
    state = describe_target(cfg, client, retry=retry)
    actions = actions_for_plan(cfg, plan_frame, now or datetime.now(timezone.utc), state)
    return apply(actions, client, dry_run=dry_run, actor=actor, store=store, plan_id=plan_id, retry=retry)


def _call(client, operation: str, params: dict, *, resource: str, retry: Retry, gone_ok: bool = False) -> Any:
    """``client.<operation>(**params)``, retrying throttling and server hiccups, with AWS errors
    turned into ScalingErrors that say which call on which resource failed."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

    for attempt in range(1, max(1, retry.max_attempts) + 1):
        try:
            return getattr(client, operation)(**params)
        except ClientError as exc:
            code, message = _error_of(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            retryable = code in THROTTLING or code in _TRANSIENT or status >= 500
            if retryable and attempt < retry.max_attempts:
                retry.sleep(retry.delay(attempt))
                continue
            if code in ACCESS_DENIED:
                raise ScalingError(f"access denied ({code}) for {operation} on {resource}: {message}") from exc
            if gone_ok and _is_gone(code, message):
                return None
            if retryable:
                raise ScalingError(f"{operation} on {resource} still failing ({code or status}) after "
                                   f"{attempt} attempts: {message}") from exc
            raise ScalingError(f"{operation} on {resource} failed ({code}): {message}") from exc
        except BotoConnectionError as exc:
            if attempt < retry.max_attempts:
                retry.sleep(retry.delay(attempt))
                continue
            raise ScalingError(f"{operation} on {resource}: cannot reach AWS after {attempt} attempts: {exc}") from exc
        except BotoCoreError as exc:
            raise ScalingError(f"{operation} on {resource}: {exc}") from exc
    raise AssertionError("unreachable")


def _error_of(exc) -> tuple[str, str]:
    """The AWS error code and message of a ClientError. When botocore could not parse the error body
    (an XML error document from a JSON-protocol service, as moto sends for IAM denials), it reports
    the HTTP status as the code and the raw body as the message; the real code is inside."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", exc))
    if code.isdigit() and "<Code>" in message:
        inner_code = re.search(r"<Code>([^<]+)</Code>", message)
        inner_message = re.search(r"<Message>([^<]*)</Message>", message)
        if inner_code:
            return inner_code.group(1), inner_message.group(1) if inner_message else message
    return code, message


def _is_gone(code: str, message: str) -> bool:
    # A delete retried after a lost response finds nothing to delete; that is success.
    return code == "ObjectNotFoundException" or (code == "ValidationError" and "not found" in message.lower())


def _as_utc(value) -> datetime:
    ts = pd.Timestamp(value)
    if ts.tz is None:
        raise ValueError(f"{value!r} has no timezone; shaper schedules in UTC and needs an aware time")
    return ts.tz_convert("UTC").to_pydatetime()


__all__ = ["Action", "Retry", "Scheduled", "ScalingError", "TargetState", "action_name", "actions_for_plan",
           "apply", "apply_plan", "describe_target", "make_client"]
