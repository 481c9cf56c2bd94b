"""Dagster's alerts delivered to a real local HTTP receiver: a failed run, and a plan that
predicts a critical threshold."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from shaper_pipelines.lib.notify import NotifyError, post


class Receiver:
    """A webhook on loopback that records what it is sent and answers with ``statuses`` in turn."""

    def __init__(self, statuses=(200,)):
        self.received: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(json.loads(body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_post_retries_server_errors_and_not_refusals():
    flaky = Receiver(statuses=(503, 502, 200))
    try:
        assert post(flaky.url, "hello", {"a": 1}, sleep=lambda _s: None) == 200
        assert len(flaky.received) == 3 and flaky.received[-1] == {"text": "hello", "a": 1}
    finally:
        flaky.close()
    refusing = Receiver(statuses=(403,))
    try:
        with pytest.raises(NotifyError, match="refused the notice: HTTP 403"):
            post(refusing.url, "hello", {}, sleep=lambda _s: None)
        assert len(refusing.received) == 1
    finally:
        refusing.close()
    with pytest.raises(NotifyError, match="did not take the notice after 2 attempts"):
        post("http://127.0.0.1:9/nothing-listens", "hello", {}, retries=1, sleep=lambda _s: None, timeout=2)


@dg.op
def breaks():
    raise RuntimeError("the agent fleet is on fire")


@dg.job
def doomed_job():
    breaks()


def test_a_failed_run_is_posted(receiver, monkeypatch):
    from shaper_pipelines.defs.alerts.sensors import run_failure_notice

    monkeypatch.setenv("SHAPER_ALERT_WEBHOOK", receiver.url)
    with dg.DagsterInstance.ephemeral() as instance:
        result = doomed_job.execute_in_process(instance=instance, raise_on_error=False)
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_notice", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=failure).for_run_failure()
        run_failure_notice(context)
    assert len(receiver.received) == 1
    notice = receiver.received[0]
    assert notice["kind"] == "run_failure" and notice["job"] == "doomed_job" and notice["run_id"] == result.run_id
    assert "doomed_job failed" in notice["text"]


def test_a_critical_plan_is_posted_once(receiver, monkeypatch):
    from shaper_pipelines.defs.alerts.sensors import critical_plan_notice

    monkeypatch.setenv("SHAPER_ALERT_WEBHOOK", receiver.url)
    critical = [{"target": "checkout-api-asg", "utilization": 1.31, "max_capacity": 40, "at": "2026-11-30 14:00 UTC"}]
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("scaling_plan", metadata={"critical": critical}))
        context = dg.build_sensor_context(instance=instance)
        list(critical_plan_notice(context))  # an asset sensor evaluates lazily
        assert len(receiver.received) == 1
        again = list(critical_plan_notice(dg.build_sensor_context(instance=instance, cursor=context.cursor)))
        assert [type(r) for r in again] == [dg.SkipReason]  # the cursor moved past it: nothing sent
    assert len(receiver.received) == 1
    assert receiver.received[0]["kind"] == "critical_plan" and "131% utilisation" in receiver.received[0]["text"]
