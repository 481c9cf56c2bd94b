"""Hostile and unlucky input to the real ``shaper`` command (issue 12's table and the cases that
already held), each run in a subprocess under the memory ceiling of ``limits.run_limited``: refused
within ``limits.SECONDS`` beyond start-up and ``limits.MEGABYTES`` of peak memory, in one clear
line without a traceback, and nothing stored in the isolated SHAPER_HOME.

Set ``SHAPER_HOSTILE_REPORT`` to a file to have each case's outcome appended there as a table row
(exit code, first line of stderr, seconds, MB), as the README's reliability section shows them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from shaper_pipelines_tests.hostile.limits import (
    SHAPER,
    Outcome,
    assert_refused,
    run_limited,
)

PROFILE = """profile_id: {pid}
resource_type: cpu
duration: {duration}
load_pattern: {pattern}
"""


def _profile(pid: str = "p1", pattern: str = "{kind: constant, level: 0.5}", duration: str = "1h", extra: str = ""):
    return PROFILE.format(pid=pid, pattern=pattern, duration=duration) + extra


@pytest.fixture
def home(shaper_home) -> Path:
    return shaper_home


def shaper(home: Path, *args, input=None) -> Outcome:
    return run_limited([*SHAPER, *map(str, args)], env={"SHAPER_HOME": str(home)}, input=input)


def report(case: str, outcome: Outcome) -> None:
    path = os.environ.get("SHAPER_HOSTILE_REPORT")
    if path:
        line = (outcome.lines or [""])[0].replace("|", "\\|")
        with open(path, "a") as fh:
            fh.write(f"| {case} | {outcome.returncode} | {line[:160]} | {outcome.seconds:.2f} | {outcome.megabytes:.0f} |\n")


def stored(home: Path) -> dict[str, int]:
    """Rows per table of the SQLite store under ``home`` (empty when it was never created)."""
    db = home / "profiles.db"
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        counts = {t: conn.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
    return {t: n for t, n in counts.items() if n and not t.endswith("alembic_version")}


def refused(home: Path, case: str, *args, mentions: str | None = None, exit_code: int = 2, input=None) -> Outcome:
    before = stored(home)
    outcome = shaper(home, *args, input=input)
    report(case, outcome)
    assert_refused(outcome, exit_code=exit_code, mentions=mentions)
    assert stored(home) == before, "something was stored"
    return outcome


# -- profiles -------------------------------------------------------------------------------------


def _bomb() -> str:
    """Nine levels of nine aliases: 850 bytes, 387 million list items once expanded."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nprofiles: [*l8]\n"


def _aliased_sum() -> str:
    """A ``sum`` of 32 patterns aliased four levels deep: 32**4 (a million) leaves."""
    lines = ["c: &c {kind: constant, level: 0.001}"]
    previous = "c"
    for level in range(1, 5):
        lines.append(f"s{level}: &s{level} {{kind: sum, patterns: [{', '.join([f'*{previous}'] * 32)}]}}")
        previous = f"s{level}"
    lines.append(f"profiles: [{{profile_id: laughs, resource_type: cpu, duration: 1h, load_pattern: *{previous}}}]")
    return "\n".join(lines) + "\n"


def _aliased_replay() -> str:
    """One replay list of 5,000 values, aliased by 200 profiles."""
    values = ", ".join(str(i % 10) for i in range(5000))
    docs = [f"- {{profile_id: r0, resource_type: cpu, duration: 1h, load_pattern: "
            f"{{kind: replay, step: 1s, values: &v [{values}]}}}}"]
    docs += [f"- {{profile_id: r{i}, resource_type: cpu, duration: 1h, load_pattern: {{kind: replay, step: 1s, "
             f"values: *v}}}}" for i in range(1, 201)]
    return "\n".join(docs) + "\n"


def _big_aliased(size: int) -> str:
    """``size`` bytes of a file whose every line aliases a nine-deep bomb."""
    text = _bomb().replace("profiles: [*l8]\n", "")
    filler = "".join(f"k{i}: *l8\n" for i in range(size // 10))
    return (text + filler)[:size]


@pytest.mark.parametrize("case, content, words", [
    ("YAML alias bomb (850 bytes)", _bomb(), "alias"),
    ("YAML aliases, 0.6 MB file", _big_aliased(600_000), "alias"),
    ("YAML aliases, 2 MB file", _big_aliased(2_000_000), "budget of 1024 KiB"),
    ("sum pattern aliased 32**4 times", _aliased_sum(), "alias"),
    ("replay list aliased 200 times", _aliased_replay(), "alias"),
    ("oversized profile file (2 MB, no aliases)", _profile(extra="description: |\n" + "  x\n" * 500_000),
     "budget of 1024 KiB"),
    ("too many YAML nodes (60,000 replay values)",
     _profile(pattern="{kind: replay, step: 1s, values: [" + ", ".join(["1"] * 60_000) + "]}"), "YAML nodes"),
    ("one profile over 256 KiB as stored",
     _profile(pattern="{kind: replay, step: 1s, values: [" + ", ".join(["123456.7890625"] * 19_000) + "]}"),
     "budget is 256 KiB"),
    ("division by zero between validation grid points",
     _profile(pattern="{kind: custom, expression: 'abs(1/(hour-3.5))'}", duration="1d"), "division by zero at t=12600"),
    ("cron that never fires (0 0 31 2 *)",
     _profile(extra="trigger_conditions: [{kind: cron, cron: '0 0 31 2 *'}]\n"), "never fires"),
    ("expression __import__('os')", _profile(pattern="{kind: custom, expression: \"__import__('os')\"}"),
     "unknown function"),
    ("expression attribute access", _profile(pattern="{kind: custom, expression: 't.__class__'}"),
     "attribute access"),
    ("expression huge exponent 9**9**9", _profile(pattern="{kind: custom, expression: '9**9**9'}"), "overflow"),
    ("expression huge exponent t**1e6", _profile(pattern="{kind: custom, expression: 't**1000000'}"), "overflow"),
    ("expression nested 10,000 deep", _profile(pattern="{kind: custom, expression: '" + "(" * 10_000 + "t"
                                                        + ")" * 10_000 + "'}"), "characters long"),
])
@pytest.mark.parametrize("action", ["validate", "import"])
def test_a_hostile_profile_file_is_refused_and_nothing_is_stored(home, tmp_path, case, content, words, action):
    path = tmp_path / "hostile.yaml"
    path.write_text(content)
    refused(home, f"profiles {action}: {case}", "profiles", action, path, mentions=words)
    if action == "import":
        listed = shaper(home, "profiles", "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr


def test_rendering_too_many_points_is_refused_before_any_is_made(home, tmp_path):
    # 400 days at 1 s would be 34.6 million points: gigabytes of CSV and plot nobody reads.
    path = tmp_path / "long.yaml"
    path.write_text(_profile(duration="400d"))
    refused(home, "profiles render 400 days at 1 s", "profiles", "render", path, "--step", "1s", "--csv",
            tmp_path / "out.csv", mentions="use a coarser step")
    assert not (tmp_path / "out.csv").exists()


def test_an_unknown_profile_id_is_exit_3(home):
    refused(home, "profiles show: unknown profile id", "profiles", "show", "no-such-profile", exit_code=3,
            mentions="not in the store")


def test_a_bad_stored_row_is_skipped_and_the_others_are_listed(home, tmp_path):
    """A row an older version wrote (a cron that never fires) does not stop listing the others."""
    good = tmp_path / "good.yaml"
    good.write_text(_profile(pid="good", extra="trigger_conditions: [{kind: cron, cron: '0 9 * * *'}]\n"))
    assert shaper(home, "profiles", "import", good).returncode == 0
    with sqlite3.connect(home / "profiles.db") as conn:
        row = conn.execute("select * from profile_versions where profile_id = 'good'").fetchone()
        columns = [d[0] for d in conn.execute("select * from profile_versions").description]
        bad = dict(zip(columns, row))
        definition = json.loads(bad["definition"])
        definition["profile_id"] = "never"
        definition["trigger_conditions"][0]["cron"] = "0 0 31 2 *"
        bad.update(id=None, profile_id="never", definition=json.dumps(definition))
        conn.execute(f"insert into profile_versions ({', '.join(bad)}) values ({', '.join('?' * len(bad))})",
                     list(bad.values()))
    listed = shaper(home, "profiles", "list", "--json")
    report("profiles list with a stored row that no longer parses", listed)
    assert listed.returncode == 0 and [p["profile_id"] for p in json.loads(listed.stdout)] == ["good"]
    assert "'never'" in listed.stderr and "never fires" in listed.stderr and "Traceback" not in listed.stderr


# -- history, forecast, plan ----------------------------------------------------------------------

FAR = "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n2024-01-01T00:02:00Z,3\n2200-01-01T00:00:00Z,4\n"
FAR_TS = "ts,value\n1700000000,1\n1700000060,2\n1700000120,3\n99999999999,4\n"
COMMANDS = {
    "forecast": ["forecast", "--horizon", "24h"],
    "plan": ["plan", "--horizon", "24h", "--capacity-per-instance", "5"],
    "history import": ["history", "import", "--target", "web", "--metric", "cpu"],
}


def _history_args(command: str, path: Path, tmp_path: Path) -> list:
    args = list(COMMANDS[command])
    if command == "history import":
        return [*args, path]
    return [*args, "--history", path, "--output", tmp_path / "out.csv"]


@pytest.mark.parametrize("content, words", [(FAR, "92,567,521 steps of 60s, above the limit of 2,000,000"),
                                            (FAR_TS, "above the limit of 2,000,000")], ids=["iso", "epoch"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_csv_with_one_far_timestamp_is_refused_before_the_grid_is_made(home, tmp_path, command, content, words):
    path = tmp_path / "far.csv"
    path.write_text(content)
    refused(home, f"{command}: 4-line CSV, one timestamp far later", *_history_args(command, path, tmp_path),
            mentions=words)
    assert not (tmp_path / "out.csv").exists()


def _three_days(tmp_path: Path) -> Path:
    import numpy as np
    import pandas as pd

    index = pd.date_range("2026-11-01", periods=3 * 288, freq="5min", tz="UTC")
    path = tmp_path / "h.csv"
    pd.DataFrame({"timestamp": index.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "value": 10 + 5 * np.sin(np.arange(len(index)) / 288 * 2 * np.pi)}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("horizon, words", [("100000d", "beyond the maximum of 366 days"),
                                            ("30d", "more than 4 times the history's 3 days")])
@pytest.mark.parametrize("command", ["forecast", "plan"])
def test_a_horizon_beyond_its_bounds_is_refused(home, tmp_path, command, horizon, words):
    args = [a if a != "24h" else horizon for a in COMMANDS[command]]
    refused(home, f"{command}: --horizon {horizon}", *args, "--history", _three_days(tmp_path), "--output",
            tmp_path / "out.csv", mentions=words)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("case, content, words", [
    ("CSV junk: no header", "hello,world\n1,2\n", "expected columns"),
    ("CSV junk: binary", "\x00\x01\x02\xff", "not a CSV file"),
    ("CSV junk: unreadable timestamps", "timestamp,value\nyesterday,1\nlast week,2\n", "not readable"),
    ("CSV: a NaN-ridden metric", "timestamp,value\n" + "".join(
        f"2026-11-01T00:{m:02d}:00Z,{'NaN' if m % 4 else m}\n" for m in range(60)), "not readable"),
    ("CSV: header only", "ts,value\n", "no rows"),
])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_malformed_history_is_refused(home, tmp_path, command, case, content, words):
    path = tmp_path / "junk.csv"
    path.write_bytes(content.encode("latin-1"))
    refused(home, f"{command}: {case}", *_history_args(command, path, tmp_path), mentions=words)


# -- output files ---------------------------------------------------------------------------------


def test_output_onto_dev_null_is_written_in_place(home, tmp_path):
    outcome = shaper(home, "forecast", "--horizon", "2h", "--history", _three_days(tmp_path), "--output", "/dev/null")
    report("forecast --output /dev/null", outcome)
    assert outcome.returncode == 0, outcome.stderr
    assert Path("/dev/null").is_char_device()


def test_output_onto_a_fifo_is_written_through_it(home, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    outcome = shaper(home, "forecast", "--horizon", "2h", "--history", _three_days(tmp_path), "--output", fifo)
    reader.join(10)
    report("forecast --output a FIFO", outcome)
    assert outcome.returncode == 0, outcome.stderr
    assert got and got[0].startswith("timestamp,yhat") and len(got[0].splitlines()) == 25
    assert fifo.is_fifo() and not list(tmp_path.glob(".out.fifo.*"))


def test_output_dash_is_standard_output(home, tmp_path):
    outcome = shaper(home, "plan", "--horizon", "2h", "--capacity-per-instance", "5", "--history",
                     _three_days(tmp_path), "--output", "-")
    assert outcome.returncode == 0 and outcome.stdout.startswith("timestamp,"), outcome.stderr
    assert not (Path.cwd() / "-").exists()


def test_the_memory_measured_is_the_commands_not_the_test_processes():
    """Linux carries a process's peak resident size across fork and exec: forked straight from a
    big test process, ``python -c pass`` reported that process's size (500 MB once pytest had run
    the suite up to here). Through the launcher it reports its own."""
    import sys

    from shaper_pipelines_tests.hostile.limits import MEGABYTES

    ballast = bytearray(MEGABYTES * 1024 * 1024)
    ballast[::4096] = b"\1" * len(range(0, len(ballast), 4096))  # resident, not only reserved
    outcome = run_limited([sys.executable, "-c", "pass"])
    del ballast
    assert outcome.returncode == 0 and outcome.megabytes < 100, outcome
