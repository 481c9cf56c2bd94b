"""The embedded default's detached local agent: found again by later runs, and stopped for good by
``stop_local_agent`` (what the ``shaper_home`` fixture does after every test)."""

from __future__ import annotations

import json

from shaper_pipelines.agent.local import _agent_process, local_agent, stop_local_agent


def test_stop_local_agent_ends_the_process_and_leaves_nothing_running(tmp_path):
    home = tmp_path / "home"
    client = local_agent(home)
    info = json.loads((home / "agent.json").read_text())
    assert _agent_process(info["pid"], info["url"])
    assert local_agent(home).url == client.url  # found again, not started twice
    run = client.start({"profile_id": "d", "resource_type": "disk_io", "duration": "30s",
                        "load_pattern": {"kind": "constant", "level": 1}})
    assert client.get(run["id"])["status"] == "running"
    assert stop_local_agent(home)
    assert not _agent_process(info["pid"], info["url"])
    assert not (home / "agent-work").exists()  # made by the agent, removed on its clean stop
    assert "Traceback" not in (home / "agent.log").read_text()


def test_stop_local_agent_without_an_agent_is_a_no_op(tmp_path):
    assert not stop_local_agent(tmp_path)
