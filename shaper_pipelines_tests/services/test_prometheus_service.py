"""The throwaway Prometheus itself: real traces go in through promtool and come back out of the
HTTP API sample for sample, at the times load_trace says they are."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines_tests.services.prometheus import (LoadedSeries, load_trace, start_prometheus,
                                                        to_openmetrics)

REAL_DATA = Path(__file__).resolve().parents[2] / "data" / "real"
END_AT = time.time() - 120
TRACES = {"crane-cpu_0": ("crane/cpu_0.csv", 300), "ec2-53ea38": ("nab/ec2_cpu_utilization_53ea38.csv", None)}
# A label value that needs every escape OpenMetrics has, in its own family so that it does not
# change how many shaper_test_cpu series there are.
AWKWARD = 'a "quoted" back\\slash\nand newline'


@pytest.fixture(scope="module")
def loaded():
    series = [load_trace(REAL_DATA / path, metric="shaper_test_cpu", labels={"instance": name, "job": "traces"},
                         end_at=END_AT, step=step) for name, (path, step) in TRACES.items()]
    awkward = LoadedSeries("shaper_test_escape", {"instance": AWKWARD, "job": "traces"},
                           series[0].timestamps[-3:], np.array([0.1, 1e-300, -2.5e17]))
    server = start_prometheus([*series, awkward])
    yield server, series, awkward
    server.stop()


def test_load_trace_shifts_to_the_minute_and_keeps_the_last_sample_of_each_step():
    raw = pd.read_csv(REAL_DATA / "crane/cpu_0.csv")
    s = load_trace(REAL_DATA / "crane/cpu_0.csv", metric="m", labels={}, end_at=END_AT, step=300)
    assert s.timestamps[-1] == math.floor(END_AT / 60) * 60
    assert set(np.diff(s.timestamps)) == {300.0}
    # cpu_0 starts on a 5-minute boundary, so each bucket's last sample is every fifth row's last.
    assert len(s.values) == len(raw) // 5
    np.testing.assert_array_equal(s.values, raw["value"].to_numpy()[4::5])
    nab = load_trace(REAL_DATA / "nab/ec2_cpu_utilization_53ea38.csv", metric="m", labels={}, end_at=END_AT)
    assert len(nab.values) == 4032 and nab.timestamps[-1] == s.timestamps[-1]


def test_openmetrics_text_groups_families_and_escapes_labels():
    a = LoadedSeries("x", {"b": "1", "a": 'q"\\\n'}, np.array([20.0, 10.0]), np.array([0.1, 2.0]))
    b = LoadedSeries("y", {}, np.array([5.5]), np.array([math.nan]))
    c = LoadedSeries("x", {"a": "2"}, np.array([1.0]), np.array([-math.inf]))
    assert to_openmetrics([a, b, c]).splitlines() == [
        "# TYPE x gauge",
        'x{a="q\\"\\\\\\n",b="1"} 2.0 10',
        'x{a="q\\"\\\\\\n",b="1"} 0.1 20',
        'x{a="2"} -Inf 1',
        "# TYPE y gauge",
        "y{} NaN 5.5",
        "# EOF",
    ]
    with pytest.raises(ValueError, match="metric name"):
        to_openmetrics([LoadedSeries("1bad", {}, np.array([1.0]), np.array([1.0]))])
    with pytest.raises(ValueError, match="distinct"):
        to_openmetrics([LoadedSeries("x", {}, np.array([1.0, 1.0]), np.array([1.0, 2.0]))])


@pytest.mark.parametrize("instance", list(TRACES))
def test_query_range_at_5_minutes_returns_every_loaded_sample(loaded, instance):
    server, series, _ = loaded
    s = next(s for s in series if s.labels["instance"] == instance)
    end = s.timestamps[-1]
    start = end - 14 * 86400  # on the samples' 5-minute phase, so each step lands on a sample
    result = server.query_range(s.selector(), start, end, 300)
    assert [r["metric"] for r in result] == [{"__name__": "shaper_test_cpu", **s.labels}]
    got = np.array([(t, float(v)) for t, v in result[0]["values"]])
    in_window = s.timestamps >= start
    np.testing.assert_array_equal(got[:, 0], s.timestamps[in_window])
    np.testing.assert_allclose(got[:, 1], s.values[in_window], rtol=1e-9, atol=0)


def test_instant_query_sees_both_traces_at_their_end_and_labels_round_trip(loaded):
    server, series, awkward = loaded
    # At the data's end, not at now: END_AT is fixed when pytest imports this module, which in a
    # full run can be minutes before this test, beyond Prometheus's five-minute lookback.
    last = max(s.timestamps[-1] for s in series)
    result = {r["metric"]["instance"]: float(r["value"][1]) for r in server.query("shaper_test_cpu", at=last)}
    assert result == {s.labels["instance"]: s.values[-1] for s in series}
    escaped = server.query_range("shaper_test_escape", awkward.timestamps[0], awkward.timestamps[-1], 300)
    assert [r["metric"]["instance"] for r in escaped] == [AWKWARD]
    assert [float(v) for _, v in escaped[0]["values"]] == list(awkward.values)


def test_kill_refuses_connections_and_stop_removes_the_directory():
    server = start_prometheus()
    assert server.query("vector(1)")[0]["value"][1] == "1"
    server.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert (server.directory / "prometheus.log").exists()  # kill leaves everything for a restart
    server.stop()
    assert not server.directory.exists()
    server.stop()


def test_without_the_binaries_it_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="install Debian's prometheus package"):
        start_prometheus()
