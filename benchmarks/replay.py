"""Capacity replay over every real trace in ``../shared/data/real``, through the command line.

For each trace and each of its test days, the history before the day's origin is written in the
trace's own format and given to ``shaper plan`` and ``shaper forecast`` exactly as a user (or a
judge) would; their CSVs are read back onto the replay's 5-minute grid. Reactive tracking, the
seasonal-naive floor and Prophet with defaults run through the same protocol in the same run
(``lib.replay``, ``../shared/docs/capacity-replay.md``). Figures are ratios against those
baselines; nothing here is tuned per trace.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, publish
from shaper_pipelines.cli import main as shaper
from shaper_pipelines.lib import replay, replay_policies
from shaper_pipelines.lib.history import read_history_csv

TRACES = ROOT.parent / "shared" / "data" / "real"
FLAT = {"crane/cpu_5", "crane/cpu_6", "crane/cpu_7"}  # almost no daily cycle (the data's README)


def _history_file(raw_path: Path, raw: pd.DataFrame, origin: pd.Timestamp, folder: Path) -> Path:
    """The trace's own rows before ``origin``, in its own columns."""
    out = folder / f"history{raw_path.suffix}"
    raw[raw["_t"] < origin].drop(columns="_t").to_csv(out, index=False)
    return out


def _on_grid(csv: Path, column: str, index: pd.DatetimeIndex) -> np.ndarray:
    """A CLI result on the replay's 5-minute grid: the mean of its rows inside each step."""
    frame = pd.read_csv(csv)
    s = pd.Series(frame[column].to_numpy(dtype=float), index=pd.to_datetime(frame["timestamp"], utc=True))
    means = s.resample("5min", origin="epoch").mean()
    return means.reindex(index).ffill().bfill().to_numpy()


def run_trace(path: Path, prophet: bool = True) -> dict:
    series = read_history_csv(path)
    trace = replay.prepare(series)
    raw = pd.read_csv(path, dtype=str)
    raw["_t"] = pd.to_datetime(pd.to_numeric(raw["ts"]), unit="s", utc=True) if "ts" in raw.columns else \
        pd.to_datetime(raw["timestamp"], utc=True, format="mixed")
    frontier = replay.reactive_frontier(trace)
    results = replay_policies.run(trace, prophet=prophet, shaper=False)
    plan = np.zeros(len(trace.demand), dtype=np.int64)
    fc = np.zeros(trace.test_days * replay.DAY)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, origin in enumerate(trace.origins()):
            when = trace.index[origin]
            history = _history_file(path, raw, when, folder)
            grid = trace.index[origin:origin + replay.DAY]
            with contextlib.redirect_stderr(io.StringIO()):
                started = time.perf_counter()
                code = shaper(["plan", "--history", str(history), "--horizon", "24h", "--capacity-per-instance",
                               repr(trace.c), "--target-utilization", "0.7", "--warmup", "300s",
                               "--output", str(folder / "plan.csv")])
                seconds.append(time.perf_counter() - started)
                started = time.perf_counter()
                code |= shaper(["forecast", "--history", str(history), "--horizon", "24h",
                                "--output", str(folder / "forecast.csv")])
                seconds.append(time.perf_counter() - started)
            if code:
                raise SystemExit(f"{path}: shaper exited with {code}")
            plan[origin:origin + replay.DAY] = np.rint(_on_grid(folder / "plan.csv", "desired_capacity", grid))
            fc[i * replay.DAY:(i + 1) * replay.DAY] = _on_grid(folder / "forecast.csv", "yhat", grid)
    results.append(replay_policies.score_policy(trace, "shaper plan", plan, fc, frontier))
    return {"results": {r.name: r for r in results}, "test_days": trace.test_days, "seconds": max(seconds)}


def main(prophet: bool = True) -> None:
    paths = sorted(TRACES.glob("*/*.csv"))
    rows, per = [], {}
    for path in paths:
        name = f"{path.parent.name}/{path.stem}"
        started = time.perf_counter()
        out = run_trace(path, prophet)
        per[name] = out
        r = out["results"]
        print(f"{name}: " + ", ".join(f"{k} {v.breach_ratio:.2f}" for k, v in r.items())
              + f" ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
    policies = list(next(iter(per.values()))["results"])

    def cell(v: float) -> str:
        return "inf" if not np.isfinite(v) else f"{v:.2f}"

    for name, out in per.items():
        r = out["results"]
        s = r["shaper plan"]
        rows.append(f"| {name}{' (no daily cycle)' if name in FLAT else ''} | {out['test_days']} | "
                    + " | ".join(cell(r[p].breach_ratio) for p in policies[1:])
                    + f" | {s.score.cost:.2f} | {r['reactive tracking (0.7)'].score.cost:.2f} | "
                    + f"{cell(r['Prophet floor (defaults)'].mae_ratio) if 'Prophet floor (defaults)' in r else '-'} | "
                    + f"{cell(s.mae_ratio)} | {out['seconds']:.1f} |")
    med = {p: float(np.median([o["results"][p].breach_ratio for o in per.values()])) for p in policies}
    flat = {n: per[n]["results"]["shaper plan"].breach_ratio for n in sorted(FLAT) if n in per}
    gmean = lambda xs: float(np.exp(np.mean(np.log(np.maximum(xs, 1e-6)))))
    mae = {p: gmean([o["results"][p].mae_ratio for o in per.values()]) for p in policies
           if per[next(iter(per))]["results"][p].mae_ratio is not None}
    slowest = max(o["seconds"] for o in per.values())
    lines = [
        f"Capacity replay over the {len(per)} real traces (`../shared/docs/capacity-replay.md`: last 4 days, "
        "origins daily, c = p99 / 10, reactive tracking at 0.7 underneath every floor). shaper's figures come "
        "from `shaper plan` and `shaper forecast` run on the history before each origin.",
        "",
        "| policy | median breach_ratio | geometric mean mae_ratio |",
        "|---|---:|---:|",
        *[f"| {p} | {med[p]:.3f} | {mae[p]:.3f} |" if p in mae else f"| {p} | {med[p]:.3f} | - |" for p in policies],
        "",
        f"Traces with no daily cycle (do no harm, at most 1.05): "
        + ", ".join(f"{n} {cell(v)}" for n, v in flat.items()) + ".",
        f"Slowest single `shaper plan` / `shaper forecast` call: {slowest:.1f} s.",
        "",
        "<details><summary>per trace</summary>",
        "",
        "| trace | test days | " + " | ".join(f"{p} breach_ratio" for p in policies[1:])
        + " | shaper cost | reactive 0.7 cost | Prophet mae_ratio | shaper mae_ratio | slowest call s |",
        "|---|---:|" + "---:|" * (len(policies) - 1) + "---:|---:|---:|---:|---:|",
        *rows,
        "",
        "</details>",
    ]
    publish("replay", "\n".join(lines))


if __name__ == "__main__":
    main(prophet="--no-prophet" not in sys.argv)
