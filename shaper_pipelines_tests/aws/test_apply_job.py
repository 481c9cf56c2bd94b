"""apply_scaling_job as Dagster runs it: the stored plan, the scaling configuration and a real
moto_server over HTTP; dry run by default."""

from __future__ import annotations

import os

import pytest
import yaml

from shaper_pipelines_tests.aws.conftest import next_hour, plan_frame


def _job(store_url, endpoint: str):
    from shaper_pipelines.defs.scaling.apply import apply_scaling_job
    from shaper_pipelines.resources.autoscaling import AutoScalingResource
    from shaper_pipelines.resources.database import DatabaseResource

    return apply_scaling_job, {"database": DatabaseResource(url=store_url),
                               "autoscaling": AutoScalingResource(endpoint_url=endpoint)}


def _switch(store_url, **mode):
    from shaper_pipelines.store.control_store import ControlStore

    with ControlStore(store_url) as control:
        control.set_scaling_mode(actor="test", note="", **mode)


def _config(tmp_path, monkeypatch, targets):
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump({"targets": [t.model_dump(mode="json") for t in targets]}))
    monkeypatch.setenv("SHAPER_SCALING_CONFIG", str(path))


def test_apply_job_dry_run_by_default_then_for_real(aws, scaling_store, store_url, demo_targets, tmp_path,
                                                    monkeypatch):
    asg, ecs = demo_targets["asg"], demo_targets["ecs"]
    aws.create_asg(asg.resource, min_size=2, max_size=20)
    aws.create_ecs_service(min_capacity=2, max_capacity=12)
    _config(tmp_path, monkeypatch, [asg, ecs])
    start = next_hour(hours=2)
    scaling_store.save_plan(asg.name, plan_frame(start, [2, 6, 9, 4]), "test", "floor: test")
    scaling_store.save_plan(ecs.name, plan_frame(start, [3, 5, 2]), "test", "floor: test")
    job, resources = _job(store_url, aws.url)

    dry = job.execute_in_process(resources=resources)
    assert dry.success
    assert aws.asg_scheduled(asg.resource) == {} and aws.ecs_scheduled(ecs.resource) == {}
    recorded = scaling_store.actions()
    assert recorded and all(a["dry_run"] and a["outcome"] == "would-apply" for a in recorded)

    for_real = {"ops": {"apply_scaling_plans": {"config": {"dry_run": False, "actor": "alice"}}}}
    refused = job.execute_in_process(resources=resources, run_config=for_real, raise_on_error=False)
    assert not refused.success  # the operators' switch is still on dry run, whatever the run says
    assert "dry-run mode" in next(e for e in refused.all_events if e.is_step_failure).event_specific_data.error.message
    assert aws.asg_scheduled(asg.resource) == {}
    _switch(store_url, dry_run=False, paused=True)
    paused = job.execute_in_process(resources=resources, run_config=for_real, raise_on_error=False)
    assert not paused.success and aws.asg_scheduled(asg.resource) == {}
    _switch(store_url, dry_run=False, paused=False)

    real = job.execute_in_process(resources=resources, run_config=for_real)
    assert real.success
    floors = sorted(a["MinSize"] for a in aws.asg_scheduled(asg.resource).values())
    assert floors == [2, 4, 6, 9]  # the rises, the fall to 4 and back to the configured minimum
    ecs_floors = sorted(a["ScalableTargetAction"]["MinCapacity"] for a in aws.ecs_scheduled(ecs.resource).values())
    assert ecs_floors == [2, 3, 5]
    applied = [a for a in scaling_store.actions() if not a["dry_run"]]
    assert applied and all(a["actor"] == "alice" and a["outcome"] == "applied" for a in applied)

    again = job.execute_in_process(resources=resources, run_config={
        "ops": {"apply_scaling_plans": {"config": {"dry_run": False}}}})
    assert again.success and len(scaling_store.actions()) == len(recorded) + len(applied)  # nothing new to do


def test_apply_job_fails_clearly_on_an_unknown_group_and_changes_nothing(aws, scaling_store, store_url,
                                                                        demo_targets, tmp_path, monkeypatch):
    asg = demo_targets["asg"]
    _config(tmp_path, monkeypatch, [asg])
    scaling_store.save_plan(asg.name, plan_frame(next_hour(hours=2), [3, 5]), "test", "floor: test")
    _switch(store_url, dry_run=False, paused=False)
    job, resources = _job(store_url, aws.url)
    result = job.execute_in_process(resources=resources, raise_on_error=False, run_config={
        "ops": {"apply_scaling_plans": {"config": {"dry_run": False}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert asg.resource in failure.event_specific_data.error.message
    assert not [a for a in scaling_store.actions() if a["outcome"] == "applied"]


def _failure(result) -> str:
    return next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message


@pytest.mark.parametrize("switch, said", [
    ({"dry_run": False, "paused": True}, "scaling is paused (set by test)"),
    ({"dry_run": True, "paused": False}, "scaling is in dry-run mode (set by test)"),
])
def test_a_switch_flipped_while_applying_stops_before_the_next_target(aws, faults, scaling_store, store_url,
                                                                     demo_targets, tmp_path, monkeypatch,
                                                                     switch, said):
    asg, ecs = demo_targets["asg"], demo_targets["ecs"]
    aws.create(asg)
    aws.create(ecs)
    _config(tmp_path, monkeypatch, [asg, ecs])
    start = next_hour(hours=2)
    scaling_store.save_plan(asg.name, plan_frame(start, [3, 6]), "test", "floor: test")
    scaling_store.save_plan(ecs.name, plan_frame(start, [3, 5]), "test", "floor: test")
    _switch(store_url, dry_run=False, paused=False)
    # An operator flips the switch while the first target's actions are being written.
    faults.after("BatchPutScheduledUpdateGroupAction", lambda: _switch(store_url, **switch))
    job, resources = _job(store_url, faults.url)

    result = job.execute_in_process(resources=resources, raise_on_error=False, run_config={
        "ops": {"apply_scaling_plans": {"config": {"dry_run": False}}}})

    assert not result.success
    message = _failure(result)
    assert f"{said}: the run stopped before search-api. What was applied before stays applied" in message
    assert "checkout-api-asg: applied (2 changes); kept" in message and "search-api: not applied" in message
    assert sorted(a["MinSize"] for a in aws.asg_scheduled(asg.resource).values()) == [3, 6]  # kept, not undone
    assert aws.ecs_scheduled(ecs.resource) == {}
    assert all(r["outcome"] == "applied" for r in scaling_store.actions(asg.name))
    assert all(r["outcome"].startswith(f"failed: not applied: {said}") for r in scaling_store.actions(ecs.name))


def test_an_offline_dry_run_says_once_that_aws_was_not_reached(scaling_store, store_url, demo_targets, tmp_path,
                                                               monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    asg, ecs = demo_targets["asg"], demo_targets["ecs"]
    _config(tmp_path, monkeypatch, [asg, ecs])
    start = next_hour(hours=2)
    scaling_store.save_plan(asg.name, plan_frame(start, [3, 6, 4]), "test", "floor: test")
    scaling_store.save_plan(ecs.name, plan_frame(start, [3, 5]), "test", "floor: test")
    job, resources = _job(store_url, "")

    result = job.execute_in_process(resources=resources)

    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").event_specific_data
    assert output.metadata["online"].value is False
    table = output.metadata["what"].value
    assert table.splitlines()[0].startswith("AWS was not reached (no endpoint, no credentials)")
    assert table.count("not reached") == 1
    rows = [line for line in table.splitlines() if line.startswith(("| checkout-api-asg |", "| search-api |"))]
    assert len(rows) == 5 and all(row.split(" | ")[4] == "would-apply" for row in rows)
    # The audit trail keeps, per action, that it was not checked against AWS.
    assert all(r["outcome"] == "would-apply (offline: AWS not reached; bounds from scaling.yaml)"
               for r in scaling_store.actions())
