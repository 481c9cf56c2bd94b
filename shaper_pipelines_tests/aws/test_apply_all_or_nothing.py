"""AWS's limits and all-or-nothing applies, against moto_server over HTTP: plans within the
scheduled-action quotas, batches, a group already near its quota refused before any change, a
failure midway restored (one target and two), a maximum raised after the plan was made left
raised, and the pace of Application Auto Scaling's single calls.

moto enforces neither quota and never fails midway; shaper counts the quota itself, and the
failures come from the fault-injecting proxy (services/aws_faults.py) in front of moto.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shaper_pipelines.lib.aws_apply import ApplyError, apply_plan, apply_targets, target_for_plan
from shaper_pipelines.lib.aws_calls import Pacing
from shaper_pipelines.lib.aws_scaling import make_client
from shaper_pipelines_tests.aws.conftest import next_hour, no_wait, plan_frame

H, M = timedelta(hours=1), timedelta(minutes=1)
KINDS = pytest.mark.parametrize("kind", ["asg", "ecs"])
LEAD = {"asg": 5 * M, "ecs": 2 * M}  # the demo targets' warmups, rounded down to whole minutes


def floors(aws, cfg) -> list[int]:
    return sorted(a["MinSize"] if cfg.kind == "asg" else a["ScalableTargetAction"]["MinCapacity"]
                  for a in aws.scheduled(cfg).values())


def test_a_48_hour_cyclic_plan_is_applied_in_batches_within_its_budget(aws, faults, demo_targets, scaling_store):
    """A floor that alternates all day (a strongly cyclic trace), merged by the planner to
    half-hour blocks: 96 changes in 48 hours, within the target's max_actions of 100."""
    cfg = demo_targets["asg"]
    aws.create(cfg)
    t0 = next_hour(hours=2)
    values = [3 if i % 2 == 0 else 5 for i in range(96)]
    frame = plan_frame(t0, values, step=30 * M)
    assert frame["timestamp"].iloc[-1] - frame["timestamp"].iloc[0] < 48 * H
    client = make_client(cfg, endpoint_url=faults.url)

    records = apply_plan(cfg, frame, client, store=scaling_store, plan_id=None, actor="cli", dry_run=False,
                         pacing=no_wait())

    held = aws.asg_scheduled(cfg.resource)
    changes = 1 + sum(a != b for a, b in zip(values, values[1:]))  # the first step is above the minimum too
    assert len(held) == changes == 96 <= cfg.max_actions
    expected = {t0 + i * 30 * M - (LEAD["asg"] if v == 5 or i == 0 else 0 * M): v for i, v in enumerate(values)}
    assert {a["StartTime"]: a["MinSize"] for a in held.values()} == expected
    assert len(records) == 96 and {r["action"] for r in records} == {"batch_put_scheduled_update_group_action"}
    # 50 per call at most: two calls, and no single puts.
    assert faults.count("BatchPutScheduledUpdateGroupAction") == 2
    assert faults.count("PutScheduledUpdateGroupAction") == 0


def test_a_group_already_holding_120_owner_actions_is_refused_before_any_change(aws, faults, demo_targets,
                                                                               scaling_store):
    cfg = demo_targets["asg"]
    aws.create(cfg)
    t0 = next_hour(hours=2)
    owners = [{"ScheduledActionName": f"nightly-{i:03d}", "StartTime": t0 + (i + 1) * 24 * H, "MinSize": 4}
              for i in range(120)]
    for i in range(0, 120, 50):
        failed = aws.client("autoscaling").batch_put_scheduled_update_group_action(
            AutoScalingGroupName=cfg.resource, ScheduledUpdateGroupActions=owners[i:i + 50])
        assert failed["FailedScheduledUpdateGroupActions"] == []
    before = aws.state(cfg)
    assert len(before) == 120
    client = make_client(cfg, endpoint_url=faults.url)
    frame = plan_frame(t0, [3, 5, 3, 5, 3, 5])  # six floors: 126 actions in all, one above the quota

    for dry_run in (True, False):  # a dry run checks the same and says so
        with pytest.raises(ApplyError) as caught:
            apply_plan(cfg, frame, client, store=scaling_store, plan_id=None, actor="cli", dry_run=dry_run,
                       pacing=no_wait())
        message = str(caught.value)
        assert message.startswith("nothing was applied: checkout-api-asg failed the checks made before any change")
        assert ("the Auto Scaling group 'checkout-api-asg' would hold 126 scheduled actions (120 of the owner's own "
                "and 6 of shaper's), above AWS's quota of 125 per Auto Scaling group; nothing was applied. To fix "
                "it, lower max_actions of checkout-api-asg in scaling.yaml to at most 5") in message

    assert aws.state(cfg) == before
    writes = ("BatchPutScheduledUpdateGroupAction", "BatchDeleteScheduledAction", "PutScheduledUpdateGroupAction")
    assert sum(faults.count(op) for op in writes) == 0  # not a single write reached AWS
    audit = scaling_store.actions()
    assert len(audit) == 12 and all("above AWS's quota of 125" in r["outcome"] for r in audit)
    assert all(r["outcome"].startswith("failed: checkout-api-asg: the Auto Scaling group") for r in audit)


def _applied(aws, cfg, scaling_store, values, t0):
    """``cfg`` created, with an owner's action and the scheduled actions of an earlier plan."""
    aws.create(cfg)
    aws.add_owner_action(cfg)
    apply_plan(cfg, plan_frame(t0, values), make_client(cfg, endpoint_url=aws.url), store=scaling_store,
               plan_id=None, actor="earlier", dry_run=False, pacing=no_wait())


@KINDS
def test_a_failure_midway_restores_the_target_to_its_previous_actions(aws, faults, demo_targets, scaling_store,
                                                                      kind):
    cfg = demo_targets[kind]
    t0 = next_hour(hours=2)
    _applied(aws, cfg, scaling_store, [3, 6, 4, 8], t0)
    before = aws.state(cfg)
    if kind == "asg":  # 60 floors: the second batch put fails, as AWS does when the group is full
        values = [4 + i % 3 for i in range(60)]
        faults.fail("BatchPutScheduledUpdateGroupAction", code="LimitExceeded", skip=1,
                    message="You have reached the limit of scheduled actions for this group")
    else:  # the fourth put fails
        values = [5, 7, 5, 9, 5, 6]
        faults.fail("PutScheduledAction", code="ValidationException", skip=3, message="injected failure")
    client = make_client(cfg, endpoint_url=faults.url)

    with pytest.raises(ApplyError) as caught:
        apply_plan(cfg, plan_frame(t0, values, step=30 * M), client, store=scaling_store, plan_id=None,
                   actor="cli", dry_run=False, pacing=no_wait())

    assert caught.value.outcomes[cfg.name].endswith("; rolled back")
    assert "every target it had changed is back as it was before the run" in str(caught.value)
    assert aws.state(cfg) == before  # the owner's action and the earlier plan's, exactly
    rollback = [r for r in scaling_store.actions() if r["reason"].startswith("rollback")]
    assert rollback and all(r["outcome"] == "applied" for r in rollback)


def test_a_failure_on_the_second_target_restores_the_first(aws, faults, demo_targets, scaling_store):
    asg, ecs = demo_targets["asg"], demo_targets["ecs"]
    t0 = next_hour(hours=2)
    _applied(aws, asg, scaling_store, [3, 6, 4], t0)
    _applied(aws, ecs, scaling_store, [3, 5], t0)
    before = {"asg": aws.state(asg), "ecs": aws.state(ecs)}
    faults.fail("PutScheduledAction", code="ValidationException", skip=1, message="injected failure")
    runs = [target_for_plan(cfg, plan_frame(t0, values), make_client(cfg, endpoint_url=faults.url))
            for cfg, values in ((asg, [5, 7, 5, 9]), (ecs, [4, 6, 8]))]

    with pytest.raises(ApplyError) as caught:
        apply_targets(runs, store=scaling_store, actor="cli", dry_run=False, pacing=no_wait())

    assert caught.value.outcomes["checkout-api-asg"].startswith("rolled back (")
    assert caught.value.outcomes["search-api"].startswith("failed: put_scheduled_action on service/prod/search-api "
                                                          "failed (ValidationException): injected failure")
    assert {"asg": aws.state(asg), "ecs": aws.state(ecs)} == before
    first = [r for r in scaling_store.actions("checkout-api-asg") if r["actor"] == "cli"
             and not r["reason"].startswith("rollback")]
    assert first and all(r["outcome"].startswith("failed: applied, then rolled back because search-api: ")
                         for r in first)


def test_a_restore_that_fails_is_reported_with_why_and_what_to_do(aws, faults, demo_targets, scaling_store):
    asg, ecs = demo_targets["asg"], demo_targets["ecs"]
    t0 = next_hour(hours=2)
    _applied(aws, asg, scaling_store, [3, 6, 4], t0)
    _applied(aws, ecs, scaling_store, [3, 5], t0)
    faults.fail("PutScheduledAction", code="ValidationException", skip=1, message="injected failure")
    # The group's one batch put goes through; the one that would put its earlier floors back fails.
    faults.fail("BatchPutScheduledUpdateGroupAction", code="ValidationError", skip=1, message="restore refused")
    runs = [target_for_plan(cfg, plan_frame(t0, values), make_client(cfg, endpoint_url=faults.url))
            for cfg, values in ((asg, [5, 7, 5, 9]), (ecs, [4, 6, 8]))]

    with pytest.raises(ApplyError) as caught:
        apply_targets(runs, store=scaling_store, actor="cli", dry_run=False, pacing=no_wait())

    message = str(caught.value)
    assert "and restoring checkout-api-asg failed too: its scheduled actions are not as before the run" in message
    assert "compare them with the audit trail (scaling_actions) and re-run the apply" in message
    assert caught.value.outcomes["checkout-api-asg"] == (
        "restore failed: batch_put_scheduled_update_group_action on checkout-api-asg failed (ValidationError): "
        "restore refused")
    assert caught.value.outcomes["search-api"].endswith("; rolled back")
    kept = [r for r in scaling_store.actions("checkout-api-asg") if r["actor"] == "cli"
            and r["outcome"].startswith("applied; not rolled back: restoring ")]
    assert kept  # the audit says which changes are still in place


def test_a_target_that_fails_its_checks_stops_every_target(aws, faults, demo_targets, scaling_store):
    asg, ecs = demo_targets["asg"], demo_targets["ecs"]
    aws.create(asg)  # the ECS service is never registered
    t0 = next_hour(hours=2)
    runs = [target_for_plan(cfg, plan_frame(t0, [3, 5]), make_client(cfg, endpoint_url=faults.url))
            for cfg in (asg, ecs)]
    with pytest.raises(ApplyError) as caught:
        apply_targets(runs, store=scaling_store, actor="cli", dry_run=False, pacing=no_wait())
    assert caught.value.outcomes == {
        "checkout-api-asg": "checked; not applied",
        "search-api": "failed its checks: ECS service 'service/prod/search-api' is not registered as a scalable "
                      "target with Application Auto Scaling in us-east-1 (register_scalable_target for "
                      "ecs:service:DesiredCount first, or check the resource in scaling.yaml)"}
    assert aws.scheduled(asg) == {} and faults.count("BatchPutScheduledUpdateGroupAction") == 0
    assert all(r["outcome"] == "failed: not applied: search-api failed the checks made before any change"
               for r in scaling_store.actions("checkout-api-asg"))


@KINDS
def test_a_maximum_raised_after_the_plan_was_made_stays_raised(aws, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind].model_copy(update={"max_capacity": 40})
    aws.create(cfg, max_capacity=10)
    t0 = next_hour(hours=2)
    first_floor = f"shaper-{t0 - LEAD[kind]:%Y%m%dT%H%MZ}"
    # What shaper used to write for ECS: a floor that also carried the maximum of its day.
    if kind == "asg":
        aws.client("autoscaling").put_scheduled_update_group_action(
            AutoScalingGroupName=cfg.resource, ScheduledActionName=first_floor, StartTime=t0 - LEAD[kind],
            MinSize=3, MaxSize=10)
    else:
        aws.client("application-autoscaling").put_scheduled_action(
            ServiceNamespace="ecs", ScalableDimension="ecs:service:DesiredCount", ResourceId=cfg.resource,
            ScheduledActionName=first_floor, Schedule=f"at({t0 - LEAD[kind]:%Y-%m-%dT%H:%M:%S})", Timezone="UTC",
            ScalableTargetAction={"MinCapacity": 3, "MaxCapacity": 10})
    client = make_client(cfg, endpoint_url=aws.url)
    plan = plan_frame(t0, [3, 8, 4])
    apply_plan(cfg, plan, client, store=scaling_store, plan_id=None, actor="cli", dry_run=False, pacing=no_wait())

    # An incident: the operator raises the maximum.
    if kind == "asg":
        aws.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=cfg.resource, MaxSize=30)
    else:
        aws.client("application-autoscaling").register_scalable_target(
            ServiceNamespace="ecs", ResourceId=cfg.resource, ScalableDimension="ecs:service:DesiredCount",
            MinCapacity=2, MaxCapacity=30)
    # The next plan, made after the raise, may use it.
    apply_plan(cfg, plan_frame(t0, [3, 8, 25, 4]), client, store=scaling_store, plan_id=None, actor="cli",
               dry_run=False, pacing=no_wait())

    held = aws.scheduled(cfg)
    assert first_floor in held and floors(aws, cfg) == [3, 4, 8, 25]
    for action in held.values():  # not one action that could put a maximum back when it runs
        assert "MaxSize" not in action and "MaxCapacity" not in action.get("ScalableTargetAction", {})
    assert aws.maximum(cfg) == 30


def test_application_auto_scaling_writes_are_paced(aws, demo_targets, scaling_store):
    """One call per scheduled action, at most calls_per_second of them: the permission probe and
    three puts, 0.2 s apart at 5 per second, and no wait before the first. The clock is the
    test's, so nothing waits."""
    from shaper_pipelines.resources.autoscaling import AutoScalingResource

    cfg = demo_targets["ecs"]
    aws.create(cfg)
    now, sleeps = [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    resource = AutoScalingResource(endpoint_url=aws.url)
    assert resource.calls_per_second == 5
    pacing = Pacing(calls_per_second=resource.calls_per_second, sleep=sleep, clock=lambda: now[0])
    apply_plan(cfg, plan_frame(next_hour(hours=2), [3, 6, 4]), make_client(cfg, endpoint_url=aws.url),
               store=scaling_store, plan_id=None, actor="cli", dry_run=False, pacing=pacing)
    assert sleeps == pytest.approx([0.2, 0.2, 0.2])
    assert floors(aws, cfg) == [3, 4, 6]
