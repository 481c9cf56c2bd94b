"""profiles_data/alerts/shaper.rules.yml as Prometheus's own tool sees it: the rules check, their
unit tests (shaper.rules.test.yml) pass, and both fail when they should - a broken rule, a changed
threshold."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ALERTS = Path(__file__).resolve().parents[2] / "profiles_data" / "alerts"
RULES, TESTS = ALERTS / "shaper.rules.yml", ALERTS / "shaper.rules.test.yml"
EXPECTED = {"ShaperPredictedUtilizationHigh", "ShaperPredictedOverCapacity", "ShaperForecastWorseThanSeasonalNaive",
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
