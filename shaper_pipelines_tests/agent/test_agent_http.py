"""HTTP load through real Locust (a master and two workers) against a real server on loopback."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from shaper_pipelines_tests.agent.test_agent_safety import AgentProcess, wait_for
from shaper_pipelines_tests.services.http_target import http_target, served
from shaper_pipelines_tests.services.postgres import free_port


@pytest.fixture
def target():
    with http_target() as url:
        yield url


def test_arrival_rate_follows_a_ramp_on_locust_master_and_workers(tmp_path, target):
    agent = AgentProcess(tmp_path, "--locust-processes", "2", "--max-rps", "1000")
    try:
        status, body = agent.call("POST", "/runs", {"target_resource": f"{target}/", "profile": {
            "profile_id": "ramp", "resource_type": "network_io", "duration": "12s",
            "load_pattern": {"kind": "ramp", "start": 0, "end": 240}}})
        assert status == 201, body
        time.sleep(4)
        # Master plus two forked workers, all in the agent's process tree.
        locust = agent.call("GET", f"/runs/{body['id']}")[1]["pids"][0]
        workers = subprocess.run(["pgrep", "-P", str(locust)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
        wait_for(lambda: agent.call("GET", f"/runs/{body['id']}")[1]["status"] == "finished", 15)
        samples = agent.call("GET", f"/runs/{body['id']}")[1]["samples"]
        # Locust takes seconds to start on a busy machine: judged from two seconds after the first
        # request went out, on the median error over that window, not on one slow second.
        joined = next(i for i, s in enumerate(samples) if s["achieved"] > 0)
        window = samples[max(3, joined + 2):]
        assert len(window) >= 4, samples
        target_rps = np.array([s["target"] for s in window])
        achieved = np.array([s["achieved"] for s in window])
        assert np.median(np.abs(achieved - target_rps) / target_rps) < 0.1, samples
        total = sum(s["achieved"] for s in samples)
        assert abs(served(target) - total) <= 0.05 * total + 20  # the server saw what the agent reports
        status, body = agent.call("POST", "/runs", {"target_resource": f"{target}/", "profile": {
            "profile_id": "too-much", "resource_type": "network_io", "duration": "5s",
            "load_pattern": {"kind": "constant", "level": 5000}}})
        assert status == 422 and "req/s" in body["error"]
        status, body = agent.call("POST", "/runs", {"profile": {
            "profile_id": "no-url", "resource_type": "network_io", "duration": "5s",
            "load_pattern": {"kind": "constant", "level": 5}}})
        assert status == 422 and "URL" in body["error"]
    finally:
        agent.stop()


@pytest.mark.parametrize("arrivals", ["even", "poisson"])
def test_a_master_drives_workers_started_apart_from_it(tmp_path, target, arrivals):
    """Workers as they run on other hosts: their own processes, joined over Locust's protocol,
    sharing no disk with the agent (rate, arrivals mode and counts travel as Locust messages)."""
    master_port = free_port()
    agent = AgentProcess(tmp_path, "--locust-remote-workers", "2", "--locust-master-port", str(master_port))
    workers = [subprocess.Popen([sys.executable, "-m", "shaper_pipelines.cli", "locust-worker", "--master-host",
                                 "127.0.0.1", "--master-port", str(master_port)], cwd=tmp_path)
               for _ in range(2)]
    try:
        status, body = agent.call("POST", "/runs", {"target_resource": f"{target}/", "profile": {
            "profile_id": "flat", "resource_type": "network_io", "duration": "20s",
            "load_pattern": {"kind": "constant", "level": 150}}, "arrivals": arrivals})
        assert status == 201, body
        wait_for(lambda: agent.call("GET", f"/runs/{body['id']}")[1]["status"] != "running", 30)
        run = agent.call("GET", f"/runs/{body['id']}")[1]
        assert run["status"] == "finished" and run["arrivals"] == arrivals, run
        # Workers join when their processes have started (seconds on a loaded CI machine); the
        # steady rate is the median from two seconds after the first request went out.
        joined = next(i for i, s in enumerate(run["samples"]) if s["achieved"] > 0)
        steady = [s["achieved"] for s in run["samples"][joined + 2:]]
        assert len(steady) >= 3 and abs(np.median(steady) - 150) < 0.15 * 150, run["samples"]
        assert served(target) > 0.5 * sum(s["achieved"] for s in run["samples"])
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=10)
        agent.stop()
