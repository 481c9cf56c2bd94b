"""``shaper profiles ...`` as a user runs it: a real process, real files, a real store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SHAPER = [sys.executable, "-m", "shaper_pipelines.cli"]


def shaper(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*SHAPER, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def custom(expression: str) -> str:
    return yaml.safe_dump({"profile_id": "hostile", "resource_type": "cpu", "duration": "1h",
                           "load_pattern": {"kind": "custom", "expression": expression}})


HOSTILE = {
    "import": ("__import__('os')", "'__import__'"),
    "dunder": ("().__class__.__bases__", "attribute"),
    "power tower": ("9**9**9", ""),
    "nested parentheses": ("(" * 10_000 + "1" + ")" * 10_000, "limit"),
    "one megabyte": ("1+" * 500_000 + "1", "characters"),
    "unknown name": ("foo * t", "unknown name 'foo'"),
    "division by zero at a point": ("1 / (t - 60)", "division by zero"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_validate_refuses_hostile_expressions_quickly(name, tmp_path, shaper_home):
    expression, words = HOSTILE[name]
    f = tmp_path / "hostile.yaml"
    f.write_text(custom(expression))
    started = time.perf_counter()
    result = shaper("profiles", "validate", f)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert "shaper: error:" in result.stderr and "Traceback" not in result.stderr
    assert str(f) in result.stderr and "hostile" in result.stderr
    assert words.lower() in result.stderr.lower()
    assert elapsed < 30  # a hang guard around a whole interpreter start, not a speed claim
    # The store refuses it the same way and stays empty.
    imported = shaper("profiles", "import", f)
    assert imported.returncode == 2
    listed = shaper("profiles", "list", "--json")
    assert listed.returncode == 0 and yaml.safe_load(listed.stdout) == []


def test_import_list_show_render_export_round_trip(tmp_path, shaper_home, predefined_dir):
    result = shaper("profiles", "import", predefined_dir)
    assert result.returncode == 0, result.stderr
    assert "stored 8 new version(s) of 8 profile(s)" in result.stdout
    again = shaper("profiles", "import", predefined_dir)
    assert "stored 0 new version(s)" in again.stdout

    listed = yaml.safe_load(shaper("profiles", "list", "--json", "--resource-type", "cpu").stdout)
    assert {row["profile_id"] for row in listed} == {"end-of-month-batch", "weekday-business-hours-cpu",
                                                     "feature-release-ramp", "gentle-cpu-rehearsal"}
    events = yaml.safe_load(shaper("profiles", "list", "--json", "--trigger-kind", "event").stdout)
    assert "holiday-sales-peak" in {row["profile_id"] for row in events}

    shown = shaper("profiles", "show", "nightly-backup")
    assert shown.returncode == 0 and "kind: sequence" in shown.stdout and shown.stdout.startswith("# version 1")

    csv, png = tmp_path / "r.csv", tmp_path / "r.png"
    rendered = shaper("profiles", "render", "nightly-backup", "--start", "2026-03-02T02:00:00Z", "--step", "5m",
                      "--csv", csv, "--png", png)
    assert rendered.returncode == 0, rendered.stderr
    lines = csv.read_text().splitlines()
    assert lines[0] == "timestamp,value" and len(lines) == 1 + 18
    assert lines[1].startswith("2026-03-02T02:00:00Z,0")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    exported = tmp_path / "all.yaml"
    assert shaper("profiles", "export", "-o", exported).returncode == 0
    other_home = {"SHAPER_HOME": str(tmp_path / "other")}
    reimported = shaper("profiles", "import", exported, env=other_home)
    assert "stored 8 new version(s)" in reimported.stdout
    # The same content hashes: export then import is lossless.
    first = {r["profile_id"]: r["content_hash"] for r in yaml.safe_load(shaper("profiles", "list", "--json").stdout)}
    second = {r["profile_id"]: r["content_hash"]
              for r in yaml.safe_load(shaper("profiles", "list", "--json", env=other_home).stdout)}
    assert first == second


def test_clear_errors_for_missing_things(tmp_path, shaper_home):
    missing = shaper("profiles", "show", "no-such-profile")
    assert missing.returncode == 3 and "not in the store" in missing.stderr
    nofile = shaper("profiles", "validate", tmp_path / "absent.yaml")
    assert nofile.returncode == 2 and "cannot read" in nofile.stderr
    junk = tmp_path / "junk.yaml"
    junk.write_text("profile_id: [unclosed\n")
    assert "not valid YAML" in shaper("profiles", "validate", junk).stderr
    bad_step = shaper("profiles", "render", Path(__file__).parents[1] / "profiles_data/profiles/nightly_backup.yaml",
                      "--step", "often")
    assert bad_step.returncode == 2 and "not a duration" in bad_step.stderr
