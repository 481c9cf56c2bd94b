"""The command-line contract of ``shaper forecast``, ``shaper plan`` and ``shaper replay``, on every
real trace the project carries (``data/real``) and on files a user gets wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.cli import main
from shaper_pipelines.lib.action_budget import segments
from shaper_pipelines.lib.history import load_history
from shaper_pipelines_tests.conftest import REAL_DATA

TRACES = sorted(REAL_DATA.glob("*/*.csv"))
SHAPER = [sys.executable, "-m", "shaper_pipelines.cli"]


def shaper(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*SHAPER, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def test_the_real_traces_are_there():
    assert len(TRACES) >= 20, f"expected the real traces under {REAL_DATA}"


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_forecast_and_plan_on_every_real_trace(trace, tmp_path):
    history, report = load_history(trace)
    step = pd.Timedelta(seconds=report.step_seconds)
    fc, plan = tmp_path / "f.csv", tmp_path / "p.csv"

    assert main(["forecast", "--history", str(trace), "--horizon", "24h", "--output", str(fc)]) == 0
    f = pd.read_csv(fc)
    assert list(f.columns) == ["timestamp", "yhat", "yhat_lower", "yhat_upper"]
    ts = pd.to_datetime(f["timestamp"], utc=True)
    assert len(f) == pd.Timedelta(hours=24) // step
    assert ts.iloc[0] == history.index[-1] + step and (ts.diff().dropna() == step).all()
    assert np.isfinite(f[["yhat", "yhat_lower", "yhat_upper"]].to_numpy()).all()
    assert (f["yhat_lower"] <= f["yhat"]).all() and (f["yhat"] <= f["yhat_upper"]).all()

    c = float(np.percentile(history, 99)) / 10
    assert main(["plan", "--history", str(trace), "--horizon", "48h", "--capacity-per-instance", repr(c),
                 "--target-utilization", "0.7", "--warmup", "300s", "--output", str(plan)]) == 0
    p = pd.read_csv(plan)
    assert list(p.columns[:2]) == ["timestamp", "desired_capacity"]
    assert p["desired_capacity"].dtype == np.int64 and (p["desired_capacity"] >= 1).all()
    pts = pd.to_datetime(p["timestamp"], utc=True)
    assert pts.iloc[0] == history.index[-1] + step and pts.iloc[-1] < history.index[-1] + step + pd.Timedelta(hours=48)
    # Each change of the floor is one AWS scheduled action: a 48-hour plan holds at most 100.
    assert segments(p["desired_capacity"].to_numpy()) <= 100


# The traces whose unlimited 48-hour plans change their floor most often (hundreds of times).
CYCLIC = ["crane/cpu_2", "crane/cpu_7", "nab/elb_request_count_8c0756"]


@pytest.mark.parametrize("name", CYCLIC)
def test_the_action_budget_binds_on_the_most_cyclic_traces(name, tmp_path):
    trace = REAL_DATA / f"{name}.csv"
    history, _ = load_history(trace)
    c = float(np.percentile(history, 99)) / 10
    floors = {}
    for budget in ("unlimited", "100", "40"):
        out = tmp_path / f"plan-{budget}.csv"
        assert main(["plan", "--history", str(trace), "--horizon", "48h", "--capacity-per-instance", repr(c),
                     "--max-actions", budget, "--output", str(out)]) == 0
        floors[budget] = pd.read_csv(out)["desired_capacity"].to_numpy()
    assert segments(floors["unlimited"]) > 100, "this trace no longer needs a budget; pick a more cyclic one"
    assert segments(floors["100"]) <= 100 and segments(floors["40"]) <= 40
    # The same floor, merged: never below the unlimited one, so no breach the unlimited plan avoids.
    assert (floors["100"] >= floors["unlimited"]).all() and (floors["40"] >= floors["unlimited"]).all()


def test_uneven_history_is_resampled_and_said(tmp_path):
    index = pd.date_range("2026-11-01", periods=5 * 288, freq="5min", tz="UTC")
    jitter = pd.to_timedelta(np.random.default_rng(0).integers(-60, 60, len(index)), unit="s")
    values = 10 + 5 * np.sin(np.arange(len(index)) / 288 * 2 * np.pi)
    path = tmp_path / "uneven.csv"
    pd.DataFrame({"ts": (index + jitter).as_unit("s").asi8, "value": values}).to_csv(path, index=False)
    out = shaper("forecast", "--history", path, "--horizon", "2h", "--output", tmp_path / "f.csv")
    assert out.returncode == 0, out.stderr
    assert "uneven spacing resampled to 300s means" in out.stderr
    assert len(pd.read_csv(tmp_path / "f.csv")) == 24


@pytest.mark.parametrize("content, words", [
    ("hello,world\n1,2\n", "expected columns timestamp,value or ts,value"),
    ("timestamp,value\nyesterday,1\nlast week,2\n", "most timestamp cells are not readable"),
    ("ts,value\n", "has a header but no rows"),
    ("\x00\x01\x02", "expected columns"),
])
def test_junk_gives_a_clear_error_and_a_non_zero_exit(content, words, tmp_path):
    path = tmp_path / "junk.csv"
    path.write_text(content)
    for command in (["forecast"], ["plan", "--capacity-per-instance", "5"]):
        out = shaper(*command, "--history", path, "--horizon", "24h", "--output", tmp_path / "o.csv")
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and not (tmp_path / "o.csv").exists()


def test_bad_arguments_are_refused_before_anything_runs(tmp_path):
    trace = REAL_DATA / "nab" / "rds_cpu_utilization_e47b3b.csv"
    for args, words in [(["--horizon", "soon"], "not a duration"),
                        (["--horizon", "24h", "--capacity-per-instance", "-3"], "positive number"),
                        (["--horizon", "24h", "--capacity-per-instance", "3", "--target-utilization", "1.7"],
                         "must be in (0, 1]")]:
        out = shaper("plan", "--history", trace, "--output", tmp_path / "p.csv", *args)
        assert out.returncode == 2 and words in out.stderr, out.stderr


def test_replay_prints_four_policies_and_writes_a_plot(tmp_path):
    trace = REAL_DATA / "crane" / "cpu_0.csv"
    out = shaper("replay", "--trace", trace, "--plot", tmp_path / "r.png", timeout=240)
    assert out.returncode == 0, out.stderr
    rows = {line[:28].strip(): line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"reactive tracking (0.7)", "seasonal-naive floor", "Prophet floor (defaults)", "shaper plan"}
    assert float(rows["reactive tracking (0.7)"][-2]) <= 1.0  # its own setting is on the frontier
    assert float(rows["seasonal-naive floor"][-1]) == pytest.approx(1.0)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_on_a_short_trace_tests_fewer_days_and_says_so(tmp_path):
    trace = REAL_DATA / "nab" / "iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
    out = shaper("replay", "--trace", trace, "--no-prophet", "--plot", tmp_path / "r.png")
    assert out.returncode == 0, out.stderr
    assert "tested on 3" in out.stderr


FAR = "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n2024-01-01T00:02:00Z,3\n2200-01-01T00:00:00Z,4\n"


@pytest.mark.parametrize("command", [["forecast"], ["plan", "--capacity-per-instance", "5"]])
def test_a_far_timestamp_is_refused_before_the_grid_is_made(command, tmp_path):
    path = tmp_path / "far.csv"
    path.write_text(FAR)
    out = shaper(*command, "--history", path, "--horizon", "24h", "--output", tmp_path / "o.csv")
    assert out.returncode == 2, out.stderr
    assert "92,567,521 steps of 60s, above the limit of 2,000,000" in out.stderr
    assert "remove timestamps far from the rest" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("horizon, words", [("100000d", "beyond the maximum of 366 days"),
                                            ("20d", "more than 4 times the history's 3 days")])
def test_the_horizon_is_bounded(horizon, words, tmp_path):
    index = pd.date_range("2026-11-01", periods=3 * 288, freq="5min", tz="UTC")
    path = tmp_path / "h.csv"
    pd.DataFrame({"timestamp": index.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": 10.0}).to_csv(path, index=False)
    for command in (["forecast"], ["plan", "--capacity-per-instance", "5"]):
        out = shaper(*command, "--history", path, "--horizon", horizon, "--output", tmp_path / "o.csv")
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


def test_output_replaces_only_regular_files(tmp_path):
    import threading

    from shaper_pipelines.cli.output import replaces_atomically, write_output

    regular = tmp_path / "r.csv"
    assert replaces_atomically(regular)  # nothing there yet
    regular.write_text("old")
    assert replaces_atomically(regular)
    assert not replaces_atomically("-") and not replaces_atomically("/dev/null")
    link = tmp_path / "link.csv"
    link.symlink_to(regular)
    assert not replaces_atomically(link)
    write_output("new\n", link)
    assert link.is_symlink() and regular.read_text() == "new\n"

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not replaces_atomically(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    write_output("through the pipe\n", fifo)
    reader.join(10)
    assert got == ["through the pipe\n"] and fifo.exists() and not fifo.is_file()
    write_output("discarded\n", "/dev/null")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_forecast_writes_to_standard_output_and_to_dev_null(tmp_path):
    index = pd.date_range("2026-11-01", periods=3 * 288, freq="5min", tz="UTC")
    path = tmp_path / "h.csv"
    pd.DataFrame({"timestamp": index.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": 10.0}).to_csv(path, index=False)
    out = shaper("forecast", "--history", path, "--horizon", "2h", "--output", "-")
    assert out.returncode == 0 and out.stdout.startswith("timestamp,yhat"), out.stderr
    out = shaper("forecast", "--history", path, "--horizon", "2h", "--output", "/dev/null")
    assert out.returncode == 0, out.stderr
    assert not os.path.isfile("/dev/null")


def test_forecast_with_a_calendar_says_what_served_each_calendar_day(tmp_path):
    # The bike trace up to the eve of Memorial Day 2012 (naive D.C. timestamps), with the District's
    # calendar and a calendar folder with one event: every calendar day and event gets a line.
    rows = pd.read_csv(REAL_DATA / "bike" / "capital_bikeshare_hourly.csv")
    history = tmp_path / "bike.csv"
    rows[pd.to_datetime(rows["timestamp"]) < pd.Timestamp("2012-05-28")].to_csv(history, index=False)
    events = tmp_path / "calendars"
    events.mkdir()
    (events / "launch.yaml").write_text("timezone: America/New_York\nevents:\n  - name: launch\n    kind: campaign\n"
                                        "    start: 2012-05-29T08:00\n    duration: 4h\n    expected_uplift: 1.5\n")
    out = tmp_path / "f.csv"
    done = shaper("forecast", "--history", history, "--horizon", "48h", "--output", out, "--calendar", "US-DC",
                  "--events", events, "--timezone", "America/New_York")
    assert done.returncode == 0, done.stderr
    assert "naive timestamps: days are the file's own dates" in done.stderr
    assert "2012-05-28 holiday (Memorial Day): served by" in done.stderr
    assert "2012-05-29 after holiday" in done.stderr
    assert "event launch (4 step(s)): no past occurrence in the history to judge on: its configured uplift 1.5" \
        in done.stderr
    f = pd.read_csv(out)
    assert len(f) == 48 and np.isfinite(f["yhat"]).all()


@pytest.mark.parametrize("args, message", [
    (["--calendar", "US-XX"], "has no subdivision 'XX'"),
    (["--calendar", "Atlantis"], "no public holidays known for country 'ATLANTIS'"),
    (["--calendar", "US", "--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
])
def test_a_calendar_the_forecast_cannot_use_is_a_one_line_error(tmp_path, args, message):
    out = tmp_path / "f.csv"
    done = shaper("forecast", "--history", TRACES[0], "--horizon", "24h", "--output", out, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and not out.exists()
