"""Dagster's alerts delivered to a real local HTTP receiver: a failed run, and a plan that
predicts a critical threshold - posted for a target whose demand exceeds what its maximum serves,
never for a healthy one whose plan covers a demand far above its minimum."""

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


def test_a_healthy_target_is_not_critical_and_one_beyond_its_maximum_is(receiver, monkeypatch):
    """The demo's case: a forecast 5.8 times what the minimum serves, which a plan within the
    maximum covers, is no notice; a forecast the maximum cannot serve is, and is posted. The plan
    of the second is held at the maximum (not refused), so Prometheus shows it over 1 too."""
    import pandas as pd

    from shaper_pipelines.defs.alerts.sensors import critical_plan_notice
    from shaper_pipelines.defs.plan.assets import cap_at_maximum, critical_at_maximum
    from shaper_pipelines.lib.capacity import utilisation_at_plan
    from shaper_pipelines.lib.planning import Plan

    ts = pd.date_range("2026-11-30 12:00", periods=24, freq="5min", tz="UTC")
    healthy = pd.DataFrame({"timestamp": ts, "p90": [30.0] * 12 + [290.0] * 12})  # 5.8 x a minimum of 1 x 50
    overloaded = pd.DataFrame({"timestamp": ts, "p90": [30.0] * 12 + [900.0] * 12})  # 18 instances' worth
    assert critical_at_maximum("healthy", healthy, 10, 50.0, 0.9) is None
    found = critical_at_maximum("overloaded", overloaded, 10, 50.0, 0.9)
    assert found == {"target": "overloaded", "utilization": 1.8, "max_capacity": 10, "at": "2026-11-30 13:00 UTC"}

    # Their plans: 7 instances for the healthy peak; the overloaded one wants 21 and is held at 10.
    plans = {}
    for name, frame, want in [("healthy", healthy, 7), ("overloaded", overloaded, 21)]:
        plan = Plan(frame=pd.DataFrame({"timestamp": ts, "desired_capacity": [1] * 11 + [want] * 13, "reason": "r"}),
                    rule=None, notes=[])
        cap_at_maximum(plan, 10)
        plans[name] = plan.frame.assign(target=name)
        u = frame.assign(target=name, utilization_p50=frame["p90"] / 50.0, utilization_p90=frame["p90"] / 50.0,
                         capacity=1)
        at_plan = utilisation_at_plan(u, plans[name])
        plans[name + ":peak"] = float(at_plan["utilization_p90"].max())
    assert plans["healthy:peak"] < 0.9 and plans["overloaded:peak"] == 1.8
    assert plans["overloaded"]["desired_capacity"].max() == 10

    monkeypatch.setenv("SHAPER_ALERT_WEBHOOK", receiver.url)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("scaling_plan", metadata={"critical": []}))
        context = dg.build_sensor_context(instance=instance)
        assert [type(r) for r in critical_plan_notice(context)] == [dg.SkipReason]
        assert receiver.received == []
        instance.report_runless_asset_event(dg.AssetMaterialization("scaling_plan", metadata={"critical": [found]}))
        list(critical_plan_notice(dg.build_sensor_context(instance=instance, cursor=context.cursor)))
    assert [r["target"] for r in receiver.received] == ["overloaded"]
    assert "180% utilisation" in receiver.received[0]["text"]
