"""Profile selection: triggers, priorities, the fleet's capacity, and a real Prometheus condition."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np

from shaper_pipelines.lib.prometheus import PrometheusSettings, instant_value
from shaper_pipelines.lib.profile import parse_profile
from shaper_pipelines.lib.selection import metric_condition, select
from shaper_pipelines_tests.services.prometheus import LoadedSeries, start_prometheus

NOW = datetime(2026, 11, 30, 22, 10, tzinfo=timezone.utc)  # 23:10 in Berlin, a Monday


def p(pid, resource="cpu", priority=50, triggers=()):
    return parse_profile({"profile_id": pid, "resource_type": resource, "duration": "1m", "priority": priority,
                          "load_pattern": {"kind": "constant", "level": 0.1}, "trigger_conditions": list(triggers)})


def decide(profiles, *, events=(), metric=lambda q: None, slots=None, requested=()):
    decisions = select([(x, 1) for x in profiles], now=NOW, window_s=3600, events=set(events),
                       evaluate_metric=metric, slots=slots or {"cpu": 1, "memory": 1, "disk_io": 1},
                       requested=set(requested))
    return {d.profile_id: d for d in decisions}


def test_each_trigger_kind_and_the_reasons():
    profiles = [
        p("cron-due", triggers=[{"kind": "cron", "cron": "0 23 * * *", "timezone": "Europe/Berlin"}]),
        p("cron-not", resource="memory", triggers=[{"kind": "cron", "cron": "0 9 * * *"}]),
        p("event", resource="disk_io", triggers=[{"kind": "event", "event": "release"}]),
        p("metric", resource="memory", triggers=[{"kind": "metric", "promql": "up", "comparator": ">", "threshold": 0}]),
        p("no-trigger"),
    ]
    d = decide(profiles, events={"release"})
    assert d["cron-due"].chosen and "cron '0 23 * * *'" in d["cron-due"].why
    assert not d["cron-not"].chosen and "not due" in d["cron-not"].why
    assert d["event"].chosen and "event release arrived" in d["event"].why
    assert not d["metric"].chosen and "not evaluated (no Prometheus)" in d["metric"].why
    assert not d["no-trigger"].chosen and "requested by id" in d["no-trigger"].why
    held = decide(profiles, metric=lambda q: True)
    assert held["metric"].chosen


def test_priority_wins_the_fleet_slots_and_losers_say_why():
    profiles = [p("low", priority=10, triggers=[{"kind": "event", "event": "go"}]),
                p("high", priority=90, triggers=[{"kind": "event", "event": "go"}]),
                p("net", resource="network_io", triggers=[{"kind": "event", "event": "go"}])]
    d = decide(profiles, events={"go"})
    assert d["high"].chosen and not d["low"].chosen and "higher priorities" in d["low"].why
    assert not d["net"].chosen and "no agent of the fleet runs network_io" in d["net"].why
    two = decide(profiles, events={"go"}, slots={"cpu": 2})
    assert two["high"].chosen and two["low"].chosen
    asked = decide(profiles, requested={"low"})
    assert asked["low"].chosen and not asked["high"].chosen


def test_a_metric_condition_is_evaluated_in_a_real_prometheus():
    now = time.time()
    ts = np.arange(now - 1800, now - 30, 30.0)
    series = [LoadedSeries("shaper_test_rps", {"service": "shop"}, ts, np.full(len(ts), 300.0)),
              LoadedSeries("shaper_test_rps", {"service": "blog"}, ts, np.full(len(ts), 5.0))]
    server = start_prometheus(series)
    try:
        settings = PrometheusSettings(server.url, retries=1)
        held = metric_condition('shaper_test_rps{service="shop"}', ">", 250, 600)
        not_held = metric_condition('shaper_test_rps{service="blog"}', ">", 250, 600)
        assert instant_value(settings, held) == 1.0
        assert instant_value(settings, not_held) == 0.0
        assert instant_value(settings, metric_condition('absent_metric_xyz', ">", 1, 0)) is None
    finally:
        server.stop()


def test_a_profile_whose_trigger_cannot_be_evaluated_is_skipped_and_the_others_are_selected(caplog):
    """A cron that never fires, as an older version stored it (the model now refuses it): built
    without validation, as a store row written before the check would be."""
    good = p("good", triggers=[{"kind": "cron", "cron": "0 23 * * *", "timezone": "Europe/Berlin"}])
    bad = p("never", resource="memory", triggers=[{"kind": "cron", "cron": "0 23 * * *"}])
    trigger = bad.trigger_conditions[0]
    object.__setattr__(trigger, "cron", "0 0 31 2 *")
    with caplog.at_level("WARNING"):
        d = decide([bad, good])
    assert d["good"].chosen
    assert not d["never"].chosen and d["never"].why.startswith("skipped")
    assert "'never'" in caplog.text


def test_naming_profiles_rehearses_only_those_even_when_a_trigger_fires():
    # The main job names its 8-second rehearsal; at 02:xx UTC the nightly backup's cron had fired
    # too, and the 90-minute backup was sent along (and refused by the local agent's cap).
    profiles = [p("named"), p("backup", triggers=[{"kind": "event", "event": "go"}])]
    d = decide(profiles, events={"go"}, requested={"named"})
    assert d["named"].chosen
    assert not d["backup"].chosen and "only the profiles named" in d["backup"].why
