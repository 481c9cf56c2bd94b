"""load_simulation_job on two real agents, the agent sensor, and simulation_results, including an
agent that dies mid-run."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from shaper_pipelines.defs.simulation.assets import simulation_results
from shaper_pipelines.defs.simulation.jobs import load_simulation_job
from shaper_pipelines.defs.simulation.sensors import agent_sensor
from shaper_pipelines.lib.profile import parse_profile
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.store.profile_store import ProfileStore
from shaper_pipelines.store.simulation_store import SimulationStore
from shaper_pipelines_tests.agent.test_agent_safety import (
    TOKEN,
    AgentProcess,
    alive,
    wait_for,
)


@pytest.fixture
def two_agents(tmp_path):
    agents = [AgentProcess(tmp_path / f"a{i}", "--dead-man", "60s") for i in range(2)]
    yield agents
    for a in agents:
        a.stop()


def definitions(url: str, agents) -> dg.Definitions:
    fleet = AgentFleetResource(agents=[f"http://127.0.0.1:{a.port}" for a in agents], token=TOKEN)
    return dg.Definitions(assets=[simulation_results], jobs=[load_simulation_job], sensors=[agent_sensor],
                          resources={"database": DatabaseResource(url=url), "fleet": fleet,
                                     "metrics_source": MetricsSourceResource()})


def seed(url: str, seconds: int) -> None:
    with ProfileStore(url) as store:
        store.put_many([
            parse_profile({"profile_id": "rehearse-me", "resource_type": "cpu", "duration": f"{seconds}s",
                           "priority": 80, "load_pattern": {"kind": "constant", "level": 0.4},
                           "trigger_conditions": [{"kind": "event", "event": "launch"}]}),
            parse_profile({"profile_id": "not-now", "resource_type": "memory", "duration": "1m",
                           "load_pattern": {"kind": "constant", "level": 10},
                           "trigger_conditions": [{"kind": "cron", "cron": "0 0 1 1 *"}]}),
        ])


def tick(defs: dg.Definitions, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources, cursor=cursor)
    return agent_sensor(context), context.cursor


def collect(defs, instance, keys) -> dict[str, dict]:
    instance.add_dynamic_partitions("simulation_runs", keys)
    out = {}
    for key in keys:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key=key, asset_selection=[dg.AssetKey("simulation_results")])
        meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
        out[key] = {k: v.value for k, v in meta.items()}
    return out


def test_an_event_triggers_a_fleet_rehearsal_and_the_sensor_collects_it(two_agents, tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    seed(url, 4)
    defs = definitions(url, two_agents)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("load_simulation_job").execute_in_process(
            instance=instance, run_config={"ops": {"select_profiles": {"config": {"events": ["launch"]}}}})
        assert result.success
        output = next(e for e in result.all_events
                      if e.event_type_value == "STEP_OUTPUT" and e.step_key == "select_profiles")
        decisions = output.event_specific_data.metadata["decisions"].value
        assert "| rehearse-me | 1 | cpu | 80 | yes | due: event launch arrived |" in decisions
        assert "| not-now |" in decisions and "not due" in decisions
        keys = result.output_for_node("simulate")
        assert len(keys) == 2  # one run per agent
        with SimulationStore(url) as sims:
            runs = sims.runs()
        assert {r["profile_id"] for r in runs} == {"rehearse-me"} and all(r["intensity"] == 0.5 for r in runs)

        first, cursor = tick(defs, instance)
        assert isinstance(first, dg.SkipReason) and "still running" in first.skip_message
        time.sleep(6)
        ended, cursor = tick(defs, instance, cursor)
        assert sorted(r.run_key for r in ended.run_requests) == sorted(keys)
        again, _ = tick(defs, instance, cursor)
        assert isinstance(again, dg.SkipReason)  # each run is requested once

        results = collect(defs, instance, keys)
        for meta in results.values():
            assert meta["status"] == "finished" and meta["seconds"] == 4
            assert meta["mean_abs_error"] < 0.1  # 0.4 x 0.5 of a core on each agent
            assert meta["plot"].startswith("![rehearsal: load, latency, utilisation]")


def test_an_agent_that_dies_mid_run_becomes_a_failed_explained_result(two_agents, tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    seed(url, 30)
    defs = definitions(url, two_agents)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("load_simulation_job").execute_in_process(
            instance=instance, run_config={"ops": {"select_profiles": {"config": {"profile_ids": ["rehearse-me"]}}}})
        keys = result.output_for_node("simulate")
        time.sleep(2)
        doomed = two_agents[0]
        workers = {p for r in doomed.call("GET", "/runs")[1] for p in r["pids"]}
        doomed.proc.kill()
        doomed.proc.wait()
        ended, _ = tick(defs, instance)
        dead_key = [r.run_key for r in ended.run_requests]
        assert len(dead_key) == 1  # the other agent's run is still going
        meta = collect(defs, instance, dead_key)[dead_key[0]]
        assert meta["status"] == "failed" and "unreachable" in meta["reason"] and "died" in meta["reason"]
        assert not any(alive(p) for p in workers)  # its load is gone with it
        two_agents[1].call("POST", "/stop-all")
        with SimulationStore(url) as sims:
            assert sims.run(dead_key[0])["status"] == "failed"
        assert set(keys) > set(dead_key)


def test_the_event_feed_sensor_launches_once_per_new_batch(tmp_path, monkeypatch):
    import subprocess
    import sys

    from shaper_pipelines.defs.simulation.sensors import event_feed_sensor

    feed = tmp_path / "events.jsonl"
    monkeypatch.setenv("SHAPER_EVENT_FEED", str(feed))
    assert isinstance(event_feed_sensor(dg.build_sensor_context()), dg.SkipReason)
    for name in ("release_rollout_started", "holiday_sale_start"):
        emitted = subprocess.run([sys.executable, "-m", "shaper_pipelines.cli", "events", "emit", name],
                                 capture_output=True, text=True, timeout=60, env={**__import__("os").environ})
        assert emitted.returncode == 0, emitted.stderr
    with open(feed, "a") as f:
        f.write("not json\n")
    context = dg.build_sensor_context()
    request = event_feed_sensor(context)
    assert request.run_key == "events-0"
    assert request.run_config["ops"]["select_profiles"]["config"]["events"] == ["holiday_sale_start",
                                                                                 "release_rollout_started"]
    assert isinstance(event_feed_sensor(dg.build_sensor_context(cursor=context.cursor)), dg.SkipReason)
    bad = subprocess.run([sys.executable, "-m", "shaper_pipelines.cli", "events", "emit", "rm -rf"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "event name" in bad.stderr


def test_network_rehearsals_run_against_the_configured_url(two_agents, tmp_path):
    from shaper_pipelines_tests.services.http_target import http_target, served

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with ProfileStore(url) as store:
        store.put(parse_profile({"profile_id": "api-burst", "resource_type": "network_io", "duration": "6s",
                                 "load_pattern": {"kind": "constant", "level": 100},
                                 "trigger_conditions": [{"kind": "event", "event": "launch"}]}))
    defs = definitions(url, two_agents)
    with http_target() as target, dg.instance_for_test() as instance:
        skipped = defs.resolve_job_def("load_simulation_job").execute_in_process(
            instance=instance, run_config={"ops": {"select_profiles": {"config": {"events": ["launch"]}}}})
        assert skipped.output_for_node("simulate") == []  # no URL: nothing to send requests to
        result = defs.resolve_job_def("load_simulation_job").execute_in_process(
            instance=instance, run_config={"ops": {"select_profiles": {"config": {
                "events": ["launch"], "http_target": f"{target}/"}}}})
        keys = result.output_for_node("simulate")
        assert len(keys) == 2
        wait_for(lambda: isinstance(tick(defs, instance)[0], dg.SensorResult), 20)
        results = collect(defs, instance, keys)
        assert all(m["status"] == "finished" and m["seconds"] == 6 for m in results.values())
        # The requests reached the configured URL, and the server counted what the agents
        # recorded as achieved. How closely achieved follows 50 req/s per agent is the agent
        # tests' concern; on a loaded 2-core CI machine it can fall short, so it is not judged here.
        with SimulationStore(url) as sims:
            recorded = sum(float(sims.samples(k)["achieved"].sum()) for k in keys)
        count = served(target)
        assert count > 0.25 * 100 * 6, count
        assert abs(count - recorded) <= 0.2 * recorded + 20, (count, recorded)
