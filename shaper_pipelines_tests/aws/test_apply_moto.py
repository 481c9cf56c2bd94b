"""Applying plans to a real Auto Scaling group and a real ECS scalable target in moto_server, over
HTTP, and reading the result back with AWS's own describe calls."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shaper_pipelines.lib.aws_apply import apply, apply_plan
from shaper_pipelines.lib.aws_scaling import ScalingError, actions_for_plan, describe_target, make_client
from shaper_pipelines_tests.aws.conftest import next_hour, plan_frame

M, H = timedelta(minutes=1), timedelta(hours=1)
# How much earlier than a step its floor rises: the demo targets' warmups (5m; 90s rounded down
# to the whole minute).
LEAD = {"asg": 5 * M, "ecs": 2 * M}
KINDS = pytest.mark.parametrize("kind", ["asg", "ecs"])


def create(aws, cfg, *, register: bool = True) -> None:
    if cfg.kind == "asg":
        aws.create_asg(cfg.resource, min_size=2, max_size=10, desired=2)
    else:
        _, cluster, service = cfg.resource.split("/")
        aws.create_ecs_service(cluster, service, min_capacity=2, max_capacity=10, register=register)


def scheduled(aws, cfg) -> dict[str, tuple[datetime, int]]:
    """Every scheduled action on the target as AWS has it: name -> (start, minimum)."""
    if cfg.kind == "asg":
        return {name: (a["StartTime"].astimezone(timezone.utc) if "StartTime" in a else None, a.get("MinSize"))
                for name, a in aws.asg_scheduled(cfg.resource).items()}
    out = {}
    for name, a in aws.ecs_scheduled(cfg.resource).items():
        schedule = a["Schedule"]
        at = (datetime.fromisoformat(schedule[3:-1]).replace(tzinfo=timezone.utc)
              if schedule.startswith("at(") else None)
        out[name] = (at, a["ScalableTargetAction"].get("MinCapacity"))
    return out


def raw_scheduled(aws, cfg) -> dict[str, dict]:
    return aws.asg_scheduled(cfg.resource) if cfg.kind == "asg" else aws.ecs_scheduled(cfg.resource)


def name(at: datetime) -> str:
    return f"shaper-{at:%Y%m%dT%H%MZ}"


@KINDS
def test_a_plan_becomes_scheduled_floors(aws, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind]
    create(aws, cfg)
    t0 = next_hour(hours=2)
    frame = plan_frame(t0, [3, 3, 6, 4, 1])
    plan_id = scaling_store.save_plan(cfg.name, frame, produced_by="run-42", model="prophet p90")
    client = make_client(cfg, endpoint_url=aws.url)

    records = apply_plan(cfg, frame, client, store=scaling_store, plan_id=plan_id, actor="run-42", dry_run=False)

    lead = LEAD[kind]
    expected = {t0 - lead: 3, t0 + 2 * H - lead: 6, t0 + 3 * H: 4, t0 + 4 * H: 2}
    assert scheduled(aws, cfg) == {name(at): (at, floor) for at, floor in expected.items()}
    for action in raw_scheduled(aws, cfg).values():
        if kind == "asg":  # only the floor: never the desired count, never the maximum
            assert "DesiredCapacity" not in action and "MaxSize" not in action
        else:
            assert action["ScalableTargetAction"] == {"MinCapacity": action["ScalableTargetAction"]["MinCapacity"]}
            assert action["Timezone"] == "UTC"
    now = describe_target(cfg, client, ecs_client=aws.client("ecs") if kind == "ecs" else None)
    assert (now.min_capacity, now.max_capacity, now.desired_capacity) == (2, 10, 2)  # nothing moved yet

    audit = scaling_store.actions(cfg.name)
    assert [r["outcome"] for r in audit] == ["applied"] * 4 == [r["outcome"] for r in records]
    assert {r["params"]["ScheduledActionName"] for r in audit} == set(map(name, expected))
    assert all(r["actor"] == "run-42" and r["plan_id"] == plan_id and r["dry_run"] is False for r in audit)
    assert audit[0]["reason"].startswith("forecast p90 needs 3") and "warmup" in audit[0]["reason"]
    assert audit[-1]["reason"].startswith("forecast p90 needs 1; plan asked for 1; min_capacity is 2")


@KINDS
def test_reapplying_is_idempotent_and_a_new_plan_replaces_only_shapers_actions(aws, demo_targets, scaling_store,
                                                                               kind):
    cfg = demo_targets[kind]
    create(aws, cfg)
    aws.add_owner_action(cfg)
    users_own = raw_scheduled(aws, cfg)["nightly-batch"]
    client = make_client(cfg, endpoint_url=aws.url)
    t0, lead = next_hour(hours=2), LEAD[kind]

    first = plan_frame(t0, [3, 6, 3])
    apply_plan(cfg, first, client, store=scaling_store, plan_id=None, actor="cli", dry_run=False)
    after_first = raw_scheduled(aws, cfg)
    assert set(after_first) == {"nightly-batch", name(t0 - lead), name(t0 + H - lead), name(t0 + 2 * H)}

    # The same plan again: same names, same state, and nothing to do.
    assert apply_plan(cfg, first, client, store=scaling_store, plan_id=None, actor="cli", dry_run=False) == []
    assert raw_scheduled(aws, cfg) == after_first
    assert len(scaling_store.actions()) == 3

    # A changed plan: the first floor changes value in place, the rest moves, the user's action stays.
    second = plan_frame(t0, [4, 4, 4, 8])
    records = apply_plan(cfg, second, client, store=scaling_store, plan_id=None, actor="cli", dry_run=False)
    assert scheduled(aws, cfg) == {
        "nightly-batch": (None, 4),
        name(t0 - lead): (t0 - lead, 4),
        name(t0 + 3 * H - lead): (t0 + 3 * H - lead, 8),
    }
    assert raw_scheduled(aws, cfg)["nightly-batch"] == users_own
    assert sorted(("put" if "put" in r["action"] else "delete", r["params"]["ScheduledActionName"])
                  for r in records) == sorted([
        ("put", name(t0 - lead)), ("put", name(t0 + 3 * H - lead)),
        ("delete", name(t0 + H - lead)), ("delete", name(t0 + 2 * H))])


@KINDS
def test_a_dry_run_changes_nothing_and_records_what_it_would_do(aws, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind]
    create(aws, cfg)
    client = make_client(cfg, endpoint_url=aws.url)
    before = describe_target(cfg, client)
    t0 = next_hour(hours=2)

    records = apply_plan(cfg, plan_frame(t0, [3, 6]), client, store=scaling_store, plan_id=None, actor="alice")

    assert describe_target(cfg, client) == before and raw_scheduled(aws, cfg) == {}
    audit = scaling_store.actions()
    assert len(audit) == 2 == len(records)
    assert all(r["outcome"] == "would-apply" and r["dry_run"] is True and r["actor"] == "alice" for r in audit)
    assert audit[0]["params"]["ScheduledActionName"] == name(t0 - LEAD[kind])


@KINDS
def test_an_unknown_group_or_unregistered_service_is_a_clear_error(aws, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind]
    if kind == "ecs":
        create(aws, cfg, register=False)  # the service exists; Application Auto Scaling does not know it
    client = make_client(cfg, endpoint_url=aws.url)
    expected = ("no Auto Scaling group named 'checkout-api-asg' in us-east-1" if kind == "asg"
                else "ECS service 'service/prod/search-api' is not registered as a scalable target")
    with pytest.raises(ScalingError, match=expected):
        apply_plan(cfg, plan_frame(next_hour(hours=2), [3]), client, store=scaling_store, plan_id=None,
                   actor="cli", dry_run=False)
    assert scaling_store.actions() == []


def test_apply_checks_the_group_again_before_changing_anything(aws, demo_targets, scaling_store):
    cfg = demo_targets["asg"]
    create(aws, cfg)
    client = make_client(cfg, endpoint_url=aws.url)
    t0 = next_hour(hours=2)
    actions = actions_for_plan(cfg, plan_frame(t0, [3, 6]), datetime.now(timezone.utc), describe_target(cfg, client))

    # Someone lowers the maximum between planning and applying: the 6 no longer fits, so not even
    # the 3 is applied.
    aws.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=cfg.resource, MaxSize=5)
    with pytest.raises(ScalingError, match="would set the floor to 6, above the Auto Scaling group's MaxSize 5"):
        apply(actions, client, dry_run=False, actor="cli", store=scaling_store, plan_id=None)
    assert raw_scheduled(aws, cfg) == {}

    # And the group disappears altogether.
    aws.client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName=cfg.resource, ForceDelete=True)
    with pytest.raises(ScalingError, match="no Auto Scaling group named 'checkout-api-asg'"):
        apply(actions, client, dry_run=False, actor="cli", store=scaling_store, plan_id=None)
    outcomes = [r["outcome"] for r in scaling_store.actions()]
    assert len(outcomes) == 4 and all(o.startswith("failed: ") for o in outcomes)


@KINDS
def test_a_plan_above_the_maximum_applies_nothing(aws, demo_targets, scaling_store, kind):
    cfg = demo_targets[kind]
    create(aws, cfg)
    client = make_client(cfg, endpoint_url=aws.url)
    t0 = next_hour(hours=2)
    too_many = 11  # within max_capacity of scaling.yaml (20, 12), above the group's own maximum (10)
    bound = "Auto Scaling group's MaxSize 10" if kind == "asg" else "scalable target's MaxCapacity 10"
    with pytest.raises(ScalingError) as caught:
        apply_plan(cfg, plan_frame(t0, [3, too_many, 4]), client, store=scaling_store, plan_id=None, actor="cli",
                   dry_run=False)
    assert f"plan step {(t0 + H).isoformat()} asks for {too_many} instances, above the {bound}" in str(caught.value)
    assert raw_scheduled(aws, cfg) == {} and scaling_store.actions() == []


@KINDS
def test_a_caller_who_may_only_read_gets_access_denied_and_nothing_changes(aws, moto_server, demo_targets,
                                                                          scaling_store, kind):
    cfg = demo_targets[kind]
    create(aws, cfg)
    service = "autoscaling" if kind == "asg" else "application-autoscaling"
    reader = aws.create_user("reader", [f"{service}:Describe*"])
    client = aws.client(service, **reader)
    t0 = next_hour(hours=2)
    # The permission probe: a delete of a shaper-named action that cannot exist, before any change.
    operation = "batch_delete_scheduled_action" if kind == "asg" else "delete_scheduled_action"

    moto_server.enforce_iam(True)  # from here on, moto checks signatures and IAM policies like AWS
    with pytest.raises(ScalingError) as caught:
        apply_plan(cfg, plan_frame(t0, [3, 6]), client, store=scaling_store, plan_id=None, actor="cli",
                   dry_run=False)
    moto_server.enforce_iam(False)

    message = str(caught.value)
    assert message.startswith(f"nothing was applied: {cfg.name} failed the checks made before any change")
    assert "access denied (AccessDenied" in message and f"for {operation} on {cfg.resource}: " in message
    assert "user/reader is not authorized" in message and "shaper needs " in message
    assert raw_scheduled(aws, cfg) == {}
    outcomes = [r["outcome"] for r in scaling_store.actions()]
    assert len(outcomes) == 2 and all(o.startswith("failed: access denied (AccessDenied") for o in outcomes)


def test_a_caller_without_any_permission_is_stopped_at_the_first_describe(aws, moto_server, demo_targets,
                                                                         scaling_store):
    cfg = demo_targets["asg"]
    create(aws, cfg)
    client = aws.client("autoscaling", **aws.create_user("nobody", []))
    moto_server.enforce_iam(True)
    with pytest.raises(ScalingError, match="access denied .* for describe_auto_scaling_groups on checkout-api-asg"):
        apply_plan(cfg, plan_frame(next_hour(hours=2), [3]), client, store=scaling_store, plan_id=None, actor="cli")
    moto_server.enforce_iam(False)
    assert scaling_store.actions() == []
