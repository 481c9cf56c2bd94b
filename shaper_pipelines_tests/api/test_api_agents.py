"""Adjusting and stopping simulations through the API on real load agents, the kill switch's
per-agent report, and an agent that does not answer."""

from __future__ import annotations

import json
import os

import pytest

from shaper_pipelines.store.simulation_store import Dispatch, SimulationStore
from shaper_pipelines_tests.agent.test_agent_safety import TOKEN as AGENT_TOKEN
from shaper_pipelines_tests.agent.test_agent_safety import AgentProcess, profile
from shaper_pipelines_tests.api.conftest import TOKEN, ApiProcess, shaper_env, sqlite_url
from shaper_pipelines_tests.services.postgres import free_port


def start_run(agent: AgentProcess, intensity: float = 0.5, resource: str = "cpu") -> str:
    """A gentle run (an agent runs one per resource at a time)."""
    level = {"cpu": 0.1, "memory": 16}[resource]
    status, run = agent.call("POST", "/runs", {"profile": profile(resource, {"kind": "constant", "level": level}, "60s"),
                                               "intensity": intensity})
    assert status == 201, run
    return run["id"]


def dispatch(home, run_key: str, agent_url: str, intensity: float = 0.5) -> None:
    with SimulationStore(sqlite_url(home)) as sims:
        sims.record_dispatches([Dispatch(run_key, "t-cpu", 1, agent_url, "cpu", intensity)], "test")


@pytest.fixture
def agent(tmp_path):
    a = AgentProcess(tmp_path, "--dead-man", "60s")
    yield a
    a.stop()


@pytest.fixture
def fleet(tmp_path, shaper_home, agent):
    """An API whose fleet is a real agent and one that does not answer."""
    live, dead = f"http://127.0.0.1:{agent.port}", f"http://127.0.0.1:{free_port()}"
    api = ApiProcess(shaper_env(shaper_home, SHAPER_API_TOKEN=TOKEN, SHAPER_AGENTS=f"{live}, {dead}",
                                SHAPER_AGENT_TOKEN=AGENT_TOKEN), tmp_path)
    yield api, live, dead
    api.stop()


def test_a_running_simulation_is_adjusted_and_stopped_on_its_agent(fleet, agent, shaper_home):
    api, live, _dead = fleet
    key = start_run(agent)
    dispatch(shaper_home, key, live)
    status, runs = api.call("GET", "/v1/simulations")
    assert status == 200 and [(r["run_key"], r["agent_url"], r["status"], r["intensity"]) for r in runs] == [
        (key, live, "dispatched", 0.5)]
    assert runs[0]["dispatched_at"].endswith("Z") and runs[0]["dispatched_by"] == "test"
    assert api.call("GET", "/v1/simulations?status=finished") == (200, [])
    assert api.call("GET", "/v1/simulations?status=bogus")[0] == 422
    assert api.call("GET", f"/v1/simulations/{key}")[1]["profile_id"] == "t-cpu"

    status, view = api.call("PATCH", f"/v1/simulations/{key}", {"intensity": 0.25})
    assert status == 200, view
    assert (view["run_key"], view["agent_url"], view["status"], view["intensity"]) == (key, live, "running", 0.25)
    assert agent.call("GET", f"/runs/{key}")[1]["intensity"] == 0.25  # the agent itself says so
    for bad in ({"intensity": 0}, {"intensity": 1.5}, {"intensity": "high"}, {"intensity": 0.5, "x": 1}, {}):
        assert api.call("PATCH", f"/v1/simulations/{key}", bad)[0] == 422, bad
    assert agent.call("GET", f"/runs/{key}")[1]["intensity"] == 0.25

    status, view = api.call("DELETE", f"/v1/simulations/{key}")
    assert status == 200 and view["status"] == "stopped" and view["reason"] == "stopped on request"
    assert agent.call("GET", f"/runs/{key}")[1]["status"] == "stopped"
    status, body = api.call("PATCH", f"/v1/simulations/{key}", {"intensity": 0.5})
    assert status == 409 and f"has ended on agent {live} (stopped" in body["detail"]

    with SimulationStore(sqlite_url(shaper_home)) as sims:
        sims.record_result(key, "stopped", "stopped on request", [])
    status, body = api.call("DELETE", f"/v1/simulations/{key}")
    assert status == 409 and "already ended (stopped)" in body["detail"]


def test_unknown_runs_and_unreachable_agents(fleet, agent, shaper_home):
    api, live, dead = fleet
    for method, body in (("GET", None), ("PATCH", {"intensity": 0.5}), ("DELETE", None)):
        status, answer = api.call(method, "/v1/simulations/0123abcd", body)
        assert status == 404 and answer["detail"] == "no simulation run '0123abcd' was dispatched", method
        assert api.call(method, "/v1/simulations/bad%20key", body)[0] == 422
    # Recorded, but the agent does not know it (restarted since).
    dispatch(shaper_home, "forgotten1", live)
    status, body = api.call("DELETE", "/v1/simulations/forgotten1")
    assert status == 404 and body["detail"] == f"agent {live} does not know run 'forgotten1' (was it restarted?)"
    dispatch(shaper_home, "elsewhere1", dead)
    for method, payload in (("PATCH", {"intensity": 0.5}), ("DELETE", None)):
        status, body = api.call(method, "/v1/simulations/elsewhere1", payload)
        assert status == 502 and body["detail"].startswith(f"agent {dead} is unreachable"), body
    dispatch(shaper_home, "outside1", "http://127.0.0.1:1")
    status, body = api.call("DELETE", "/v1/simulations/outside1")
    assert status == 409 and "http://127.0.0.1:1 is not in the fleet" in body["detail"]


def test_the_kill_switch_reports_each_agent(fleet, agent):
    api, live, dead = fleet
    keys = {start_run(agent), start_run(agent, 0.2, "memory")}
    status, report = api.call("POST", "/v1/simulations/stop-all")
    # One agent could not confirm: that is not a success, whatever the other did.
    assert status == 502
    assert report["confirmed"] is False
    assert report["dagster"] == {"configured": False, "terminated": [], "error": ""}
    first, second = report["agents"]
    assert (first["agent_url"], first["outcome"], set(first["stopped"]), first["error"]) == (live, "stopped", keys, "")
    assert (second["agent_url"], second["outcome"], second["stopped"]) == (dead, "unreachable", [])
    assert second["error"].startswith(f"agent {dead} is unreachable")
    assert {r["status"] for r in agent.call("GET", "/runs")[1]} == {"stopped"}


def test_the_kill_switch_on_the_embedded_local_agent(tmp_path, shaper_home, agent):
    """No SHAPER_AGENTS: the local agent recorded in SHAPER_HOME/agent.json, if any, is the fleet."""
    api = ApiProcess(shaper_env(shaper_home, SHAPER_API_TOKEN=TOKEN), tmp_path)
    try:
        assert api.call("POST", "/v1/simulations/stop-all")[1]["agents"] == []  # none was ever started
        shaper_home.mkdir(parents=True, exist_ok=True)
        state = shaper_home / "agent.json"
        state.write_text(json.dumps({"url": f"http://127.0.0.1:{agent.port}", "token": AGENT_TOKEN}))
        os.chmod(state, 0o600)
        key = start_run(agent)
        status, report = api.call("POST", "/v1/simulations/stop-all")
        assert status == 200 and report["confirmed"] is True
        assert [(a["outcome"], a["stopped"]) for a in report["agents"]] == [("stopped", [key])]
        agent.stop()  # the local agent exits when idle: nothing listens, so nothing runs
        status, report = api.call("POST", "/v1/simulations/stop-all")
        assert status == 200 and [a["outcome"] for a in report["agents"]] == ["not-running"]
    finally:
        api.stop()
