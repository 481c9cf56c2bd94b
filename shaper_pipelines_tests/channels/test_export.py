"""The Prometheus export: the exposition built from hand-made frames (windows, percentiles, the
planned and the minimum capacity, escaping) through prometheus_client, pushes to a real
Pushgateway that a real Prometheus scrapes (the values come back through its HTTP API, a second
push replaces the group), and the ``prometheus_export`` asset both ways: pushed, and written as a
textfile under SHAPER_HOME, which ``promtool check metrics`` passes."""

from __future__ import annotations

import http.server
import threading
import time

import dagster as dg
import pandas as pd
import pytest

from shaper_pipelines.lib.export import (PushError, build_exposition, escape_label_value, model_family,
                                         prediction_samples, push, push_url, render, sample)
from shaper_pipelines.lib.prometheus import HttpAccess
from shaper_pipelines_tests.services.postgres import free_port

NOW = pd.Timestamp("2025-03-03 12:02", tz="UTC")
TARGETS = [{"name": "checkout-api-asg", "kind": "asg", "resource": "checkout-api-asg"},
           {"name": "search-api", "kind": "ecs", "resource": "service/prod/search-api"}]
# Every character the text format escapes, and a few it must not.
AWKWARD = 'a "quoted" back\\slash\nnew line, {braces}=, and ünïcode'


def _utilisation(start: pd.Timestamp) -> pd.DataFrame:
    """checkout-api-asg at 5-minute steps from an hour before ``start + 2 min`` on: flat 0.4 / 0.6
    with a peak in the next hour, a higher one later in the day, one in the past (which no window
    may see) and one beyond the day."""
    ts = pd.date_range(start - pd.Timedelta(hours=1), start + pd.Timedelta(hours=30), freq="5min")
    p50 = pd.Series(0.4, index=ts)
    p90 = pd.Series(0.6, index=ts)
    for at, lo, hi in [(start - pd.Timedelta(minutes=30), 1.9, 2.0),  # past: before the step in force
                       (start + pd.Timedelta(minutes=55), 0.7, 0.95),  # inside the next hour
                       (start + pd.Timedelta(hours=1, minutes=5), 0.8, 0.99),  # just past it (13:05 > 13:02)
                       (start + pd.Timedelta(hours=20), 0.9, 1.3),  # inside the day
                       (start + pd.Timedelta(hours=25), 3.0, 5.0)]:  # beyond the day
        p50[at], p90[at] = lo, hi
    p50[start], p90[start] = 0.45, 0.65  # the step in force at NOW (12:00 <= 12:02 < 12:05)
    return pd.DataFrame({"target": "checkout-api-asg", "timestamp": ts, "utilization_p50": p50.to_numpy(),
                         "utilization_p90": p90.to_numpy(), "capacity": 2})


def _plan(start: pd.Timestamp, target: str = "checkout-api-asg") -> pd.DataFrame:
    ts = pd.date_range(start - pd.Timedelta(hours=1), start + pd.Timedelta(hours=30), freq="5min")
    desired = pd.Series(2, index=ts)
    desired[ts < start - pd.Timedelta(minutes=30)] = 10  # an old floor, no longer in force
    desired[(ts >= start + pd.Timedelta(minutes=30))] = 5
    desired[ts == start + pd.Timedelta(hours=23)] = 8  # the day's peak
    desired[ts >= start + pd.Timedelta(hours=24, minutes=5)] = 12  # after the day
    return pd.DataFrame({"target": target, "timestamp": ts, "desired_capacity": desired.to_numpy(),
                         "launch_at": ts - pd.Timedelta(minutes=5), "planned_demand": 1.0, "reason": "r",
                         "plan_id": 7})


FORECASTS = {
    "checkout-api:requests": {"target": "checkout-api", "metric": "requests", "model": "ensemble(daily_profile+prophet)",
                              "mase": 0.62, "beats_naive": True, "step": 300.0},
    "search-api:requests": {"target": "search-api", "metric": "requests", "model": "seasonal_naive_day",
                            "mase": 1.35, "beats_naive": False, "step": 300.0},
}


def _values(samples) -> dict:
    return {(s.name, tuple(sorted(s.labels))): s.value for s in samples}


def _key(name: str, **labels) -> tuple:
    return name, tuple(sorted(labels.items()))


def test_windows_and_percentiles_from_a_hand_made_forecast_and_plan():
    start = NOW.floor("5min")
    got = _values(prediction_samples(utilisation=_utilisation(start), plan=_plan(start), forecasts=FORECASTS,
                                     targets=TARGETS, now=NOW))
    u = {"target": "checkout-api-asg", "resource": "checkout-api-asg"}
    minimum, planned = {**u, "capacity": "minimum"}, {**u, "capacity": "planned"}
    c = {"target": "checkout-api-asg", "group": "checkout-api-asg", "kind": "asg"}
    expected = {
        # At the minimum of 2 instances, as utilisation_forecast holds it.
        _key("shaper_predicted_utilization_ratio", **minimum, percentile="p50", window="now"): 0.45,
        _key("shaper_predicted_utilization_ratio", **minimum, percentile="p90", window="now"): 0.65,
        _key("shaper_predicted_utilization_ratio", **minimum, percentile="p50", window="next_1h"): 0.7,
        _key("shaper_predicted_utilization_ratio", **minimum, percentile="p90", window="next_1h"): 0.95,
        _key("shaper_predicted_utilization_ratio", **minimum, percentile="p50", window="next_24h"): 0.9,
        _key("shaper_predicted_utilization_ratio", **minimum, percentile="p90", window="next_24h"): 1.3,
        # At the plan's floor: 2 now, 5 from 12:30 (so the 12:55 peak is 0.95 x 2/5 = 0.38 and the
        # +20 h one 1.3 x 2/5 = 0.52), 8 at +23 h: the step in force now stays the highest.
        _key("shaper_predicted_utilization_ratio", **planned, percentile="p50", window="now"): 0.45,
        _key("shaper_predicted_utilization_ratio", **planned, percentile="p90", window="now"): 0.65,
        _key("shaper_predicted_utilization_ratio", **planned, percentile="p50", window="next_1h"): 0.45,
        _key("shaper_predicted_utilization_ratio", **planned, percentile="p90", window="next_1h"): 0.65,
        _key("shaper_predicted_utilization_ratio", **planned, percentile="p50", window="next_24h"): 0.45,
        _key("shaper_predicted_utilization_ratio", **planned, percentile="p90", window="next_24h"): 0.65,
        _key("shaper_planned_capacity", **c): 2.0,
        _key("shaper_planned_capacity_max", **c, window="next_24h"): 8.0,
        # The family of the model, never its free-text blend.
        _key("shaper_forecast_mase", target="checkout-api", metric="requests", model_family="ensemble"): 0.62,
        _key("shaper_forecast_mase", target="search-api", metric="requests", model_family="seasonal_naive"): 1.35,
        _key("shaper_forecast_beats_naive", target="checkout-api", metric="requests"): 1.0,
        _key("shaper_forecast_beats_naive", target="search-api", metric="requests"): 0.0,
        _key("shaper_export_timestamp_seconds"): NOW.timestamp(),
    }
    assert got == pytest.approx(expected)


def test_utilisation_at_the_plan_follows_the_floor_in_force_at_each_step():
    """A plan that raises the floor ahead of a peak: at the minimum the peak is 4.5 times full, at
    the plan's floor it is what the plan meant it to be; past the plan, nothing is claimed."""
    start = NOW.floor("5min")
    ts = pd.date_range(start, periods=12, freq="5min")
    p90 = [0.5] * 4 + [4.5] * 4 + [0.5] * 4  # at 1 instance
    utilisation = pd.DataFrame({"target": "checkout-api-asg", "timestamp": ts, "utilization_p50": [v * 0.8 for v in p90],
                                "utilization_p90": p90, "capacity": 1})
    plan = pd.DataFrame({"target": "checkout-api-asg", "timestamp": ts[:10], "desired_capacity": [1] * 3 + [6] * 5 + [1] * 2})
    from shaper_pipelines.lib.capacity import utilisation_at_plan

    at_plan = utilisation_at_plan(utilisation, plan)
    assert at_plan["capacity"].tolist() == [1, 1, 1, 6, 6, 6, 6, 6, 1, 1, 1]  # the last floor holds one more step
    assert at_plan["utilization_p90"].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5 / 6] + [0.75] * 4 + [0.5] * 3)
    got = {(d["capacity"], d["window"]): s.value for s in prediction_samples(
        utilisation=utilisation, plan=plan, forecasts={}, now=start)
        if s.name == "shaper_predicted_utilization_ratio" and (d := dict(s.labels))["percentile"] == "p90"}
    assert got == pytest.approx({("minimum", "now"): 0.5, ("minimum", "next_1h"): 4.5, ("minimum", "next_24h"): 4.5,
                                 ("planned", "now"): 0.5, ("planned", "next_1h"): 0.75, ("planned", "next_24h"): 0.75})
    # Without a plan there is no planned basis, and no other target's plan stands in for it.
    names = {dict(s.labels)["capacity"] for s in prediction_samples(
        utilisation=utilisation, plan=plan.assign(target="other"), forecasts={}, now=start)
        if s.name == "shaper_predicted_utilization_ratio"}
    assert names == {"minimum"}


def test_model_labels_are_a_fixed_set_of_families():
    assert model_family("prophet") == "prophet"
    assert model_family("0.62*daily_profile + 0.38*prophet") == model_family("0.5*prophet + 0.5*recent_level") == \
        "ensemble"
    assert model_family("seasonal_naive_day (fallback)") == model_family("seasonal_naive_week") == "seasonal_naive"
    assert model_family("leveled_profile") == model_family("business_profile") == model_family("like_days") == \
        "profile"
    assert model_family("holt_winters") == model_family("mstl_level") == "statistical"
    assert model_family("something new") == model_family(None) == "other"
    from shaper_pipelines.lib.forecast import CANDIDATES

    families = {model_family(m) for m in CANDIDATES}
    assert "other" not in families and len(families | {"ensemble", "other"}) <= 7


def test_the_step_in_force_follows_now_and_a_spent_forecast_exports_nothing_but_the_time():
    start = NOW.floor("5min")
    frame = _utilisation(start)

    def now_p90(at):
        return {dict(s.labels)["window"]: s.value for s in prediction_samples(
            utilisation=frame, plan=frame.iloc[:0], forecasts={}, now=at)
            if s.name == "shaper_predicted_utilization_ratio" and dict(s.labels)["percentile"] == "p90"
            and dict(s.labels)["capacity"] == "minimum"}

    assert now_p90(start + pd.Timedelta(minutes=54, seconds=59))["now"] == 0.6  # 12:50's step, not 12:55's
    assert now_p90(start + pd.Timedelta(minutes=55))["now"] == 0.95
    # The windows start with the step in force, though it began before now.
    # (and the day now reaches the peak at +25 h)
    assert now_p90(start + pd.Timedelta(hours=1, minutes=6)) == {"now": 0.99, "next_1h": 0.99, "next_24h": 5.0}
    # A forecast starting at the next step is in force from one step before it.
    first = frame["timestamp"].iloc[0]
    assert now_p90(first - pd.Timedelta(minutes=4))["now"] == frame["utilization_p90"].iloc[0]
    assert "now" not in now_p90(first - pd.Timedelta(minutes=6))
    # Naive timestamps are UTC.
    naive = frame.assign(timestamp=frame["timestamp"].dt.tz_localize(None))
    assert prediction_samples(utilisation=naive, plan=naive.iloc[:0], forecasts={}, now=NOW.tz_localize(None)) == \
        prediction_samples(utilisation=frame, plan=frame.iloc[:0], forecasts={}, now=NOW)
    spent = frame["timestamp"].iloc[-1] + pd.Timedelta(minutes=5)
    samples = prediction_samples(utilisation=frame, plan=_plan(start), forecasts={}, now=spent)
    assert [s.name for s in samples] == ["shaper_export_timestamp_seconds"]


def test_unknown_targets_get_empty_labels_and_partition_keys_fill_in_the_series():
    start = NOW.floor("5min")
    samples = prediction_samples(utilisation=_utilisation(start).iloc[:0], plan=_plan(start, "not-configured"),
                                 forecasts={"api:cpu": {"model": "m", "mase": float("nan"), "beats_naive": None}},
                                 now=NOW)
    by_name = {s.name: dict(s.labels) for s in samples}
    assert by_name["shaper_planned_capacity"] == {"target": "not-configured", "group": "not-configured", "kind": ""}
    assert by_name["shaper_forecast_mase"] == {"target": "api", "metric": "cpu", "model_family": "other"}
    assert "shaper_forecast_beats_naive" not in by_name
    assert 'shaper_forecast_mase{metric="cpu",model_family="other",target="api"} NaN' in render(samples).splitlines()


def test_label_values_and_help_are_escaped_and_families_are_grouped():
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render([sample("x_total", 1, a=AWKWARD), sample("y", float("inf")), sample("x_total", -0.5, a="plain"),
                   sample("y", float("-inf"), b="1")])
    assert text.splitlines() == [
        "# HELP x_total x total",
        "# TYPE x_total gauge",
        'x_total{a="a \\"quoted\\" back\\\\slash\\nnew line, {braces}=, and ünïcode"} 1.0',
        'x_total{a="plain"} -0.5',
        "# HELP y y",
        "# TYPE y gauge",
        "y +Inf",
        'y{b="1"} -Inf',
    ]
    with pytest.raises(ValueError, match="duplicate series"):
        render([sample("y", 1, a="1"), sample("y", 2, a="1")])
    with pytest.raises(ValueError, match="label name"):
        sample("y", 1, **{"bad-name": "1"})
    with pytest.raises(ValueError, match="metric name"):
        sample("1y", 1)
    body = build_exposition(utilisation=_utilisation(NOW.floor("5min")), plan=_plan(NOW.floor("5min")),
                            forecasts=FORECASTS, targets=TARGETS, now=NOW)
    assert body.endswith("\n") and "# HELP shaper_forecast_mase Backtest MAE of the forecast divided by seasonal " \
                                   "naive's (below 1 beats seasonal naive).\n# TYPE shaper_forecast_mase gauge\n" in body


def test_push_urls_encode_what_a_path_cannot_hold():
    assert push_url("http://gw:9091/", "shaper") == "http://gw:9091/metrics/job/shaper"
    assert push_url("http://gw:9091", "a/b", {"zone": "eu west", "env": ""}) == \
        "http://gw:9091/metrics/job@base64/YS9i/env@base64/=/zone@base64/ZXUgd2VzdA=="
    with pytest.raises(ValueError):
        push_url("http://gw:9091", "")
    with pytest.raises(ValueError):
        push_url("http://gw:9091", "shaper", {"job": "x"})


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers PUTs with the statuses in ``server.script``, in order, recording each request."""

    def log_message(self, *args):
        pass

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, self.headers["Content-Type"], body.decode()))
        status = self.server.script.pop(0)
        payload = b"busy" if status >= 500 else b"nope: bad metric" if status >= 400 else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.seen, server.script = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


M1 = [sample("m", 1)]


def test_push_retries_5xx_with_backoff_and_gives_up_at_once_on_4xx(scripted):
    server, url = scripted
    slept = []
    server.script = [503, 502, 200]
    assert push(url, "shaper", M1, retries=3, backoff_seconds=0.5, sleep=slept.append, access=HttpAccess()) == \
        f"{url}/metrics/job/shaper"
    assert slept == [0.5, 1.0]
    assert server.seen[-1] == ("/metrics/job/shaper", "text/plain; version=0.0.4; charset=utf-8",
                               "# HELP m m\n# TYPE m gauge\nm 1.0\n")
    server.seen.clear(), slept.clear()
    server.script = [400]
    with pytest.raises(PushError, match=r"refused the push .* HTTP 400 .*nope: bad metric"):
        push(url, "shaper", M1, retries=3, sleep=slept.append, access=HttpAccess())
    assert len(server.seen) == 1 and slept == []
    server.script = [500, 500, 500]
    with pytest.raises(PushError, match=r"after 3 tries \(HTTP 500 .*busy\)"):
        push(url, "shaper", M1, retries=2, backoff_seconds=0.1, sleep=slept.append, access=HttpAccess())
    assert slept == [0.1, 0.2]


def test_an_unreachable_gateway_is_a_clear_error_after_the_retries():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    slept = []
    with pytest.raises(PushError) as caught:
        push(url, "shaper", M1, timeout=2, retries=2, backoff_seconds=0.25, sleep=slept.append)
    message = str(caught.value)
    assert url in message and "after 3 tries" in message and "refused" in message.lower()
    assert "nothing was pushed" in message and slept == [0.25, 0.5]


# --- a real Pushgateway, scraped by a real Prometheus ---------------------------------------------

@pytest.fixture(scope="module")
def stack():
    from shaper_pipelines_tests.services.prometheus import start_prometheus
    from shaper_pipelines_tests.services.pushgateway import start_pushgateway

    gateway = start_pushgateway()
    try:
        prometheus = start_prometheus(scrape_interval="1s", scrape_configs=[{
            "job_name": "pushgateway", "honor_labels": True, "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": [gateway.address]}]}])
    except BaseException:
        gateway.stop()
        raise
    yield gateway, prometheus
    prometheus.stop()
    gateway.stop()


def _wait_for(prometheus, promql: str, predicate, timeout: float = 15.0):
    """Query until ``predicate(result)`` holds (the next scrape has landed); return the result."""
    deadline = time.monotonic() + timeout
    while True:
        result = prometheus.query(promql)
        if predicate(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{promql}: still {result} after {timeout:.0f}s")
        time.sleep(0.2)


def _by_labels(result, *names) -> dict:
    return {tuple(r["metric"].get(n, "") for n in names): float(r["value"][1]) for r in result}


def test_pushed_predictions_come_back_through_prometheus(stack):
    gateway, prometheus = stack
    start = NOW.floor("5min")
    now = NOW.timestamp()
    samples = prediction_samples(utilisation=_utilisation(start), plan=_plan(start), forecasts=FORECASTS,
                                 targets=TARGETS, now=NOW)
    push(gateway.url, "shaper", [*samples, sample("shaper_test_escape", 3.5, target=AWKWARD)], timeout=5)
    stamp = _wait_for(prometheus, 'shaper_export_timestamp_seconds{job="shaper"}',
                      lambda r: r and float(r[0]["value"][1]) == now)
    assert stamp[0]["metric"]["job"] == "shaper"  # honor_labels: the push's job, not the scrape job's
    p90 = prometheus.query('shaper_predicted_utilization_ratio{job="shaper",percentile="p90",capacity="minimum"}')
    assert _by_labels(p90, "target", "resource", "window") == {
        ("checkout-api-asg", "checkout-api-asg", "now"): 0.65,
        ("checkout-api-asg", "checkout-api-asg", "next_1h"): 0.95,
        ("checkout-api-asg", "checkout-api-asg", "next_24h"): 1.3}
    assert _by_labels(prometheus.query('shaper_planned_capacity{job="shaper"}'), "group", "kind") == \
        {("checkout-api-asg", "asg"): 2.0}
    assert _by_labels(prometheus.query('shaper_planned_capacity_max{job="shaper"}'), "group", "window") == \
        {("checkout-api-asg", "next_24h"): 8.0}
    assert _by_labels(prometheus.query('shaper_forecast_mase{job="shaper"} > 1'), "target", "model_family") == \
        {("search-api", "seasonal_naive"): 1.35}
    planned = prometheus.query('shaper_predicted_utilization_ratio{job="shaper",percentile="p90",capacity="planned"}')
    assert _by_labels(planned, "window") == pytest.approx({("now",): 0.65, ("next_1h",): 0.65, ("next_24h",): 0.65})
    assert _by_labels(prometheus.query('shaper_forecast_beats_naive{job="shaper"}'), "target") == \
        {("checkout-api",): 1.0, ("search-api",): 0.0}
    escaped = prometheus.query('shaper_test_escape{job="shaper"}')
    assert [(r["metric"]["target"], r["value"][1]) for r in escaped] == [(AWKWARD, "3.5")]


def test_a_second_push_replaces_the_group(stack):
    gateway, prometheus = stack
    first = [sample("shaper_planned_capacity", 4, target="a", group="a", kind="asg"),
             sample("shaper_planned_capacity", 6, target="b", group="b", kind="ecs"),
             sample("shaper_export_timestamp_seconds", 1000)]
    push(gateway.url, "shaper-replace", first, timeout=5)
    _wait_for(prometheus, 'shaper_planned_capacity{job="shaper-replace"}', lambda r: len(r) == 2)
    second = [sample("shaper_planned_capacity", 9, target="a", group="a", kind="asg"),
              sample("shaper_export_timestamp_seconds", 2000)]
    push(gateway.url, "shaper-replace", second, timeout=5)
    # At once on the gateway: b is gone (a PUT replaces, a POST would have kept it).
    scraped = [line for line in gateway.metrics().splitlines() if 'job="shaper-replace"' in line]
    assert any(line.startswith("shaper_planned_capacity{") and 'group="a"' in line and line.endswith(" 9")
               for line in scraped)
    assert not any('group="b"' in line for line in scraped)
    # And in Prometheus after the next scrape, which marks b stale.
    result = _wait_for(prometheus, 'shaper_planned_capacity{job="shaper-replace"}',
                       lambda r: _by_labels(r, "group") == {("a",): 9.0})
    assert len(result) == 1
    # Another job's group is untouched by it.
    assert prometheus.query('shaper_export_timestamp_seconds{job="shaper"}')


def test_the_gateway_refuses_a_bad_push_with_its_reason(stack):
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import GaugeMetricFamily

    class Stamped:  # a sample timestamp, which shaper never exports
        def collect(self):
            family = GaugeMetricFamily("shaper_export_timestamp_seconds", "stamped")
            family.add_metric([], 1, timestamp=1700000000)
            yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Stamped())
    gateway, _ = stack
    with pytest.raises(PushError, match="HTTP 400.*must not have timestamps"):
        push(gateway.url, "shaper-bad", registry, timeout=5)


# --- the asset ------------------------------------------------------------------------------------

def _materialise_export(resource, raise_on_error: bool = True):
    """prometheus_export with its upstream values served by a stand-in IO manager: the assets that
    compute them (history, forecasts, plans) are far too heavy for this test."""
    from shaper_pipelines.defs.channels.export import prometheus_export
    from shaper_pipelines.defs.forecast.assets import series_partitions
    from shaper_pipelines.resources.database import DatabaseResource

    start = pd.Timestamp.now(tz="UTC").floor("5min")
    values = {"utilisation_forecast": _utilisation(start), "scaling_plan": _plan(start), "demand_forecast": FORECASTS,
              "capacity_model": pd.DataFrame({"target": ["checkout-api-asg", "search-api"],
                                              "capacity_per_instance": [25.0, 60.0]})}

    class Upstream(dg.ConfigurableIOManager):
        def handle_output(self, context, obj):
            assert obj is None  # the export returns metadata only

        def load_input(self, context):
            return values[context.asset_key.to_user_string()]

    # The database under SHAPER_HOME holds no history: no actual utilisation is exported.
    return dg.materialize(
        [prometheus_export, dg.AssetSpec("utilisation_forecast"), dg.AssetSpec("scaling_plan"),
         dg.AssetSpec("demand_forecast", partitions_def=series_partitions), dg.AssetSpec("capacity_model")],
        resources={"io_manager": Upstream(), "pushgateway": resource, "database": DatabaseResource()},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error)


def test_the_asset_pushes_to_the_gateway_named_by_the_environment(stack, monkeypatch, tmp_path):
    from shaper_pipelines.resources.pushgateway import PushgatewayResource

    gateway, prometheus = stack
    monkeypatch.setenv("SHAPER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHAPER_PUSHGATEWAY_URL", gateway.url)
    before = time.time()
    result = _materialise_export(PushgatewayResource.from_env())
    assert result.success
    meta = result.asset_materializations_for_node("prometheus_export")[0].metadata
    assert meta["destination"].value == "pushgateway"
    assert meta["where"].value == f"{gateway.url}/metrics/job/shaper"
    assert meta["series"].value == 19  # 12 utilisation (6 planned, 6 minimum), 2 capacity, 2 MASE, 2 beats-naive, 1 time
    assert "shaper_planned_capacity{" in meta["sample"].value
    assert not (tmp_path / "home" / "export").exists()  # pushed, not written
    stamp = _wait_for(prometheus, 'shaper_export_timestamp_seconds{job="shaper"}',
                      lambda r: r and float(r[0]["value"][1]) >= before)
    assert float(stamp[0]["value"][1]) <= time.time()
    now_p90 = prometheus.query('shaper_predicted_utilization_ratio{job="shaper",percentile="p90",window="now",'
                               'capacity="planned"}')
    assert _by_labels(now_p90, "target") == {("checkout-api-asg",): 0.65}


def test_the_asset_without_a_gateway_writes_the_textfile_atomically(monkeypatch, tmp_path):
    from shaper_pipelines.resources.pushgateway import PushgatewayResource

    home = tmp_path / "home"
    monkeypatch.setenv("SHAPER_HOME", str(home))
    monkeypatch.delenv("SHAPER_PUSHGATEWAY_URL", raising=False)
    result = _materialise_export(PushgatewayResource.from_env())
    assert result.success
    meta = result.asset_materializations_for_node("prometheus_export")[0].metadata
    path = home.resolve() / "export" / "shaper.prom"
    assert meta["destination"].value == "textfile" and meta["where"].value == str(path)
    assert "SHAPER_PUSHGATEWAY_URL is not set" in meta["note"].value
    text = path.read_text()
    assert meta["series"].value == sum(1 for line in text.splitlines() if not line.startswith("#")) == 19
    assert 'shaper_planned_capacity{group="checkout-api-asg",kind="asg",target="checkout-api-asg"} 2.0' in text
    # The real export passes Prometheus's own linter: exit 0, not a word said.
    checked = _promtool_check(path.read_bytes())
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, b"")
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["shaper.prom"]  # no temporary file left behind
    # A second export replaces the file whole.
    assert _materialise_export(PushgatewayResource.from_env()).success
    assert [p.name for p in path.parent.iterdir()] == ["shaper.prom"]
    assert path.read_text().count("# TYPE shaper_export_timestamp_seconds gauge") == 1


def test_the_asset_fails_clearly_when_the_gateway_is_unreachable(monkeypatch, tmp_path):
    from shaper_pipelines.resources.pushgateway import PushgatewayResource

    monkeypatch.setenv("SHAPER_HOME", str(tmp_path / "home"))
    url = f"http://127.0.0.1:{free_port()}"
    result = _materialise_export(PushgatewayResource(url=url, retries=1, backoff_seconds=0.01, timeout_seconds=2),
                                 raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"Pushgateway at {url} could not be reached" in failure.event_specific_data.error.message


def _promtool_check(body: bytes):
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (scripts/install test)"
    return subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)


def test_the_exposition_passes_promtool_check_metrics():
    """The exposition is valid and lint-free, as Prometheus's own linter says (exit 0, nothing
    said), with every family, both capacity bases and every escaped character in it; and the
    linter does fail what it should: a parse error (1) and a lint finding (3), such as the
    quantile label on a gauge the export once had."""
    samples = prediction_samples(utilisation=_utilisation(NOW.floor("5min")), plan=_plan(NOW.floor("5min")),
                                 forecasts=FORECASTS, targets=TARGETS, now=NOW,
                                 observed=pd.DataFrame({"target": ["checkout-api-asg"], "demand": [31.0],
                                                        "min_capacity": [2], "capacity_per_instance": [25.0]}))
    body = render([*samples, sample("shaper_test_escape", 1, target=AWKWARD)])
    assert {s.name for s in samples} == {
        "shaper_predicted_utilization_ratio", "shaper_actual_utilization_ratio", "shaper_planned_capacity",
        "shaper_planned_capacity_max", "shaper_forecast_mase", "shaper_forecast_beats_naive",
        "shaper_export_timestamp_seconds"}
    checked = _promtool_check(body.encode())
    assert (checked.returncode, (checked.stdout + checked.stderr).decode()) == (0, "")
    broken = _promtool_check(b'x{a="1} 1\n')
    assert broken.returncode == 1 and b"parsing error" in broken.stdout + broken.stderr
    linted = _promtool_check(b'# HELP g g\n# TYPE g gauge\ng{quantile="0.9"} 1\n')
    assert linted.returncode == 3 and b'should not have "quantile" label' in linted.stdout + linted.stderr
