"""Rehearsals measure the service, not only the load: a real agent process drives real Locust at the
demo service (pool mode, 4 workers holding each request 20 ms: 200 requests per second), reads
the service's own /metrics every second, and ends a run by itself once a latency objective is
broken. Load stays modest (at most about 350 requests per second, for a few seconds)."""

from __future__ import annotations

import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shaper_pipelines.demo_service import start_demo_service
from shaper_pipelines_tests.agent.test_agent_safety import AgentProcess, alive, profile, wait_for
from shaper_pipelines_tests.services.postgres import free_port

MONITOR = {"busy_seconds": "demo_busy_worker_seconds_total", "capacity": "demo_workers",
           "latency_histogram": "demo_request_duration_seconds",
           "errors": {"name": "demo_requests_total", "label": "status", "values": ["503"]}}
CLIENT = ("errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
SERVICE = ("service_utilisation", "service_p95_ms", "service_p99_ms", "service_errors")


@pytest.fixture(scope="module")
def service():
    with start_demo_service("pool", workers=4, work_ms=20, queue=16) as s:
        yield s


@pytest.fixture
def agent(tmp_path):
    a = AgentProcess(tmp_path, "--dead-man", "60s", "--max-rps", "500")
    yield a
    a.stop()


def network(pattern: dict, duration: str) -> dict:
    return profile("network_io", pattern, duration)


def finished(agent: AgentProcess, run_id: str, timeout: float) -> dict:
    wait_for(lambda: agent.call("GET", f"/runs/{run_id}")[1]["status"] != "running", timeout, "run ended")
    return agent.call("GET", f"/runs/{run_id}")[1]


def test_a_monitored_run_sees_the_client_and_the_service(agent, service):
    status, run = agent.call("POST", "/runs", {
        "target_resource": f"{service.url}/", "profile": network({"kind": "constant", "level": 100}, "6s"),
        "monitor": {"metrics_url": f"{service.url}/metrics", **MONITOR}})
    assert status == 201, run
    assert run["monitor"]["metrics_url"] == f"{service.url}/metrics" and run["stop_when"] is None
    # While it runs, the agent's own /metrics say the client's latency and errors.
    wait_for(lambda: "shaper_agent_client_latency_p95_milliseconds{" in agent.call("GET", "/metrics")[1], 15,
             "client latency in the agent's /metrics")
    assert "shaper_agent_client_errors_per_second{" in agent.call("GET", "/metrics")[1]
    run = finished(agent, run["id"], 20)
    assert run["status"] == "finished" and run["ended_by"] is None, run
    assert run["monitor_failures"] == 0 and run["monitor_missing"] == [], run
    samples = run["samples"]
    assert all({"t", "target", "achieved", *CLIENT, *SERVICE} <= set(s) for s in samples)
    assert set(run["current"]) == set(samples[-1])
    # Judged from two seconds after the first request went out (Locust starts slowly on a busy
    # machine), on medians, not on one slow second.
    joined = next(i for i, s in enumerate(samples) if s["achieved"] > 0)
    steady = [s for s in samples[joined + 2:] if s["latency_p95_ms"] is not None]
    assert len(steady) >= 2, samples
    assert 20 <= statistics.median(s["latency_p95_ms"] for s in steady) <= 40, samples
    assert statistics.median(s["latency_p50_ms"] for s in steady) >= 20, samples
    # The run's last second may end before its scrape is read (the monitor stops with the load):
    # its service fields are None, as the view documents, and every other second has them.
    served = [s for s in steady if s["service_utilisation"] is not None]
    assert len(served) >= len(steady) - 1, samples
    assert abs(statistics.median(s["service_utilisation"] for s in served) - 0.5) <= 0.15, samples
    assert 20 <= statistics.median(s["service_p95_ms"] for s in served) <= 40, samples
    assert all(s["errors"] == 0 for s in steady) and all(s["service_errors"] == 0 for s in served), samples


def test_a_ramp_stops_itself_once_the_latency_objective_is_broken(agent, service):
    status, run = agent.call("POST", "/runs", {
        "target_resource": f"{service.url}/",
        "profile": network({"kind": "ramp", "start": 50, "end": 350}, "12s"),
        "monitor": {"metrics_url": f"{service.url}/metrics", **MONITOR},
        "stop_when": {"latency_quantile": 0.95, "latency_ms": 60, "for_s": 2}})
    assert status == 201, run
    assert run["stop_when"] == {"latency_quantile": 0.95, "latency_ms": 60.0, "for_s": 2, "source": "service"}
    run = finished(agent, run["id"], 25)
    ended = run["ended_by"]
    assert run["status"] == "stopped" and ended is not None, run
    assert ended["kind"] == "latency" and ended["threshold"] == 60.0 and ended["value"] > 60, ended
    assert 180 <= ended["at_offered"] <= 400, run["samples"]
    assert ended["t"] < 11 and len(run["samples"]) < 12, run["samples"]  # before the end of the ramp
    assert "stopped itself" in run["reason"] and "p95" in run["reason"] and "60 ms" in run["reason"], run
    assert run["samples"][ended["t"]]["service_p95_ms"] > 60
    # The load is gone: Locust's process group was stopped with the run.
    assert agent.children() and not any(
        alive(p) for p in agent.children()), "Locust still running after the run stopped itself"


def test_without_a_monitor_the_objective_is_judged_on_the_client_side(agent, service):
    """Locust's own response times, then."""
    status, run = agent.call("POST", "/runs", {
        "target_resource": f"{service.url}/", "profile": network({"kind": "constant", "level": 60}, "8s"),
        "stop_when": {"latency_quantile": 0.5, "latency_ms": 5, "for_s": 1}})  # 20 ms work: broken at once
    assert status == 201, run
    assert run["stop_when"]["source"] == "client" and run["monitor"] is None
    run = finished(agent, run["id"], 20)
    assert run["status"] == "stopped" and run["ended_by"]["kind"] == "latency", run
    assert run["ended_by"]["source"] == "client" and run["ended_by"]["value"] >= 15, run
    last = run["samples"][run["ended_by"]["t"]]
    assert last["latency_p50_ms"] > 5 and last["service_utilisation"] is None
    assert "p50 latency" in run["reason"] and "client" in run["reason"]


def test_a_dead_target_stops_the_run_on_errors_and_its_scrapes_are_counted_as_failed(agent):
    """Nothing listens: every request fails (a completion and an error both), every scrape fails."""
    dead = f"http://127.0.0.1:{free_port()}"
    status, run = agent.call("POST", "/runs", {
        "target_resource": f"{dead}/", "profile": network({"kind": "constant", "level": 20}, "10s"),
        "monitor": {"metrics_url": f"{dead}/metrics", "busy_seconds": "b_total", "capacity": 2},
        "stop_when": {"error_ratio": 0.05, "for_s": 2}})
    assert status == 201, run
    run = finished(agent, run["id"], 20)
    ended = run["ended_by"]
    assert run["status"] == "stopped" and ended["kind"] == "errors" and ended["value"] == 1.0, run
    assert ended["threshold"] == 0.05 and ended["at_offered"] == 20.0, run
    assert "error ratio 100.0% above the objective of 5.0%" in run["reason"], run
    assert run["monitor_failures"] >= len(run["samples"]) >= 2, run
    assert all(s["service_utilisation"] is None for s in run["samples"])
    broken = run["samples"][ended["t"]]
    assert broken["errors"] > 0 and broken["errors"] == pytest.approx(broken["achieved"])
    assert broken["latency_p95_ms"] is None  # nothing succeeded


class _SlowMetrics(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(2)  # far past the agent's half-second scrape timeout
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"x_total 1\n")

    def log_message(self, *args):
        pass


def test_a_slow_metrics_endpoint_never_holds_the_load_back(agent, service):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowMetrics)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, run = agent.call("POST", "/runs", {
            "target_resource": f"{service.url}/", "profile": network({"kind": "constant", "level": 40}, "5s"),
            "monitor": {"metrics_url": f"http://127.0.0.1:{server.server_port}/metrics",
                        "latency_histogram": "x"}})
        assert status == 201, run
        run = finished(agent, run["id"], 20)
    finally:
        server.shutdown()
    assert run["status"] == "finished" and len(run["samples"]) == 5, run
    assert run["monitor_failures"] >= 4 and all(s["service_p95_ms"] is None for s in run["samples"]), run
    joined = next(i for i, s in enumerate(run["samples"]) if s["achieved"] > 0)
    steady = [s["achieved"] for s in run["samples"][joined + 1:]]
    assert steady and abs(statistics.median(steady) - 40) <= 6, run["samples"]


def test_what_is_refused(agent, service):
    net = network({"kind": "constant", "level": 10}, "5s")
    url = f"{service.url}/"
    good_monitor = {"metrics_url": f"{service.url}/metrics", **MONITOR}

    def start(**extra):
        return agent.call("POST", "/runs", {"target_resource": url, "profile": net, **extra})

    status, body = agent.call("POST", "/runs", {"profile": profile("cpu", {"kind": "constant", "level": 0.1}, "5s"),
                                                "stop_when": {"latency_ms": 100}})
    assert status == 422 and "network_io" in body["error"], body
    status, body = agent.call("POST", "/runs", {"profile": profile("cpu", {"kind": "constant", "level": 0.1}, "5s"),
                                                "monitor": good_monitor})
    assert status == 422 and "network_io" in body["error"], body
    status, body = agent.call("POST", "/runs", {"profile": profile("cpu", {"kind": "constant", "level": 0.1}, "5s"),
                                                "arrivals": "poisson"})
    assert status == 422 and "network_io" in body["error"], body
    port = service.url.rsplit(":", 1)[1]
    status, body = start(monitor={"metrics_url": f"http://example.com:{port}/metrics"})
    assert status == 403 and "allow-list" in body["error"], body
    refusals = [
        ({"monitor": {"metrics_url": "ftp://127.0.0.1/metrics"}}, "http(s)"),
        ({"monitor": {"metrics_url": f"{service.url}/metrics", "latency": "x"}}, "unknown keys 'latency'"),
        ({"monitor": {"busy_seconds": "demo_busy_worker_seconds_total"}}, "metrics_url is required"),
        ({"monitor": {**good_monitor, "capacity": -1}}, "above 0"),
        ({"monitor": {**good_monitor, "capacity": "not a metric"}}, "metric name"),
        ({"monitor": {**good_monitor, "errors": {"name": "demo_requests_total", "label": "status"}}}, "values"),
        ({"monitor": "http://127.0.0.1/metrics"}, "must be an object"),
        ({"stop_when": {"latency_ms": 100, "latency_quantile": 0.9}}, "0.5, 0.95, 0.99"),
        ({"stop_when": {"latency_ms": 0}}, "above 0"),
        ({"stop_when": {"latency_ms": "100"}}, "latency_ms"),
        ({"stop_when": {"error_ratio": 1.5}}, "0 to 1"),
        ({"stop_when": {"latency_ms": 100, "for_s": 0}}, "for_s"),
        ({"stop_when": {"latency_ms": 100, "for_s": 1.5}}, "for_s"),
        ({"stop_when": {"latency_ms": 100, "source": "server"}}, "source"),
        ({"stop_when": {"latency_ms": 100, "source": "service"}}, "needs a monitor with a latency_histogram"),
        ({"stop_when": {"for_s": 3}}, "latency_ms"),
        ({"stop_when": {"latency_ms": 100, "p95": 1}}, "unknown keys 'p95'"),
        ({"arrivals": "bursty"}, "arrivals must be 'even' or 'poisson'"),
    ]
    for extra, words in refusals:
        status, body = start(**extra)
        assert status == 422 and words in body["error"], (extra, status, body)
    assert agent.call("GET", "/runs")[1] == []  # nothing was started by any of them
