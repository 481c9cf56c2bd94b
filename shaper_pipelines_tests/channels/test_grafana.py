"""The Grafana dashboard (deploy/grafana): no Grafana runs here, so its JSON is checked for what
Grafana needs (unique panel ids, a datasource on every panel and query, a layout that fits), and
every panel query is run, its template variables substituted the way Grafana substitutes them,
against a real Prometheus that scrapes a real Pushgateway holding shaper's export and a real load
agent running a small memory rehearsal: each must be accepted and return data.

The actual utilisation the dashboards set against the prediction is tested here too: built by
lib/export from the latest observed demand, and read from the metric store by the asset."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from shaper_pipelines.lib.export import build_exposition, prediction_samples, push
from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process

PROJECT = Path(__file__).resolve().parents[2]
GRAFANA = PROJECT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "shaper.json"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "shaper.yaml"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
AGENT_TOKEN = "grafana-test-token"
# Grafana's built-in variables, as it would fill them in for a short time range.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "5m",
            "__range_s": "300", "__range_ms": "300000"}
# $name, [[name]] or [[name:format]], ${name} or ${name:format} (Grafana's variable syntaxes).
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def query_panels(dashboard: dict) -> list[dict]:
    """Every panel but the rows, including those a collapsed row holds."""
    out = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def structural_problems(dashboard: dict) -> list[str]:
    """What would keep Grafana from showing the dashboard as meant; empty when nothing."""
    problems = []
    if not 36 <= dashboard.get("schemaVersion", 0) <= 41:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} (expected about 39)")
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("no uid or title")
    every = dashboard["panels"] + [p for r in dashboard["panels"] if r.get("type") == "row" for p in r.get("panels", [])]
    ids = [p.get("id") for p in every]
    if len(ids) != len(set(ids)) or not all(isinstance(i, int) for i in ids):
        problems.append(f"panel ids are not unique integers: {ids}")
    boxes = []
    for p in every:
        name = f"panel {p.get('id')} ({p.get('title')!r})"
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["w"] < 1 or g["h"] < 1 or g["x"] < 0 \
                or g["x"] + g["w"] > 24:
            problems.append(f"{name}: gridPos {g} is not a box inside the 24-column grid")
            continue
        for other, box in boxes:
            if g["x"] < box["x"] + box["w"] and box["x"] < g["x"] + g["w"] and \
                    g["y"] < box["y"] + box["h"] and box["y"] < g["y"] + g["h"]:
                problems.append(f"{name} overlaps {other}")
        boxes.append((name, g))
        if p.get("type") == "row":
            continue
        if p.get("type") not in ("timeseries", "stat"):
            problems.append(f"{name}: type {p.get('type')!r}")
        if p.get("datasource") != DATASOURCE_REF:
            problems.append(f"{name}: datasource {p.get('datasource')} is not the $datasource variable")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{name}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)) or not all(refs):
            problems.append(f"{name}: refIds {refs} are not unique and non-empty")
        for t in targets:
            if t.get("datasource") != DATASOURCE_REF:
                problems.append(f"{name} query {t.get('refId')}: datasource {t.get('datasource')}")
            if not str(t.get("expr", "")).strip():
                problems.append(f"{name} query {t.get('refId')}: no expr")
    declared = set(variables(dashboard)) | set(BUILTINS)
    for p in query_panels(dashboard):
        for t in p.get("targets", []):
            for m in _VARIABLE.finditer(t.get("expr", "")):
                if (m.group(1) or m.group(2) or m.group(4)) not in declared:
                    problems.append(f"panel {p.get('id')} query {t.get('refId')}: undeclared variable {m.group(0)}")
    return problems


# --- Grafana's substitution of template variables ---------------------------------------------------

def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a value of a multi-value or include-all variable
    goes into a regex inside a PromQL string, so regex metacharacters get a backslash that the
    string literal itself must escape (``.`` becomes ``\\\\.``)."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def variable_value(variable: dict, chosen: list[str] | None, every: list[str]) -> str:
    """What Grafana puts in the query for ``chosen`` values (None: All) of a multi-value,
    include-all variable: the allValue as is, or the escaped values as one alternation."""
    if chosen is None and variable.get("allValue") is not None:
        return variable["allValue"]
    escaped = [regex_escape(v) for v in (every if chosen is None else chosen)]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, values: dict[str, str]) -> str:
    def substitute(m: re.Match) -> str:
        name, fmt = m.group(1) or m.group(2) or m.group(4), m.group(3) or m.group(5)
        if fmt:
            raise ValueError(f"{m.group(0)}: formats are not substituted here")
        if name not in values:
            raise KeyError(f"{m.group(0)} in {expr!r} is not a variable of the dashboard")
        return values[name]

    return _VARIABLE.sub(substitute, expr)


# --- asking Prometheus --------------------------------------------------------------------------------

def _api(url: str, path: str, params: list[tuple[str, str]]) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"status": "error", "error": body}


def check_expression(url: str, expr: str, *, instant: bool, now: float | None = None) -> str | None:
    """None when Prometheus accepts ``expr`` (HTTP 200, status success) and returns at least one
    series, as an instant query or a range query over the last five minutes (what Grafana runs
    for the panel); else what is wrong."""
    now = time.time() if now is None else now
    if instant:
        status, answer = _api(url, "/api/v1/query", [("query", expr), ("time", f"{now:.3f}")])
    else:
        status, answer = _api(url, "/api/v1/query_range", [("query", expr), ("start", f"{now - 300:.3f}"),
                                                             ("end", f"{now:.3f}"), ("step", "15")])
    if status != 200 or answer.get("status") != "success":
        return f"HTTP {status}, {answer.get('errorType', '')}: {answer.get('error', answer)}"
    if not answer["data"]["result"]:
        return "no series"
    return None


def label_values(url: str, query: str) -> list[str]:
    """A ``label_values(selector, label)`` variable query, answered the way Grafana asks it."""
    m = _LABEL_VALUES.match(query)
    assert m, f"{query!r} is not label_values(selector, label)"
    status, answer = _api(url, f"/api/v1/label/{m.group(2)}/values", [("match[]", m.group(1).strip())])
    assert status == 200 and answer["status"] == "success", answer
    return sorted(answer["data"])


# --- what gets pushed ---------------------------------------------------------------------------------

def scaling_targets():
    from shaper_pipelines.config import load_scaling

    return load_scaling().targets


def export_frames(now: pd.Timestamp, targets) -> dict:
    """A day-and-a-half of forecast utilisation and plan per configured target (a daily wave at
    5-minute steps), forecasts of their series with MASE and the latest observed demand."""
    start = now.floor("5min") - pd.Timedelta(hours=1)
    ts = pd.date_range(start, start + pd.Timedelta(hours=36), freq="5min")
    phase = 2 * np.pi * ((ts.hour * 60 + ts.minute) / 1440).to_numpy()
    utilisation, plans, forecasts, observed = [], [], {}, []
    for i, t in enumerate(targets):
        p50 = 0.45 + 0.3 * np.sin(phase + i)
        p90 = 1.25 * p50
        # The demand behind it, at 60 per instance: what the objective's ratio is taken from.
        utilisation.append(pd.DataFrame({"target": t.name, "timestamp": ts, "utilization_p50": p50,
                                         "utilization_p90": p90, "capacity": t.min_capacity,
                                         "demand_p50": p50 * t.min_capacity * 60, "demand_p90": p90 * t.min_capacity * 60}))
        desired = np.clip(np.ceil(p90 * t.min_capacity / t.target_utilization), t.min_capacity, t.max_capacity)
        plans.append(pd.DataFrame({"target": t.name, "timestamp": ts, "desired_capacity": desired}))
        key = f"{t.history.target}:{t.history.metric}"
        forecasts[key] = {"target": t.history.target, "metric": t.history.metric, "model": "daily_profile",
                          "mase": 0.7 + 0.6 * i, "beats_naive": i == 0}
        # search-api's capacity comes from its rehearsals (capacity_model), not scaling.yaml; the
        # dashboards need only a figure for it.
        observed.append({"target": t.name, "demand": 31.0 + 20 * i, "min_capacity": t.min_capacity,
                         "capacity_per_instance": t.capacity_per_instance or 60.0})
    # Each as if its capacity came from a rehearsal that broke its p95 objective at 55 per instance
    # (search-api's does; the panel test picks checkout-api-asg, and every query must have data).
    response = {t.name: {"capacity": 55.0, "objective": "p95 under 125 ms, errors under 1.0%", "curve": None}
                for t in targets}
    return {"utilisation": pd.concat(utilisation, ignore_index=True), "plan": pd.concat(plans, ignore_index=True),
            "forecasts": forecasts, "observed": pd.DataFrame(observed), "response": response}


# --- structure ------------------------------------------------------------------------------------------

def test_the_dashboard_is_well_formed_grafana_json():
    dashboard = load_dashboard()
    assert structural_problems(dashboard) == []
    assert dashboard["schemaVersion"] == 39
    names = variables(dashboard)
    assert names["datasource"]["type"] == "datasource" and names["datasource"]["query"] == "prometheus"
    target = names["target"]
    assert target["type"] == "query" and target["datasource"] == DATASOURCE_REF
    assert target["definition"] == target["query"]["query"] == "label_values(shaper_planned_capacity, target)"
    for name in ("target", "series", "agent"):
        assert names[name]["multi"] and names[name]["includeAll"]
    rows = [p["title"] for p in load_dashboard()["panels"] if p["type"] == "row"]
    assert rows == ["Utilisation: predicted against actual", "Capacity: the scaling plan", "Forecast accuracy",
                    "Simulation fidelity: load agents", "Export freshness"]


def test_the_dashboard_shows_what_it_promises():
    panels = query_panels(load_dashboard())
    exprs = [t["expr"] for p in panels for t in p["targets"]]

    def has(*parts):
        return any(all(part in e for part in parts) for e in exprs)

    assert has("shaper_predicted_utilization_ratio", 'window="now"')
    assert has("shaper_predicted_utilization_ratio", "next_1h|next_24h")
    # The peaks the alerts judge are shown at the planned capacity; the prediction set against the
    # actual utilisation is on the actual's basis, the minimum.
    assert has("shaper_predicted_utilization_ratio", 'capacity="planned"', "next_1h|next_24h")
    assert has("shaper_predicted_utilization_ratio", 'capacity="minimum"', 'window="now"')
    assert not any("quantile" in e for e in exprs)  # the label the export no longer has
    assert has("shaper_actual_utilization_ratio")
    # predicted and actual in one panel, per target
    assert any({"shaper_predicted_utilization_ratio", "shaper_actual_utilization_ratio"} <=
               {m for t in p["targets"] for m in re.findall(r"shaper_\w+", t["expr"])} for p in panels)
    assert all('target=~"$target"' in e for e in exprs if "utilization_ratio" in e or "planned_capacity" in e)
    assert has("shaper_planned_capacity{") and has("shaper_planned_capacity_max", 'window="next_24h"')
    assert has("shaper_forecast_beats_naive")
    mase = next(p for p in panels if p["type"] == "timeseries" and
                any("shaper_forecast_mase" in t["expr"] for t in p["targets"]))
    defaults = mase["fieldConfig"]["defaults"]
    assert {"color": "red", "value": 1} in defaults["thresholds"]["steps"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert has("shaper_agent_target_load") and has("shaper_agent_achieved_load")
    assert has("abs(shaper_agent_achieved_load", "- shaper_agent_target_load", "/ (shaper_agent_target_load")
    assert "time() - shaper_export_timestamp_seconds" in exprs


def test_the_structural_check_can_fail():
    good = load_dashboard()
    broken = copy.deepcopy(good)
    panels = query_panels(broken)
    panels[1]["id"] = panels[0]["id"]
    panels[2]["datasource"] = {"type": "prometheus", "uid": "some-fixed-uid"}
    panels[3]["targets"][0]["refId"] = ""
    panels[4]["gridPos"]["x"] -= 2
    panels[5]["targets"][0]["expr"] = "shaper_planned_capacity{target=~\"$tagret\"}"
    panels[6]["gridPos"]["w"] = 30
    broken["schemaVersion"] = 16
    problems = "\n".join(structural_problems(broken))
    for expected in ("ids are not unique", "is not the $datasource variable", "refIds", "overlaps",
                     "undeclared variable $tagret", "inside the 24-column grid", "schemaVersion 16"):
        assert expected in problems, problems


def test_the_provider_points_grafana_at_the_dashboards_folder():
    provider = yaml.safe_load(PROVIDER.read_text())
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["folder"] == "shaper"
    path = entry["options"]["path"]
    assert path.startswith("/") and not path.endswith(".json")
    # The mount that the comment shows maps the repository's folder onto that path.
    assert f'deploy/grafana/dashboards:{path}' in PROVIDER.read_text()
    assert sorted(p.name for p in DASHBOARD.parent.iterdir()) == ["shaper.json"]


def test_grafana_substitution_escapes_like_grafana():
    variable = {"name": "target", "multi": True, "includeAll": True}
    assert variable_value(variable, None, ["a.b", "c"]) == "(a\\\\.b|c)"
    assert variable_value(variable, ["checkout-api-asg"], []) == "checkout-api-asg"
    assert variable_value({**variable, "allValue": ".*"}, None, ["x"]) == ".*"
    assert interpolate('x{t=~"$target"}[$__rate_interval] ${target} [[target]]', {"target": "v", **BUILTINS}) == \
        'x{t=~"v"}[1m] v v'
    with pytest.raises(KeyError, match="tagret"):
        interpolate('x{t=~"$tagret"}', {"target": "v"})


# --- actual utilisation -----------------------------------------------------------------------------------

def test_actual_utilisation_is_observed_demand_at_minimum_capacity():
    now = pd.Timestamp("2025-03-03 12:02", tz="UTC")
    targets = [{"name": "checkout-api-asg", "kind": "asg", "resource": "checkout-api-asg"}]
    observed = pd.DataFrame({"target": ["checkout-api-asg", "search-api", "no-capacity"],
                             "demand": [31.0, 90.0, 5.0], "min_capacity": [2, 3, 1],
                             "capacity_per_instance": [25.0, 60.0, float("nan")]})
    empty = pd.DataFrame(columns=["target", "timestamp", "utilization_p50", "utilization_p90"])
    samples = prediction_samples(utilisation=empty, plan=empty, forecasts={}, targets=targets, now=now,
                                 observed=observed)
    actual = {tuple(sorted(s.labels)): s.value for s in samples if s.name == "shaper_actual_utilization_ratio"}
    minimum = ("capacity", "minimum")
    assert actual == {(minimum, ("resource", "checkout-api-asg"), ("target", "checkout-api-asg")): 31.0 / 50,
                      (minimum, ("resource", ""), ("target", "search-api")): 0.5}  # the one without capacity is left out
    body = build_exposition(utilisation=empty, plan=empty, forecasts={}, now=now, observed=observed.iloc[:1])
    assert 'shaper_actual_utilization_ratio{capacity="minimum",resource="",target="checkout-api-asg"} 0.62' in body
    assert "# TYPE shaper_actual_utilization_ratio gauge" in body
    # Without it (every existing caller), nothing changes.
    assert prediction_samples(utilisation=empty, plan=empty, forecasts={}, now=now) == \
        prediction_samples(utilisation=empty, plan=empty, forecasts={}, now=now, observed=observed.iloc[:0])
    with pytest.raises(ValueError, match="more than one row for checkout-api-asg"):
        prediction_samples(utilisation=empty, plan=empty, forecasts={}, now=now,
                           observed=pd.concat([observed.iloc[:1]] * 2))
    with pytest.raises(ValueError, match="missing: capacity_per_instance"):
        prediction_samples(utilisation=empty, plan=empty, forecasts={}, now=now,
                           observed=observed.drop(columns="capacity_per_instance"))


def test_the_asset_exports_the_latest_measured_demand_from_the_metric_store(tmp_path, monkeypatch):
    """prometheus_export reads the newest measured point of each target's history series (an
    interpolated point after it is not a measurement) and divides it like utilisation_forecast."""
    from shaper_pipelines.defs.channels.export import prometheus_export
    from shaper_pipelines.defs.forecast.assets import series_partitions
    from shaper_pipelines.resources.database import DatabaseResource
    from shaper_pipelines.resources.pushgateway import PushgatewayResource
    from shaper_pipelines.store.metric_store import MetricStore

    monkeypatch.setenv("SHAPER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHAPER_SCALING_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path / 'shaper.db'}"
    day = pd.Timestamp.now(tz="UTC").floor("D")
    index = pd.date_range(day, periods=12, freq="5min")
    values = pd.Series(np.arange(12, dtype=float) * 2 + 10, index=index)  # measured up to 10 + 2 * 10 = 30
    with MetricStore(url) as store:
        store.replace_window("checkout-api", "requests", day, day + pd.Timedelta(days=1), values,
                             filled=np.arange(12) == 11, origin="test")
    targets = {t.name: t for t in scaling_targets()}
    capacity = pd.DataFrame({"target": ["checkout-api-asg", "search-api"], "capacity_per_instance": [25.0, 60.0]})
    inputs = {"utilisation_forecast": pd.DataFrame(columns=["target", "timestamp", "utilization_p50",
                                                            "utilization_p90"]),
              "scaling_plan": pd.DataFrame(columns=["target", "timestamp", "desired_capacity"]),
              "demand_forecast": {}, "capacity_model": capacity}

    class Upstream(dg.ConfigurableIOManager):
        def handle_output(self, context, obj):
            assert obj is None

        def load_input(self, context):
            return inputs[context.asset_key.to_user_string()]

    textfile = tmp_path / "export" / "shaper.prom"
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [prometheus_export, dg.AssetSpec("utilisation_forecast"), dg.AssetSpec("scaling_plan"),
         dg.AssetSpec("demand_forecast", partitions_def=series_partitions), dg.AssetSpec("capacity_model")],
        resources={"io_manager": Upstream(), "database": DatabaseResource(url=url),
                   "pushgateway": PushgatewayResource(textfile_path=str(textfile))},
        instance=instance)
    assert result.success
    expected = 30.0 / (targets["checkout-api-asg"].min_capacity * 25.0)
    assert f'shaper_actual_utilization_ratio{{capacity="minimum",resource="checkout-api-asg",target="checkout-api-asg"}} ' \
           f'{expected!r}' in textfile.read_text().splitlines()
    assert "search-api" not in textfile.read_text()  # no history stored for it: nothing made up
    meta = result.asset_materializations_for_node("prometheus_export")[0].metadata
    assert f"| checkout-api-asg | checkout-api:requests | {index[10]:%Y-%m-%d %H:%M} | 30 | {expected:.3f} |" in \
        meta["actual_utilisation"].value
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(m.startswith("search-api: no stored history of search-api/requests") for m in logged), logged
    assert any(m.startswith("checkout-api-asg: the latest stored demand is from") for m in logged) == \
        (pd.Timestamp.now(tz="UTC") - index[10] > pd.Timedelta(hours=2))


# --- against a real Prometheus --------------------------------------------------------------------------------

class _Agent:
    """A real load agent (``shaper agent``) holding 24 MiB for a minute: cheap, and real metrics."""

    def __init__(self, work_dir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shaper_pipelines.cli", "agent", "--port", str(self.port), "--max-cores", "1",
             "--max-memory-mib", "64", "--max-duration", "120s", "--work-dir", str(work_dir)],
            env={**os.environ, "SHAPER_AGENT_TOKEN": AGENT_TOKEN}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening" not in line:
            self.stop()
            raise RuntimeError(f"the agent did not start: {line}{self.proc.stderr.read()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_run(self) -> None:
        body = {"profile": {"profile_id": "grafana-fidelity", "resource_type": "memory", "duration": "90s",
                            "load_pattern": {"kind": "constant", "level": 24}}}
        request = urllib.request.Request(f"http://{self.address}/runs", data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

    def stop(self) -> None:
        """SIGTERM: the agent stops its runs and their children, then exits."""
        end_process(self.proc)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A Pushgateway holding a realistic export and a load agent running a small rehearsal, both
    scraped every second by a real Prometheus (the agent as job shaper-agents, with its token)."""
    from shaper_pipelines_tests.services.prometheus import start_prometheus
    from shaper_pipelines_tests.services.pushgateway import start_pushgateway

    stops = []
    try:
        gateway = start_pushgateway()
        stops.append(gateway.stop)
        agent = _Agent(tmp_path_factory.mktemp("agent-work"))
        stops.append(agent.stop)
        agent.start_run()
        prometheus = start_prometheus(scrape_interval="1s", scrape_configs=[
            {"job_name": "pushgateway", "honor_labels": True, "scrape_interval": "1s", "scrape_timeout": "1s",
             "static_configs": [{"targets": [gateway.address]}]},
            {"job_name": "shaper-agents", "scrape_interval": "1s", "scrape_timeout": "1s",
             "authorization": {"type": "Bearer", "credentials": AGENT_TOKEN},
             "static_configs": [{"targets": [agent.address]}]}])
        stops.append(prometheus.stop)
        now = pd.Timestamp.now(tz="UTC")
        targets = scaling_targets()
        frames = export_frames(now, targets)
        push(gateway.url, "shaper", prediction_samples(**frames, targets=targets, now=now), timeout=5)
        deadline = time.monotonic() + 20
        # A few scrapes of the agent's run, so that a subquery's aligned steps find samples too.
        ready = ["shaper_actual_utilization_ratio", "shaper_export_timestamp_seconds",
                 "count_over_time(shaper_agent_achieved_load[1m]) >= 3", 'up{job="shaper-agents"} == 1']
        while True:
            missing = [q for q in ready if not prometheus.query(q)]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing scraped for {missing} in 20 s")
            time.sleep(0.25)
        yield prometheus, frames, targets, agent
    finally:
        for stop in reversed(stops):
            stop()


def test_every_panel_query_is_valid_and_returns_data_in_prometheus(live):
    prometheus, frames, targets, agent = live
    dashboard = load_dashboard()
    declared = variables(dashboard)
    # Each query variable's options, asked of Prometheus as Grafana asks them.
    options = {name: label_values(prometheus.url, v["query"]["query"]) for name, v in declared.items()
               if v["type"] == "query"}
    assert options["target"] == sorted(t.name for t in targets) and "checkout-api-asg" in options["target"]
    assert options["series"] == sorted({t.history.target for t in targets})
    assert options["agent"] == [agent.address]
    # All of everything, then each value of each variable alone (the others at All).
    everything = {name: variable_value(declared[name], None, values) for name, values in options.items()}
    assert everything["target"] == "(" + "|".join(sorted(t.name for t in targets)) + ")"
    choices = [dict(everything)]
    for name, values in options.items():
        choices += [{**everything, name: variable_value(declared[name], [v], values)} for v in values]
    assert any(c["target"] == "checkout-api-asg" for c in choices)
    assert any(c["agent"] == agent.address.replace(".", "\\\\.") for c in choices)
    now = time.time()
    problems, checked = [], set()
    for panel in query_panels(dashboard):
        for target in panel["targets"]:
            modes = [True] if target.get("instant") and not target.get("range") else [False] + (
                [True] if target.get("instant") else [])
            for choice in choices:
                expr = interpolate(target["expr"], {**choice, **BUILTINS})
                for instant in modes:
                    if (expr, instant) in checked:
                        continue
                    checked.add((expr, instant))
                    wrong = check_expression(prometheus.url, expr, instant=instant, now=now)
                    if wrong:
                        problems.append(f"{panel['title']!r} {target['refId']} ({'instant' if instant else 'range'})"
                                        f": {expr}\n    {wrong}")
    assert not problems, "\n".join(problems)
    assert len(checked) > 40  # every query, under several selections


def test_the_utilisation_panels_show_the_pushed_values(live):
    prometheus, frames, targets, _ = live
    observed = frames["observed"].set_index("target")
    actual = {r["metric"]["target"]: float(r["value"][1])
              for r in prometheus.query('shaper_actual_utilization_ratio{job="shaper"}')}
    assert actual.keys() == {t.name for t in targets}
    for t in targets:
        row = observed.loc[t.name]
        assert math.isclose(actual[t.name], row["demand"] / (row["min_capacity"] * row["capacity_per_instance"]))
    errors = prometheus.query('abs(shaper_agent_achieved_load - shaper_agent_target_load) '
                              '/ (shaper_agent_target_load > 0)')
    assert errors and all(r["metric"]["resource"] == "memory" and r["metric"]["profile"] == "grafana-fidelity"
                          for r in errors)


def test_a_broken_or_empty_query_is_caught(live):
    prometheus = live[0]
    broken = interpolate('sum(shaper_planned_capacity{target=~"$target"}', {"target": "checkout-api-asg"})
    wrong = check_expression(prometheus.url, broken, instant=False)
    assert wrong and wrong.startswith("HTTP 400, bad_data") and "parse error" in wrong
    assert check_expression(prometheus.url, "rate(shaper_planned_capacity[$__rate_interval])", instant=True) \
        .startswith("HTTP 400")  # a built-in left unsubstituted is not PromQL either
    assert check_expression(prometheus.url, 'shaper_planed_capacity{target=~"checkout-api-asg"}',
                            instant=True) == "no series"
    assert check_expression(prometheus.url, 'shaper_planned_capacity{target=~"checkout-api-asg"}',
                            instant=True) is None
