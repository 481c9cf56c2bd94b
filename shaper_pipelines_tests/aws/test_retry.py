"""Throttling, denials and per-item failures, against moto_server over HTTP.

moto never throttles and never fails a call half-way, so the clients here talk to a fault-injecting
proxy in front of moto (shaper_pipelines_tests/services/aws_faults.py): it answers the calls a test
names with the exact error AWS sends (Throttling as an XML ErrorResponse for Auto Scaling,
ThrottlingException as JSON for Application Auto Scaling) and forwards everything else to moto,
counting every attempt. The retrying is botocore's standard mode, not shaper's: these tests prove
that shaper configured it (attempts counted at the proxy), that the waits botocore computes double
and are scaled by its random draw (its random function replaced by a known sequence, so nothing is
timed), and what shaper makes of the errors.
"""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from botocore.config import Config

from shaper_pipelines.lib.aws_apply import ApplyError, apply, apply_plan
from shaper_pipelines.lib.aws_scaling import ScalingError, actions_for_plan, describe_target, make_client
from shaper_pipelines_tests.aws.conftest import next_hour, no_wait, plan_frame
from shaper_pipelines_tests.services.aws_faults import failed_items_body

H, M = timedelta(hours=1), timedelta(minutes=1)
KINDS = pytest.mark.parametrize("kind", ["asg", "ecs"])
PUT = {"asg": "BatchPutScheduledUpdateGroupAction", "ecs": "PutScheduledAction"}
THROTTLED = {"asg": "Throttling", "ecs": "ThrottlingException"}


@KINDS
def test_throttled_twice_then_accepted_is_applied_and_botocore_backs_off_with_jitter(
        aws, faults, backoff, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind]
    aws.create(cfg)
    faults.throttle(PUT[kind], times=2)
    client = make_client(cfg, endpoint_url=faults.url, max_attempts=5)

    records = apply_plan(cfg, plan_frame(next_hour(hours=2), [3, 6]), client, store=scaling_store, plan_id=None,
                         actor="cli", dry_run=False, pacing=no_wait())

    assert [r["outcome"] for r in records] == ["applied", "applied"]
    assert sorted(a.get("MinSize") or a["ScalableTargetAction"]["MinCapacity"]
                  for a in aws.scheduled(cfg).values()) == [3, 6]
    # The first put took three attempts (the ECS one, one call per action, a fourth for the second).
    assert faults.faulted(PUT[kind]) == 2 and faults.count(PUT[kind]) == 3 + (kind == "ecs")
    # Before attempt i+1 botocore waited its random draw times 2**(i-1) seconds: doubling ceilings,
    # each scaled by a fresh draw (full jitter) ...
    assert backoff.delays == pytest.approx([backoff.draws[0] * 1, backoff.draws[1] * 2])
    # ... and it did wait at least that long between the attempts the proxy saw.
    attempts = faults.times(PUT[kind])[:3]
    assert all(later - earlier >= delay for earlier, later, delay in zip(attempts, attempts[1:], backoff.delays))


@KINDS
def test_throttling_beyond_the_attempts_fails_clearly_and_leaves_nothing_half_applied(
        aws, faults, backoff, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind]
    aws.create(cfg)
    t0 = next_hour(hours=2)
    direct = make_client(cfg, endpoint_url=aws.url)
    apply_plan(cfg, plan_frame(t0, [3, 5, 3]), direct, store=scaling_store, plan_id=None, actor="cli", dry_run=False,
               pacing=no_wait())
    before = aws.state(cfg)
    # The next plan: for a group 60 puts (two batches), the second batch throttled for good; for
    # ECS the third put.
    values = [4 + i % 2 for i in range(60)] if kind == "asg" else [4, 6, 4, 6]
    faults.throttle(PUT[kind], times=3, skip=1 if kind == "asg" else 2)
    client = make_client(cfg, endpoint_url=faults.url, max_attempts=3)

    with pytest.raises(ApplyError) as caught:
        apply_plan(cfg, plan_frame(t0, values, step=30 * M), client, store=scaling_store, plan_id=None,
                   actor="second", dry_run=False, pacing=no_wait())

    operation = "batch_put_scheduled_update_group_action" if kind == "asg" else "put_scheduled_action"
    message = str(caught.value)
    assert (f"{operation} on {cfg.resource} failed ({THROTTLED[kind]}) after 3 attempts: Rate exceeded"
            in message)
    assert f"{cfg.name}: failed: " in message and message.rstrip().endswith("; rolled back")
    assert faults.faulted(PUT[kind]) == 3
    assert aws.state(cfg) == before  # what went through before the throttling was undone
    outcomes = [r["outcome"] for r in scaling_store.actions()
                if r["actor"] == "second" and not r["reason"].startswith("rollback")]
    assert any(o.startswith("failed: applied, then rolled back because") for o in outcomes)
    assert any(o.startswith(f"failed: {operation} on {cfg.resource} failed ({THROTTLED[kind]})") for o in outcomes)


@KINDS
def test_a_denial_is_not_retried_and_changes_nothing(aws, moto_server, faults, demo_targets, scaling_store, kind):
    """A real denial from moto's IAM enforcement (an XML error body, even from the JSON-protocol
    Application Auto Scaling, which shaper still reads): refused at the permission probe, before
    any change, after one attempt."""
    cfg = demo_targets[kind]
    aws.create(cfg)
    service = "autoscaling" if kind == "asg" else "application-autoscaling"
    reader = aws.create_user("reader", [f"{service}:Describe*"])
    client = boto3.client(service, region_name=cfg.region, endpoint_url=faults.url,
                          config=Config(retries={"mode": "standard", "total_max_attempts": 5}), **reader)
    probe = "BatchDeleteScheduledAction" if kind == "asg" else "DeleteScheduledAction"

    moto_server.enforce_iam(True)
    with pytest.raises(ScalingError, match=r"access denied \(AccessDenied"):
        apply_plan(cfg, plan_frame(next_hour(hours=2), [3, 6]), client, store=scaling_store, plan_id=None,
                   actor="cli", dry_run=False, pacing=no_wait())
    moto_server.enforce_iam(False)
    assert faults.count(probe) == 1 and faults.count(PUT[kind]) == 0
    assert aws.scheduled(cfg) == {}


def test_the_json_access_denied_of_application_auto_scaling_is_named_and_rolled_back(
        aws, faults, demo_targets, scaling_store):
    cfg = demo_targets["ecs"]
    aws.create(cfg)
    faults.fail("PutScheduledAction", code="AccessDeniedException", skip=1,
                message="User: arn:aws:iam::123456789012:user/shaper is not authorized to perform: "
                        "application-autoscaling:PutScheduledAction")
    client = make_client(cfg, endpoint_url=faults.url)
    with pytest.raises(ApplyError) as caught:
        apply_plan(cfg, plan_frame(next_hour(hours=2), [3, 6, 4]), client, store=scaling_store, plan_id=None,
                   actor="cli", dry_run=False, pacing=no_wait())
    assert ("access denied (AccessDeniedException) for put_scheduled_action on service/prod/search-api: User: "
            in str(caught.value))
    assert faults.faulted("PutScheduledAction") == 1  # not retried
    assert aws.scheduled(cfg) == {}  # the first put, which went through, was deleted again


def test_per_item_failures_of_a_batch_are_reported_by_name_and_count_as_failure(aws, faults, demo_targets,
                                                                               scaling_store):
    """AWS may accept a batch call and fail some of its items; the answer lists them. Here the
    proxy lets the batch reach moto and answers as if one item had failed."""
    cfg = demo_targets["asg"]
    aws.create(cfg)
    t0 = next_hour(hours=2)
    failing = f"shaper-{t0 + H - 5 * M:%Y%m%dT%H%MZ}"
    faults.respond("BatchPutScheduledUpdateGroupAction", forward=True, body=failed_items_body(
        "BatchPutScheduledUpdateGroupAction", [(failing, "ValidationError", "Given start time is in the past")]))
    client = make_client(cfg, endpoint_url=faults.url)

    with pytest.raises(ApplyError) as caught:
        apply_plan(cfg, plan_frame(t0, [3, 6, 4]), client, store=scaling_store, plan_id=None, actor="cli",
                   dry_run=False, pacing=no_wait())

    assert (f"batch_put_scheduled_update_group_action on {cfg.resource}: 1 of 3 actions failed: {failing} "
            "(ValidationError: Given start time is in the past)") in str(caught.value)
    assert aws.scheduled(cfg) == {}  # the two that went through were taken back
    by_name = {r["params"]["ScheduledActionName"]: r["outcome"] for r in scaling_store.actions()
               if not r["reason"].startswith("rollback")}
    assert by_name[failing] == f"failed: {failing} (ValidationError: Given start time is in the past)"
    assert sum(o.startswith("failed: applied, then rolled back") for o in by_name.values()) == 2


def test_a_batch_delete_of_an_action_already_gone_counts_as_done(aws, demo_targets, scaling_store):
    """moto answers a batch delete of a missing name as AWS does, with a per-item "not found"."""
    cfg = demo_targets["asg"]
    aws.create(cfg)
    client = make_client(cfg, endpoint_url=aws.url)
    t0 = next_hour(hours=2)
    apply_plan(cfg, plan_frame(t0, [3, 6]), client, store=scaling_store, plan_id=None, actor="cli", dry_run=False,
               pacing=no_wait())
    stale = describe_target(cfg, client)
    actions = actions_for_plan(cfg, plan_frame(t0, [3]), t0 - 3 * H, stale)
    assert [a.operation for a in actions] == ["batch_delete_scheduled_action"]
    aws.client("autoscaling").delete_scheduled_action(AutoScalingGroupName=cfg.resource,
                                                      ScheduledActionName=actions[0].name)  # someone was quicker
    records = apply(actions, client, dry_run=False, actor="cli", store=scaling_store, plan_id=None, pacing=no_wait())
    assert [r["outcome"] for r in records] == ["applied"]
