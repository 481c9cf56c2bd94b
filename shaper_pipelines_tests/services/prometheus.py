"""A throwaway Prometheus for tests: Debian's prometheus on a free loopback port, its TSDB
backfilled from real traces with ``promtool tsdb create-blocks-from openmetrics``, timestamps
shifted so the data ends just before now (inside retention, and queryable as "recent")."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shaper_pipelines.lib.history import read_history_csv
from shaper_pipelines_tests.services.postgres import free_port


@dataclass
class LoadedSeries:
    metric: str
    labels: dict[str, str]
    timestamps: np.ndarray  # epoch seconds, after shifting
    values: np.ndarray


def load_trace(csv_path: Path, *, metric: str, labels: dict[str, str], end_at: float,
               step: float | None = None) -> LoadedSeries:
    """A real trace shifted so that its last sample lands on ``end_at`` (floored to the step),
    optionally thinned to one sample (the last) per ``step`` seconds."""
    raw = read_history_csv(csv_path)
    raw = raw[np.isfinite(raw.to_numpy())].sort_index()
    raw = raw[~raw.index.duplicated(keep="last")]
    ts = raw.index.as_unit("s").asi8.astype(np.float64)
    values = raw.to_numpy(dtype=np.float64)
    if step:
        bucket = np.floor(ts / step)
        last_of_bucket = np.append(bucket[1:] != bucket[:-1], True)
        ts, values = bucket[last_of_bucket] * step, values[last_of_bucket]
    grain = step or 60.0
    shift = np.floor(end_at / grain) * grain - ts[-1]
    return LoadedSeries(metric, labels, ts + shift, values)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_openmetrics(series: list[LoadedSeries]) -> str:
    lines = []
    for metric in dict.fromkeys(s.metric for s in series):
        lines.append(f"# TYPE {metric} gauge")
        for s in (s for s in series if s.metric == metric):
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            lines.extend(f"{metric}{{{labels}}} {float(v)!r} {int(t)}" for t, v in zip(s.timestamps, s.values))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class PrometheusServer:
    url: str
    port: int
    directory: Path
    process: subprocess.Popen

    def query(self, promql: str) -> list[dict]:
        return self._get("/api/v1/query", {"query": promql})

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        return self._get("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})

    def _get(self, path: str, params: dict) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
            return json.load(response)["data"]["result"]

    def kill(self) -> None:
        """SIGKILL now: an outage in the middle of whatever is querying it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install Debian's prometheus package (scripts/install test does)")
    return found


def start_prometheus(series: list[LoadedSeries] | None = None, *, directory: Path | None = None,
                     retention: str = "3650d", timeout: float = 60.0) -> PrometheusServer:
    """Start Prometheus on a free port; with ``series``, backfill them first. With ``directory``
    (a stopped server's), start again on the same data."""
    prometheus, promtool = _binary("prometheus"), _binary("promtool")
    fresh = directory is None
    directory = directory or Path(tempfile.mkdtemp(prefix="shaper-prom-"))
    tsdb = directory / "tsdb"
    if fresh and series:
        source = directory / "history.om"
        source.write_text(to_openmetrics(series))
        made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
                              capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            raise RuntimeError(f"promtool could not build blocks: {made.stderr[-2000:]}")
    # No scrape targets: this server only serves what was backfilled.
    (directory / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    log = open(directory / "prometheus.log", "ab")
    process = subprocess.Popen(
        [prometheus, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={tsdb}",
         f"--storage.tsdb.retention.time={retention}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", port, directory, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200 and (not series or _has_data(server, series[0])):
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    tail = (directory / "prometheus.log").read_text(errors="replace")[-2000:]
    server.kill()
    raise RuntimeError(f"Prometheus did not become ready with data in {timeout:.0f}s:\n{tail}")


def _has_data(server: PrometheusServer, s: LoadedSeries) -> bool:
    selector = s.metric + "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels.items()) + "}"
    return bool(server.query_range(selector, s.timestamps[-10], s.timestamps[-1], 60))


def series_frame(s: LoadedSeries) -> pd.Series:
    return pd.Series(s.values, index=pd.to_datetime(s.timestamps, unit="s", utc=True))
