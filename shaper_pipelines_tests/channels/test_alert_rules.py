"""profiles_data/alerts/shaper.rules.yml as Prometheus's own tool sees it: the rules check, their
unit tests (shaper.rules.test.yml) pass, and both fail when they should - a broken rule, a changed
threshold; and the rules judged on the real export of two targets: one whose plan covers a demand
far above its minimum stays quiet, one whose demand exceeds what its plan (held at the maximum)
serves fires."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

ALERTS = Path(__file__).resolve().parents[2] / "profiles_data" / "alerts"
RULES, TESTS = ALERTS / "shaper.rules.yml", ALERTS / "shaper.rules.test.yml"
EXPECTED = {"ShaperPredictedUtilizationHigh", "ShaperPredictedOverCapacity", "ShaperPredictedObjectiveBreach",
            "ShaperForecastWorseThanSeasonalNaive",
            "ShaperExportStale", "ShaperExportMissing", "ShaperLoadAgentStuck", "ShaperLoadAgentDown"}


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (scripts/install test)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_the_rules_file_checks():
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_the_rules_unit_tests_pass():
    result = _promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_severity_and_templated_annotations_and_is_tested_firing_and_not():
    rules = _rules()
    assert {r["alert"] for r in rules} == EXPECTED
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert {"summary", "description"} <= set(r["annotations"]), r["alert"]
    # Every alert that looks at a series says which one in its text.
    for r in rules:
        if r["alert"] != "ShaperExportMissing":
            assert "$labels." in r["annotations"]["summary"] + r["annotations"]["description"], r["alert"]
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fires == EXPECTED and quiet == EXPECTED


@pytest.mark.parametrize("original, broken, complaint", [
    ("expr: shaper_forecast_mase > 1\n", "expr: shaper_forecast_mase >\n", "parse error"),  # PromQL syntax
    ("for: 1h\n", "for: 1 hour\n", "not a valid duration"),
    ('summary: "Forecast of {{ $labels.target }}', 'summary: "Forecast of {{ $labels.target ', "template"),
    ("- alert: ShaperLoadAgentDown\n", "- alert: ShaperLoadAgentDown\n        record: shaper:agents_down\n",
     "only one of"),
])
def test_a_broken_rules_file_fails_the_check(tmp_path, original, broken, complaint):
    text = RULES.read_text()
    assert text.count(original) == 1
    bad = tmp_path / "broken.rules.yml"
    bad.write_text(text.replace(original, broken))
    result = _promtool("check", "rules", str(bad))
    assert result.returncode != 0
    assert complaint in (result.stdout + result.stderr).lower(), result.stdout + result.stderr


def test_the_unit_tests_catch_a_changed_threshold(tmp_path):
    """With the utilisation threshold raised from 0.9 to 0.96, the 0.95 prediction that must fire no
    longer does, and promtool test rules says so."""
    text = RULES.read_text()
    assert len(re.findall(r'window="next_1h"\} > 0\.9\n', text)) == 1
    (tmp_path / "shaper.rules.yml").write_text(re.sub(r'(window="next_1h"\}) > 0\.9\n', r"\1 > 0.96\n", text))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = _promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ShaperPredictedUtilizationHigh" in result.stdout + result.stderr


def _export_as_input_series(samples) -> list[dict]:
    """promtool input series holding each exported sample's value for 30 minutes, with the job
    label a Pushgateway scrape (honor_labels) gives them."""
    out = []
    for smp in samples:
        labels = {"job": "shaper", **dict(smp.labels)}
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out.append({"series": f"{smp.name}{{{text}}}", "values": f"{smp.value!r}x30"})
    return out


def test_the_alerts_on_the_real_export_fire_on_danger_and_not_on_a_healthy_plan(tmp_path):
    """Two targets, one instance of capacity 100 at their minimum, demand peaking in the next hour:

    - ``healthy`` peaks at 450 (4.5 times its minimum: the shipped rule used to fire here), and its
      plan raises the floor to 6 before the peak: 0.75 at the planned capacity;
    - ``overloaded`` peaks at 600 but may have at most 3 instances: its plan, capped there by
      scaling_plan, serves 300, so the planned utilisation is 2.

    The export of both (prediction_samples, as prometheus_export builds it) is fed to the shipped
    rules: only ``overloaded`` fires, both the critical and the warning alert."""
    import pandas as pd

    from shaper_pipelines.defs.plan.assets import cap_at_maximum
    from shaper_pipelines.lib.export import prediction_samples
    from shaper_pipelines.lib.planning import Plan

    now = pd.Timestamp.now(tz="UTC").floor("5min")
    ts = pd.date_range(now, periods=36, freq="5min")
    demand = {"healthy": [60.0] * 6 + [450.0] * 4 + [60.0] * 26, "overloaded": [60.0] * 6 + [600.0] * 4 + [60.0] * 26}
    wanted = {"healthy": [1] * 5 + [6] * 6 + [1] * 25, "overloaded": [1] * 5 + [8] * 6 + [1] * 25}
    utilisation, plans = [], []
    for name in demand:
        p90 = pd.Series(demand[name]) / 100.0
        utilisation.append(pd.DataFrame({"target": name, "timestamp": ts, "utilization_p50": p90 * 0.8,
                                         "utilization_p90": p90, "capacity": 1}))
        plan = Plan(frame=pd.DataFrame({"timestamp": ts, "desired_capacity": wanted[name], "reason": "r"}),
                    rule=None, notes=[])
        cap_at_maximum(plan, 3)
        plans.append(plan.frame.assign(target=name))
    assert plans[0]["desired_capacity"].max() == 3 and "capped at the maximum 3" in plans[0]["reason"].iloc[6]
    plans[0] = plans[0].assign(desired_capacity=wanted["healthy"])  # healthy's maximum is higher: not capped
    samples = prediction_samples(utilisation=pd.concat(utilisation), plan=pd.concat(plans), forecasts={},
                                 targets=[{"name": "healthy", "resource": "healthy-asg", "kind": "asg"},
                                          {"name": "overloaded", "resource": "overloaded-asg", "kind": "asg"}],
                                 now=now)
    peak = {(d["target"], d["capacity"], d["window"]): smp.value for smp in samples
            if smp.name == "shaper_predicted_utilization_ratio" and (d := dict(smp.labels))["percentile"] == "p90"}
    assert peak[("healthy", "minimum", "next_1h")] == 4.5 and peak[("healthy", "planned", "next_1h")] == 0.75
    assert peak[("overloaded", "minimum", "next_1h")] == 6.0 and peak[("overloaded", "planned", "next_1h")] == 2.0

    # The shipped rules without their annotations (the unit tests above check those): what fires
    # on these values, by labels alone.
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))

    def fired(alert: str, window: str, severity: str) -> list[dict]:
        return [{"exp_labels": {"severity": severity, "job": "shaper", "target": "overloaded",
                                "resource": "overloaded-asg", "capacity": "planned", "percentile": "p90",
                                "window": window}}]

    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": _export_as_input_series(samples),
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "ShaperPredictedUtilizationHigh",
             "exp_alerts": fired("ShaperPredictedUtilizationHigh", "next_1h", "critical")},
            {"eval_time": "10m", "alertname": "ShaperPredictedOverCapacity",
             "exp_alerts": fired("ShaperPredictedOverCapacity", "next_24h", "warning")},
        ]}]}
    (tmp_path / "export.test.yml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", "export.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    # The same export judged at the minimum capacity, as the shipped rule once did: both fire.
    text = (tmp_path / "rules.yml").read_text().replace('capacity="planned"', 'capacity="minimum"')
    (tmp_path / "rules.yml").write_text(text)
    result = _promtool("test", "rules", "export.test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "healthy" in result.stdout + result.stderr


def test_the_objective_alert_fires_on_the_real_export_where_the_plan_runs_past_the_objectives_load(tmp_path):
    """A rehearsed service whose objective broke at 50 requests per second per instance, and a
    curve that saturates (utilisation 0.9 there, 1 from 60): ``tight`` needs 130 per second in the
    next hour but its plan holds 2 instances (65 each: 1.3 of the objective's load); ``roomy``'s
    plan holds 4 (32.5 each). prediction_samples maps the planned utilisation through the curve
    and exports the objective ratio; the shipped rule fires on ``tight`` alone."""
    import pandas as pd

    from shaper_pipelines.lib.export import prediction_samples

    now = pd.Timestamp.now(tz="UTC").floor("5min")
    ts = pd.date_range(now, periods=24, freq="5min")
    demand = pd.Series([40.0] * 4 + [130.0] * 6 + [40.0] * 14)
    curve = lambda load: np.clip(np.asarray(load, dtype=float) * 0.018, 0, 1)  # noqa: E731 - 0.9 at 50
    utilisation = pd.concat([pd.DataFrame({"target": name, "timestamp": ts, "utilization_p50": curve(demand),
                                           "utilization_p90": curve(demand), "capacity": 1,
                                           "demand_p50": demand * 0.9, "demand_p90": demand})
                             for name in ("tight", "roomy")])
    plan = pd.concat([pd.DataFrame({"target": name, "timestamp": ts, "desired_capacity": floor})
                      for name, floor in (("tight", 2), ("roomy", 4))])
    objective = "p95 under 60 ms, errors under 1.0%"
    samples = prediction_samples(
        utilisation=utilisation, plan=plan, forecasts={}, now=now,
        targets=[{"name": n, "resource": f"{n}-asg", "kind": "asg"} for n in ("tight", "roomy")],
        response={n: {"capacity": 50.0, "objective": objective, "curve": curve} for n in ("tight", "roomy")})
    ratio = {(d["target"], d["window"]): s.value for s in samples
             if s.name == "shaper_predicted_objective_load_ratio" and (d := dict(s.labels))["percentile"] == "p90"}
    assert ratio[("tight", "next_1h")] == pytest.approx(1.3) and ratio[("roomy", "next_1h")] == pytest.approx(0.65)
    planned = {d["target"]: s.value for s in samples if s.name == "shaper_predicted_utilization_ratio"
               and (d := dict(s.labels))["capacity"] == "planned" and d["window"] == "next_1h" and d["percentile"] == "p90"}
    # Through the curve, not rescaled: 65 per instance is past its knee, at 1.
    assert planned["tight"] == pytest.approx(1.0) and planned["roomy"] == pytest.approx(0.585)

    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": _export_as_input_series(samples),
        "alert_rule_test": [{"eval_time": "10m", "alertname": "ShaperPredictedObjectiveBreach", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "job": "shaper", "target": "tight", "resource": "tight-asg",
                            "capacity": "planned", "percentile": "p90", "window": "next_1h",
                            "objective": objective}}]}]}]}
    (tmp_path / "export.test.yml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", "export.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
