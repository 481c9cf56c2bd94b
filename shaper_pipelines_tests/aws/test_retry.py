"""Throttling and AWS's JSON-protocol error codes.

moto never throttles and cannot be made to, so these tests do NOT use moto_server: they put
botocore's Stubber on a real client, which feeds the exact error responses AWS sends (Throttling,
ThrottlingException, ...) to the real botocore error handling. The client's endpoint is a closed
loopback port, so nothing can reach AWS even if a call were left unstubbed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shaper_pipelines.lib.aws_scaling import Retry, ScalingError, TargetState, actions_for_plan, apply
from shaper_pipelines_tests.aws.conftest import plan_frame

NOW = datetime.now(timezone.utc)
T0 = NOW.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)


def stubbed(service: str):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client, Stubber(client)


def expect_asg_described(stub, group: str, max_size: int = 10) -> None:
    stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": group, "MinSize": 2, "MaxSize": max_size, "DesiredCapacity": 2, "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2", "CreatedTime": NOW}]},
        {"AutoScalingGroupNames": [group]})
    stub.add_response("describe_scheduled_actions", {"ScheduledUpdateGroupActions": []},
                      {"AutoScalingGroupName": group})


def asg_actions(demo_targets):
    cfg = demo_targets["asg"]
    return actions_for_plan(cfg, plan_frame(T0, [3, 6]), NOW, TargetState(2, 10, 2))


@pytest.mark.parametrize("code", ["Throttling", "ThrottlingException", "RequestLimitExceeded",
                                  "TooManyRequestsException"])
def test_throttled_calls_are_retried_with_growing_jittered_waits(demo_targets, scaling_store, code):
    actions = asg_actions(demo_targets)
    client, stub = stubbed("autoscaling")
    expect_asg_described(stub, "checkout-api-asg")
    stub.add_client_error(actions[0].operation, code, "Rate exceeded", 400, actions[0].params)
    stub.add_client_error(actions[0].operation, code, "Rate exceeded", 400, actions[0].params)
    stub.add_response(actions[0].operation, {}, actions[0].params)
    stub.add_response(actions[1].operation, {}, actions[1].params)
    waits: list[float] = []
    retry = Retry(max_attempts=4, base_delay=0.25, sleep=waits.append, rng=lambda: 1.0)

    with stub:
        records = apply(actions, client, dry_run=False, actor="cli", store=scaling_store, plan_id=None, retry=retry)
    stub.assert_no_pending_responses()
    assert waits == [0.25, 0.5]  # doubling; the jitter factor is pinned to 1 here
    assert [r["outcome"] for r in records] == ["applied", "applied"]


def test_throttling_that_does_not_stop_fails_clearly_and_stops_the_run(demo_targets, scaling_store):
    actions = asg_actions(demo_targets)
    client, stub = stubbed("autoscaling")
    expect_asg_described(stub, "checkout-api-asg")
    for _ in range(3):
        stub.add_client_error(actions[0].operation, "Throttling", "Rate exceeded", 400, actions[0].params)
    waits: list[float] = []

    with stub, pytest.raises(ScalingError, match=r"put_scheduled_update_group_action on checkout-api-asg still "
                                                 r"failing \(Throttling\) after 3 attempts: Rate exceeded"):
        apply(actions, client, dry_run=False, actor="cli", store=scaling_store, plan_id=None,
              retry=Retry(max_attempts=3, sleep=waits.append))
    stub.assert_no_pending_responses()  # the second action was never sent
    assert len(waits) == 2
    outcomes = [r["outcome"] for r in scaling_store.actions()]
    assert outcomes[0].startswith("failed: put_scheduled_update_group_action on checkout-api-asg still failing")
    assert outcomes[1].startswith("failed: not attempted")


def test_the_json_access_denied_of_application_auto_scaling_is_named(demo_targets, scaling_store):
    cfg = demo_targets["ecs"]
    actions = actions_for_plan(cfg, plan_frame(T0, [3]), NOW, TargetState(2, 10, None))
    client, stub = stubbed("application-autoscaling")
    where = {"ServiceNamespace": "ecs", "ScalableDimension": "ecs:service:DesiredCount"}
    stub.add_response("describe_scalable_targets", {"ScalableTargets": [{
        **where, "ResourceId": cfg.resource, "MinCapacity": 2, "MaxCapacity": 10, "RoleARN": "arn:aws:iam::1:role/x",
        "CreationTime": NOW}]}, {**where, "ResourceIds": [cfg.resource]})
    stub.add_response("describe_scheduled_actions", {"ScheduledActions": []}, {**where, "ResourceId": cfg.resource})
    stub.add_client_error("put_scheduled_action", "AccessDeniedException", "not authorized to perform "
                          "application-autoscaling:PutScheduledAction", 400, actions[0].params)
    waits: list[float] = []
    with stub, pytest.raises(ScalingError, match=r"^access denied \(AccessDeniedException\) for put_scheduled_action "
                                                 r"on service/prod/search-api: not authorized"):
        apply(actions, client, dry_run=False, actor="cli", store=scaling_store, plan_id=None,
              retry=Retry(sleep=waits.append))
    assert waits == []  # a denial is not retried


def test_the_jittered_wait_stays_under_its_exponential_ceiling():
    retry = Retry(base_delay=0.5, max_delay=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [retry.delay(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits) and max(waits) > ceiling / 2
