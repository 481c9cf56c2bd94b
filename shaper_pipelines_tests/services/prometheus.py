"""A throwaway Prometheus for tests: Debian's prometheus (2.42) on a free loopback port, its TSDB
backfilled from real traces with ``promtool tsdb create-blocks-from openmetrics``, timestamps
shifted so the data ends just before now (inside retention, and queryable as "recent").

Prometheus 2.42 needs no extra flag for backfilled blocks: overlapping blocks are always
accepted since 2.39 (``--storage.tsdb.allow-overlapping-blocks`` is gone), and blocks older
than the (empty) head are ordinary persisted blocks. They only have to lie inside retention."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shaper_pipelines.lib.export import format_value  # OpenMetrics spells NaN and Inf the same way
from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass
class LoadedSeries:
    """One series exactly as written into the TSDB."""

    metric: str
    labels: dict[str, str]
    timestamps: np.ndarray  # epoch seconds, after shifting
    values: np.ndarray

    def selector(self) -> str:
        """The PromQL selector matching exactly this series."""
        return self.metric + "{" + _format_labels(self.labels) + "}"


def series_frame(s: LoadedSeries) -> pd.Series:
    """The loaded samples as a float Series on a UTC DatetimeIndex."""
    return pd.Series(s.values, index=pd.to_datetime(s.timestamps, unit="s", utc=True))


def _read_trace(csv_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds and values of a ``ts,value`` (Unix seconds) or ``timestamp,value`` (ISO,
    taken as UTC) CSV, sorted by time, finite values only, the last of duplicate timestamps."""
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.columns = [c.strip().lower() for c in frame.columns]
    if "ts" in frame.columns:
        ts = pd.to_numeric(frame["ts"], errors="coerce").to_numpy(dtype=np.float64)
    elif "timestamp" in frame.columns:
        parsed = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="mixed")
        ts = ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64,
                                                                                       na_value=np.nan)
    else:
        raise ValueError(f"{csv_path}: expected a ts,value or timestamp,value header")
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(ts) & np.isfinite(values)
    ts, values = ts[keep], values[keep]
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    last_of_each = np.append(ts[1:] != ts[:-1], True)
    if not last_of_each.any():
        raise ValueError(f"{csv_path}: no sample with a finite value")
    return ts[last_of_each], values[last_of_each]


def load_trace(csv_path: Path, *, metric: str, labels: dict[str, str], end_at: float,
               step: float | None = None) -> LoadedSeries:
    """A real trace shifted by one constant so its last sample lands on ``end_at`` floored to a
    whole minute; spacing and gaps stay as they were. With ``step``, first thinned to the last
    sample of each ``step``-second bucket (a 1-minute trace loaded at 5-minute resolution).

    Pass an ``end_at`` on a multiple of the query step to get samples on the epoch-aligned grid
    that query_range evaluates at."""
    ts, values = _read_trace(Path(csv_path))
    if step:
        bucket = np.floor(ts / step)
        last_in_bucket = np.append(bucket[1:] != bucket[:-1], True)
        ts, values = ts[last_in_bucket], values[last_in_bucket]
    shift = math.floor(end_at / 60) * 60 - ts[-1]
    return LoadedSeries(metric, dict(labels), ts + shift, values)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_labels(labels: dict[str, str]) -> str:
    for name in labels:
        if not _LABEL.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
    return ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))




def _format_timestamp(t: float) -> str:
    t = float(t)
    return str(int(t)) if t.is_integer() else repr(t)


def to_openmetrics(series: list[LoadedSeries]) -> str:
    """OpenMetrics text for promtool: one ``# TYPE <metric> gauge`` per family, each family's
    samples together, each series in increasing time order, ``# EOF`` last."""
    lines = []
    for metric in dict.fromkeys(s.metric for s in series):
        if not _NAME.fullmatch(metric):
            raise ValueError(f"invalid metric name {metric!r}")
        lines.append(f"# TYPE {metric} gauge")
        for s in series:
            if s.metric != metric:
                continue
            head = f"{metric}{{{_format_labels(s.labels)}}} "
            ts, values = np.asarray(s.timestamps, dtype=np.float64), np.asarray(s.values, dtype=np.float64)
            order = np.argsort(ts, kind="stable")
            # promtool silently keeps only the first of two samples at one time, and cannot
            # parse a NaN time: either way the TSDB would not hold what the series claims.
            if not np.isfinite(ts).all() or (np.diff(ts[order]) <= 0).any():
                raise ValueError(f"{s.selector()}: timestamps must be finite and distinct")
            lines.extend(head + format_value(values[i]) + " " + _format_timestamp(ts[i]) for i in order)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class PrometheusServer:
    url: str
    port: int
    directory: Path
    process: subprocess.Popen

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """An instant query at ``at`` (epoch seconds; default the server's now); ``data.result``."""
        return self._get("/api/v1/query", {"query": promql} if at is None else {"query": promql, "time": at})

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        """A range query (epoch seconds); ``data.result`` of the answer."""
        return self._get("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})

    def _get(self, path: str, params: dict) -> list[dict]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}",
                                        timeout=30) as response:
                return json.load(response)["data"]["result"]
        except urllib.error.HTTPError as exc:
            # Prometheus explains a rejected query in the JSON body; HTTPError alone says only "400".
            raise RuntimeError(f"Prometheus rejected {params}: {exc.read().decode(errors='replace')}") from exc

    def kill(self) -> None:
        """SIGKILL now, leaving the directory: an outage in the middle of whatever queries it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate (kill if it lingers), then remove the directory. Safe to call twice."""
        end_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install Debian's prometheus package (apt-get install prometheus)")
    return found


def _backfill(promtool: str, series: list[LoadedSeries], directory: Path) -> None:
    source = directory / "backfill.om"
    source.write_text(to_openmetrics(series))
    # promtool cuts 2h blocks by default: ~190 blocks and ~10 s for 16 days of data. The hidden
    # --max-block-duration (present in 2.42) picks the largest of Prometheus's own compaction
    # ranges (2h x 3^n) that fits: 486h, so 16 days make 2 blocks in ~0.2 s.
    made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                           "--max-block-duration=486h", str(source), str(directory / "tsdb")],
                          capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        raise RuntimeError(f"promtool could not build blocks (exit {made.returncode}): {made.stderr[-3000:]}")
    source.unlink()  # the blocks hold it now; no need to keep a second copy on disk


def _has_data(server: PrometheusServer, s: LoadedSeries) -> bool:
    """Whether a range query over the loaded window returns a sample of ``s``."""
    first, last = float(np.min(s.timestamps)), float(np.max(s.timestamps))
    step = max(60.0, (last - first) / 1000)  # well under the 11,000-point limit per query
    return bool(server.query_range(s.selector(), first, last, step))


def start_prometheus(series: list[LoadedSeries] | None = None, *, directory: Path | None = None,
                     retention: str = "3650d", timeout: float = 60.0, scrape_configs: list[dict] | None = None,
                     scrape_interval: str = "1m") -> PrometheusServer:
    """Start Prometheus on a free loopback port, after backfilling ``series`` into a new temp
    directory; return once it is ready and the first series is queryable.

    With ``directory`` (a killed or crashed server's) it starts again on that data without
    backfilling; ``series`` then only says what to wait for. ``scrape_configs`` (prometheus.yml's
    entries, as dicts) gives it targets to scrape every ``scrape_interval``; by default it has none."""
    prometheus, promtool = _binary("prometheus"), _binary("promtool")
    fresh = directory is None
    directory = Path(tempfile.mkdtemp(prefix="shaper-prom-")) if fresh else Path(directory)
    try:
        if fresh and series:
            _backfill(promtool, series, directory)
        # By default no scrape targets at all: the server serves only what was backfilled. JSON is
        # YAML, and keeps the default file exactly what it always was.
        (directory / "prometheus.yml").write_text(f"global:\n  scrape_interval: {scrape_interval}\n"
                                                  f"  evaluation_interval: {scrape_interval}\n"
                                                  f"scrape_configs: {json.dumps(scrape_configs or [])}\n")
    except BaseException:
        if fresh:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    port = free_port()
    with open(directory / "prometheus.log", "ab") as log:
        process = subprocess.Popen(
            [prometheus, f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'tsdb'}", f"--storage.tsdb.retention.time={retention}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", port, directory, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200 and (not series or _has_data(server, series[0])):
                    return server
        except (OSError, RuntimeError):
            pass  # not listening yet, or still loading blocks (503)
        time.sleep(0.2)
    exited = process.poll()
    state = f"exited with status {exited}" if exited is not None else f"was not ready with data in {timeout:.0f}s"
    tail = (directory / "prometheus.log").read_text(errors="replace")[-3000:]
    server.kill()
    if fresh:
        shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"Prometheus {state}; end of prometheus.log:\n{tail}")
