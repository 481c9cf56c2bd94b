"""Carrying scaling actions out on AWS: all targets or none.

A run has four steps.

1. **Prepare** every target before changing any: describe it (it exists; its bounds; all its
   scheduled actions, every page), compute its actions (no floor above its current maximum),
   count (the owner's actions plus shaper's after the run must fit AWS's quota, which counts
   both) and probe write permission harmlessly, by deleting a shaper-named action that cannot
   exist (AccessDenied refuses; "not found" means allowed). One target failing stops the run
   with nothing changed, and every problem found is reported at once.
2. **Snapshot** shaper's actions on each target, as prepare has just read them.
3. **Apply** target by target: deletes first, then puts, so that a target never holds more actions
   than before or after the run; groups in batches of 50, Application Auto Scaling one call per
   action, paced. Before each target ``before_target`` re-reads the operator switches: a pause or
   dry run switched on mid-run stops the run there. What was applied stays (a pause means stop
   changing things, not undo them).
4. **Restore** on any failure: every target the run changed, the failing one included, gets its
   snapshot back (shaper actions it did not have deleted, the ones it had put back, never with a
   maximum), and the error says per target what became of it.

Every action is recorded once, with its final outcome; each write a rollback makes is recorded
too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from typing import Any, Callable, Sequence

import pandas as pd

from shaper_pipelines.lib.aws_calls import ACCESS_DENIED, Pacing, ScalingError, call, is_gone
from shaper_pipelines.lib.aws_scaling import (
    ASG_DELETE, ASG_PUT, ECS_DELETE, ECS_DIMENSION, ECS_NAMESPACE, ECS_PUT, Action, Scheduled, TargetState,
    _as_utc, _bound_name, _describe, actions_for_plan,
)
from shaper_pipelines.lib.scaling_config import SCHEDULED_ACTION_QUOTA, ScalingTarget

BATCH_SIZE = 50  # BatchPutScheduledUpdateGroupAction and BatchDeleteScheduledAction take at most 50
# Shaper-named, and never made: shaper schedules only minutes still to come.
PROBE_NAME = "shaper-19700101T0000Z"
_WRITE_PERMISSIONS = {
    "asg": "autoscaling:BatchPutScheduledUpdateGroupAction and autoscaling:BatchDeleteScheduledAction",
    "ecs": "application-autoscaling:PutScheduledAction and application-autoscaling:DeleteScheduledAction",
}


class ApplyError(ScalingError):
    """A run that did not apply everything: the message says per target what became of it;
    ``outcomes`` has the same per target, ``records`` the audit rows written."""

    def __init__(self, message: str, outcomes: dict[str, str], records: list[dict]):
        super().__init__(message)
        self.outcomes = outcomes
        self.records = records


@dataclass
class TargetRun:
    """One target's part in a run. ``compute`` turns the state prepare reads into the actions."""

    name: str
    kind: str
    resource: str
    region: str
    client: Any
    plan_id: int | None
    compute: Callable[[TargetState, datetime], list[Action]]
    state: TargetState | None = None
    actions: list[Action] = field(default_factory=list)
    outcomes: dict[Action, str] = field(default_factory=dict)  # the actions sent, and how each went

    @property
    def snapshot(self) -> dict[str, Scheduled]:
        return {s.name: s for s in self.state.scheduled if s.owned} if self.state else {}


def target_for_plan(cfg: ScalingTarget, plan_frame: pd.DataFrame, client, *, plan_id: int | None = None) -> TargetRun:
    """A run's part for ``cfg``: its actions computed from ``plan_frame`` against what prepare reads."""
    return TargetRun(cfg.name, cfg.kind, cfg.resource, cfg.region, client, plan_id,
                     lambda state, now: actions_for_plan(cfg, plan_frame, now, state))


def target_for_actions(actions: Sequence[Action], client, *, plan_id: int | None = None) -> TargetRun:
    """A run's part for actions computed earlier (all of one target): prepare checks them again
    against the target as it is now."""
    first = actions[0]
    if any((a.target, a.kind, a.resource) != (first.target, first.kind, first.resource) for a in actions):
        raise ValueError("target_for_actions() takes the actions of one target")
    # Known from the start, so that a failed check is on record against each of them.
    return TargetRun(first.target, first.kind, first.resource, first.region, client, plan_id,
                     lambda state, now: _within_maximum(list(actions), state), actions=list(actions))


def action_record(action: Action, *, actor: str, dry_run: bool, outcome: str, plan_id: int | None,
                  at: datetime | None = None) -> dict:
    """What ScalingStore.record_actions keeps of one action: who, what, when, why and how it went."""
    return {"at": at or datetime.now(timezone.utc), "actor": actor, "target": action.target, "kind": action.kind,
            "resource": action.resource, "action": action.operation, "params": action.params,
            "reason": action.reason, "dry_run": dry_run, "outcome": outcome, "plan_id": plan_id}


# ---------------------------------------------------------------- a run


def apply_targets(targets: Sequence[TargetRun], *, store, actor: str, dry_run: bool = True,
                  now: datetime | None = None, pacing: Pacing | None = None,
                  before_target: Callable[[str], str | None] | None = None) -> list[dict]:
    """Prepare every target, then (unless ``dry_run``) apply them one by one, restoring every
    changed target if anything fails. ``before_target(name)`` is asked before each target is
    changed and returns why to stop, or None. Records every action in ``store`` (a ScalingStore)
    and returns the records; raises ApplyError when not everything was applied."""
    now = _as_utc(now or datetime.now(timezone.utc))
    pacing = pacing or Pacing()
    records: list[dict] = []

    def record(t: TargetRun, action: Action, outcome: str) -> None:
        records.append(action_record(action, actor=actor, dry_run=dry_run, outcome=outcome, plan_id=t.plan_id))

    try:
        problems = _prepare_all(targets, now, pacing)
        if problems:
            for t in targets:
                why = (problems.get(t.name)
                       or f"not applied: {', '.join(problems)} failed the checks made before any change")
                for a in t.actions:
                    record(t, a, f"failed: {why}")
            outcomes = {t.name: f"failed its checks: {problems[t.name]}" if t.name in problems
                        else "checked; not applied" for t in targets}
            failed = ", ".join(problems)
            raise ApplyError(_report(f"nothing was applied: {failed} failed the checks made before any change",
                                     outcomes), outcomes, records)
        if dry_run:
            for t in targets:
                for a in t.actions:
                    record(t, a, "would-apply")
            return records
        _apply_all(targets, pacing, before_target, record)
        return records
    except ApplyError as exc:
        exc.records = records
        raise
    finally:
        # Whatever happened, every action is on record with how it ended.
        if records:
            store.record_actions(records)


def _prepare_all(targets: Sequence[TargetRun], now: datetime, pacing: Pacing) -> dict[str, str]:
    """Prepare each target; returns what is wrong, by target."""
    problems: dict[str, str] = {}
    for t in targets:
        try:
            t.state = _describe(t.kind, t.resource, t.region, t.client)
            t.actions = t.compute(t.state, now)
            if t.actions:
                _check_quota(t)
                _probe_permission(t, pacing)
        except ScalingError as exc:
            problems[t.name] = str(exc)
    return problems


def _apply_all(targets: Sequence[TargetRun], pacing: Pacing, before_target, record) -> None:
    done: list[TargetRun] = []
    for i, t in enumerate(targets):
        # Asked before each target that has something to change; a rollback is not asked (undoing
        # a half-applied run is what a pause would want too).
        stop = before_target(t.name) if before_target and t.actions else None
        if stop:
            _stopped(done, targets[i:], stop, record)
        failures = _execute(t, t.actions, pacing, t.outcomes)
        if failures:
            _rolled_back(targets, done, t, targets[i + 1:], failures[0], pacing, record)
        done.append(t)
    for t in done:
        for a in t.actions:
            record(t, a, t.outcomes[a])


def _stopped(done, rest, stop: str, record) -> None:
    for t in done:
        for a in t.actions:
            record(t, a, t.outcomes[a])
    for t in rest:
        for a in t.actions:
            record(t, a, f"failed: not applied: {stop}")
    outcomes = {t.name: f"applied ({_changes(t)}); kept" for t in done}
    outcomes.update({t.name: "not applied" for t in rest})
    raise ApplyError(_report(f"{stop}: the run stopped before {rest[0].name}. What was applied before stays "
                             "applied (stopping means no more changes, not undoing the ones made)", outcomes),
                     outcomes, [])


def _rolled_back(targets, done, failed: TargetRun, rest, error: str, pacing: Pacing, record) -> None:
    cause = f"{failed.name}: {error}"
    outcomes: dict[str, str] = {}
    # The failing target first, then the ones applied before it, newest first: the usual undo order.
    for t in [failed, *reversed(done)]:
        broken = _restore(t, cause, pacing, record)
        outcomes[t.name] = (f"restore failed: {broken}" if broken else f"failed: {error}; rolled back"
                            if t is failed else f"rolled back ({_changes(t)} undone)")
    for t in rest:
        outcomes[t.name] = "not attempted"
        for a in t.actions:
            record(t, a, f"failed: not attempted because {cause}")
    outcomes = {t.name: outcomes[t.name] for t in targets if t.name in outcomes}
    broken = [name for name, what in outcomes.items() if what.startswith("restore failed")]
    head = (f"the apply failed on {cause}; every target it had changed is back as it was before the run" if not broken
            else f"the apply failed on {cause}, and restoring {', '.join(broken)} failed too: its scheduled "
                 "actions are not as before the run; compare them with the audit trail (scaling_actions) and "
                 "re-run the apply once the cause is fixed")
    raise ApplyError(_report(head, outcomes), outcomes, [])


def _restore(t: TargetRun, cause: str, pacing: Pacing, record) -> str:
    """Give ``t`` back its snapshot and record how each of its actions ended; returns what could
    not be restored, or ""."""
    restore = _restore_actions(t, datetime.now(timezone.utc))
    outcomes: dict[Action, str] = {}
    failures = _execute(t, restore, pacing, outcomes, keep_going=True)
    for a in restore:
        record(t, a, outcomes[a])
    restoring = {a.name for a in restore}
    restored = {a.name for a in restore if outcomes[a] == "applied"}
    for a in t.actions:
        outcome = t.outcomes.get(a)
        if outcome is None:
            record(t, a, f"failed: not attempted because {cause}")
        elif outcome.startswith("failed"):
            record(t, a, outcome)
        elif a.name in restored or a.name not in restoring:
            record(t, a, f"failed: applied, then rolled back because {cause}")
        else:
            record(t, a, f"{outcome}; not rolled back: restoring {a.name} failed")
    return "; ".join(failures)


def _report(head: str, outcomes: dict[str, str]) -> str:
    return head + ":\n" + "\n".join(f"  {name}: {what}" for name, what in outcomes.items())


def _changes(t: TargetRun) -> str:
    n = sum(1 for o in t.outcomes.values() if o == "applied")
    return f"{n} change{'s' * (n != 1)}"


# ---------------------------------------------------------------- prepare


def _within_maximum(actions: list[Action], state: TargetState) -> list[Action]:
    for a in actions:
        if a.is_put and a.min_capacity is not None and a.min_capacity > state.max_capacity:
            raise ScalingError(f"{a.target}: {a.name} would set the floor to {a.min_capacity}, above the "
                               f"{_bound_name(a.kind)} {state.max_capacity} of {a.resource!r} now; "
                               "nothing was applied. Re-plan, or raise the maximum")
    return actions


def _check_quota(t: TargetRun) -> None:
    """Refuse a run after which the target would hold more scheduled actions than AWS allows."""
    owners = sum(1 for s in t.state.scheduled if not s.owned)
    shapers = {s.name for s in t.state.scheduled if s.owned}
    shapers -= {a.name for a in t.actions if not a.is_put}
    shapers |= {a.name for a in t.actions if a.is_put}
    quota = SCHEDULED_ACTION_QUOTA[t.kind]
    if owners + len(shapers) <= quota:
        return
    holder = "Auto Scaling group" if t.kind == "asg" else "scalable target"
    room = quota - owners
    what = (f"lower max_actions of {t.name} in scaling.yaml to at most {room} and plan again, or delete some of "
            "the owner's scheduled actions" if room > 0 else
            "the owner's own actions fill the quota already: delete some of them first")
    raise ScalingError(f"{t.name}: the {holder} {t.resource!r} would hold {owners + len(shapers)} scheduled "
                       f"actions ({owners} of the owner's own and {len(shapers)} of shaper's), above AWS's quota of "
                       f"{quota} per {holder}; nothing was applied. To fix it, {what}")


def _probe_permission(t: TargetRun, pacing: Pacing) -> None:
    """Ask AWS to delete a scheduled action that cannot exist: AccessDenied means shaper may not
    change the target's scheduled actions, anything else that it may (IAM is checked before the
    name is looked up). Put permission is not probed (no put is harmless); policies grant the two
    together, and a put refused later is rolled back like any failure."""
    pacing.wait()
    try:
        if t.kind == "asg":
            result = call(t.client, ASG_DELETE, {"AutoScalingGroupName": t.resource,
                                                 "ScheduledActionNames": [PROBE_NAME]}, resource=t.resource)
            for item in result.get("FailedScheduledActions", []):
                if item.get("ErrorCode") in ACCESS_DENIED:
                    raise ScalingError(f"access denied ({item['ErrorCode']}) for {ASG_DELETE} on {t.resource}: "
                                       f"{item.get('ErrorMessage', '')}")
        else:
            call(t.client, ECS_DELETE, {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION,
                                        "ResourceId": t.resource, "ScheduledActionName": PROBE_NAME},
                 resource=t.resource, gone_ok=True)
    except ScalingError as exc:
        if str(exc).startswith("access denied"):
            raise ScalingError(f"{exc} (checked before any change by deleting a scheduled action that cannot "
                               f"exist; shaper needs {_WRITE_PERMISSIONS[t.kind]})") from exc
        raise


# ---------------------------------------------------------------- writing


def _execute(t: TargetRun, actions: Sequence[Action], pacing: Pacing, outcomes: dict[Action, str], *,
             keep_going: bool = False) -> list[str]:
    """Send ``actions`` to ``t``'s target in their order, noting each one's outcome in
    ``outcomes``; returns what failed. Stops after the first failed call unless ``keep_going``."""
    failures: list[str] = []
    for batch in _calls(t.kind, actions):
        pacing.wait()
        for a in batch:
            outcomes[a] = "failed: sent, no answer"
        try:
            failed = _send(t, batch)
        except ScalingError as exc:
            for a in batch:
                outcomes[a] = f"failed: {exc}"
            failures.append(str(exc))
        else:
            for a in batch:
                outcomes[a] = f"failed: {a.name} ({failed[a.name]})" if a.name in failed else "applied"
            if failed:
                failures.append(f"{batch[0].operation} on {t.resource}: {len(failed)} of {len(batch)} actions "
                                "failed: " + "; ".join(f"{name} ({why})" for name, why in failed.items()))
        if failures and not keep_going:
            break
    return failures


def _calls(kind: str, actions: Sequence[Action]):
    """The calls that carry ``actions``: for a group, runs of one operation in batches of 50; for
    Application Auto Scaling, one action per call."""
    if kind != "asg":
        yield from ([a] for a in actions)
        return
    for _, run in groupby(actions, key=lambda a: a.operation):
        run = list(run)
        for i in range(0, len(run), BATCH_SIZE):
            yield run[i:i + BATCH_SIZE]


def _send(t: TargetRun, batch: list[Action]) -> dict[str, str]:
    """One call; returns the actions AWS reports as failed, by name, with code and message."""
    operation = batch[0].operation
    if operation == ASG_PUT:
        items = [{k: v for k, v in a.params.items() if k != "AutoScalingGroupName"} for a in batch]
        result = call(t.client, operation, {"AutoScalingGroupName": t.resource,
                                            "ScheduledUpdateGroupActions": items}, resource=t.resource)
        failed = result.get("FailedScheduledUpdateGroupActions", [])
    elif operation == ASG_DELETE:
        result = call(t.client, operation, {"AutoScalingGroupName": t.resource,
                                            "ScheduledActionNames": [a.name for a in batch]}, resource=t.resource)
        # An action already gone is as deleted as it gets.
        failed = [f for f in result.get("FailedScheduledActions", [])
                  if not is_gone(f.get("ErrorCode", ""), f.get("ErrorMessage", ""))]
    else:
        call(t.client, operation, batch[0].params, resource=t.resource, gone_ok=operation == ECS_DELETE)
        failed = []
    return {f["ScheduledActionName"]: f"{f.get('ErrorCode', 'no code')}: {f.get('ErrorMessage', '')}" for f in failed}


# ---------------------------------------------------------------- restoring


def _restore_actions(t: TargetRun, now: datetime) -> list[Action]:
    """The writes that give ``t`` back its snapshot, as far as this run changed it: shaper actions
    put that were not there before are deleted, and every action put or deleted that was there is
    put back as it was. Deletes first, so that the count stays within the quota."""
    snapshot = t.snapshot
    touched = list(dict.fromkeys(a.name for a in t.outcomes))
    deletes = [_undo_put(t, name) for name in touched if name not in snapshot]
    # A one-time action whose time has passed would have run and been removed by AWS by now, and
    # AWS refuses to schedule one in the past.
    puts = [_put_back(t, snapshot[name]) for name in touched if name in snapshot
            and not (snapshot[name].at is not None and snapshot[name].at <= now and not snapshot[name].recurrence)]
    return deletes + puts


def _undo_put(t: TargetRun, name: str) -> Action:
    reason = "rollback: not there before this run"
    if t.kind == "asg":
        return Action(t.name, t.kind, t.resource, t.region, ASG_DELETE,
                      {"AutoScalingGroupName": t.resource, "ScheduledActionName": name}, reason, name)
    return Action(t.name, t.kind, t.resource, t.region, ECS_DELETE,
                  {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION, "ResourceId": t.resource,
                   "ScheduledActionName": name}, reason, name)


def _put_back(t: TargetRun, s: Scheduled) -> Action:
    """A put of ``s`` as it was described, but never with a maximum: a rollback must not lower a
    maximum an operator raised any more than a plan may."""
    d = s.described
    reason = "rollback: put back as it was before this run"
    if t.kind == "asg":
        params = {"AutoScalingGroupName": t.resource, "ScheduledActionName": s.name}
        start = d.get("StartTime") or d.get("Time")
        if start is not None:
            params["StartTime"] = _iso(start)
        for key in ("EndTime", "Recurrence", "TimeZone", "MinSize", "DesiredCapacity"):
            if d.get(key) is not None:
                params[key] = _iso(d[key]) if key == "EndTime" else d[key]
        return Action(t.name, t.kind, t.resource, t.region, ASG_PUT, params, reason, s.name, s.at, s.min_capacity)
    params = {"ServiceNamespace": ECS_NAMESPACE, "ScalableDimension": ECS_DIMENSION, "ResourceId": t.resource,
              "ScheduledActionName": s.name, "Schedule": d["Schedule"]}
    for key in ("Timezone", "StartTime", "EndTime"):
        if d.get(key) is not None:
            params[key] = _iso(d[key]) if key != "Timezone" else d[key]
    if s.min_capacity is not None:
        params["ScalableTargetAction"] = {"MinCapacity": s.min_capacity}
    return Action(t.name, t.kind, t.resource, t.region, ECS_PUT, params, reason, s.name, s.at, s.min_capacity)


def _iso(value) -> str:
    # Audit rows keep params as JSON, and AWS takes ISO 8601 as well as it takes a datetime.
    return f"{_as_utc(value):%Y-%m-%dT%H:%M:%SZ}" if isinstance(value, datetime) else str(value)


# ---------------------------------------------------------------- one target


def apply(actions: Sequence[Action], client, *, dry_run: bool = True, actor: str, store, plan_id: int | None,
          pacing: Pacing | None = None) -> list[dict]:
    """Apply ``actions`` computed earlier (all for one target): checked again against the target
    as it is now, applied all or nothing, recorded in ``store``. Returns the records."""
    if not actions:
        return []
    return apply_targets([target_for_actions(actions, client, plan_id=plan_id)], store=store, actor=actor,
                         dry_run=dry_run, pacing=pacing)


def apply_plan(cfg: ScalingTarget, plan_frame: pd.DataFrame, client, *, store, plan_id: int | None, actor: str,
               dry_run: bool = True, now: datetime | None = None, pacing: Pacing | None = None) -> list[dict]:
    """Describe the target, turn the plan into actions and apply them: one target's whole path."""
    return apply_targets([target_for_plan(cfg, plan_frame, client, plan_id=plan_id)], store=store, actor=actor,
                         dry_run=dry_run, now=now, pacing=pacing)


__all__ = ["ApplyError", "BATCH_SIZE", "PROBE_NAME", "TargetRun", "action_record", "apply", "apply_plan",
           "apply_targets", "target_for_actions", "target_for_plan"]
