"""Capacity replay over every real trace in ``data/real``, through the command line.

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

from benchmarks.common import REAL_DATA, publish
from shaper_pipelines.cli import main as shaper
from shaper_pipelines.lib import replay, replay_policies
from shaper_pipelines.lib.action_budget import DEFAULT_MAX_ACTIONS, DEFAULT_MERGE, MERGES, segments
from shaper_pipelines.lib.history import read_history_csv

TRACES = REAL_DATA
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


# shaper plan's variants, each run through the CLI on the same histories: the plan as shipped (within
# the action budget), the same without a budget, and the other ways of merging changes.
VARIANTS = {
    "shaper plan": [],
    "shaper plan, unlimited actions": ["--max-actions", "unlimited"],
    **{f"shaper plan, {m} merge": ["--merge", m] for m in MERGES if m != DEFAULT_MERGE},
}


def changes_per_48h(plan: np.ndarray, trace: replay.Trace) -> int:
    """The most floor changes (scheduled actions) any two consecutive test days of ``plan`` hold."""
    test = plan[trace.test_start:]
    return max(segments(test[i:i + 2 * replay.DAY]) for i in range(0, max(1, len(test) - replay.DAY), replay.DAY))


def run_trace(path: Path, prophet: bool = True) -> dict:
    series = read_history_csv(path)
    trace = replay.prepare(series)
    raw = pd.read_csv(path, dtype=str)
    raw["_t"] = pd.to_datetime(pd.to_numeric(raw["ts"]), unit="s", utc=True) if "ts" in raw.columns else \
        pd.to_datetime(raw["timestamp"], utc=True, format="mixed")
    frontier = replay.reactive_frontier(trace)
    results = replay_policies.run(trace, prophet=prophet, shaper=False)
    plans = {name: np.zeros(len(trace.demand), dtype=np.int64) for name in VARIANTS}
    fc = np.zeros(trace.test_days * replay.DAY)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, origin in enumerate(trace.origins()):
            when = trace.index[origin]
            history = _history_file(path, raw, when, folder)
            grid = trace.index[origin:origin + replay.DAY]
            for name, extra in VARIANTS.items():
                started = time.perf_counter()
                _shaper(["plan", "--history", str(history), "--horizon", "24h", "--capacity-per-instance",
                         repr(trace.c), "--target-utilization", "0.7", "--warmup", "300s",
                         "--output", str(folder / "plan.csv"), *extra], path)
                if not extra:
                    seconds.append(time.perf_counter() - started)
                plans[name][origin:origin + replay.DAY] = np.rint(_on_grid(folder / "plan.csv", "desired_capacity", grid))
            started = time.perf_counter()
            _shaper(["forecast", "--history", str(history), "--horizon", "24h",
                     "--output", str(folder / "forecast.csv")], path)
            seconds.append(time.perf_counter() - started)
            fc[i * replay.DAY:(i + 1) * replay.DAY] = _on_grid(folder / "forecast.csv", "yhat", grid)
        # One 48-hour plan from the last origin, as an operator would make it: its changes are what
        # AWS would be asked to hold at once.
        history = _history_file(path, raw, trace.index[trace.origins()[-1]], folder)
        _shaper(["plan", "--history", str(history), "--horizon", "48h", "--capacity-per-instance", repr(trace.c),
                 "--output", str(folder / "plan48.csv")], path)
        changes_48h_plan = segments(pd.read_csv(folder / "plan48.csv")["desired_capacity"].to_numpy())
    for name, plan in plans.items():
        results.append(replay_policies.score_policy(trace, name, plan, fc if name == "shaper plan" else None,
                                                    frontier))
    return {"results": {r.name: r for r in results}, "test_days": trace.test_days, "seconds": max(seconds),
            "changes": {name: changes_per_48h(plan, trace) for name, plan in plans.items()},
            "changes_48h_plan": changes_48h_plan}


def _shaper(argv: list[str], path: Path) -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        code = shaper(argv)
    if code:
        raise SystemExit(f"{path}: shaper {' '.join(argv[:1])} exited with {code}")


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

    unlimited = "shaper plan, unlimited actions"
    for name, out in per.items():
        r = out["results"]
        s = r["shaper plan"]
        rows.append(f"| {name}{' (no daily cycle)' if name in FLAT else ''} | {out['test_days']} | "
                    + " | ".join(cell(r[p].breach_ratio) for p in policies[1:])
                    + f" | {s.score.cost:.2f} | {r[unlimited].score.cost:.2f} | "
                    + f"{r['reactive tracking (0.7)'].score.cost:.2f} | "
                    + f"{out['changes']['shaper plan']} | {out['changes'][unlimited]} | {out['changes_48h_plan']} | "
                    + f"{cell(r['Prophet floor (defaults)'].mae_ratio) if 'Prophet floor (defaults)' in r else '-'} | "
                    + f"{cell(s.mae_ratio)} | {out['seconds']:.1f} |")
    # The 28 traces of nab and crane are the set earlier figures (and capacity-replay.md) quote.
    core = [n for n in per if n.split("/")[0] in ("nab", "crane")]
    med = {p: float(np.median([per[n]["results"][p].breach_ratio for n in core])) for p in policies}
    med_all = {p: float(np.median([o["results"][p].breach_ratio for o in per.values()])) for p in policies}
    above = {p: sum(o["results"][p].breach_ratio > 1.0 for o in per.values()) for p in policies}
    cost = {p: float(np.mean([o["results"][p].score.cost for o in per.values()])) for p in policies}
    most = {p: max(o["changes"][p] for o in per.values()) for p in VARIANTS}
    flat = {n: per[n]["results"]["shaper plan"].breach_ratio for n in sorted(FLAT) if n in per}
    gmean = lambda xs: float(np.exp(np.mean(np.log(np.maximum(xs, 1e-6)))))
    mae = {p: gmean([o["results"][p].mae_ratio for o in per.values()]) for p in policies
           if per[next(iter(per))]["results"][p].mae_ratio is not None}
    slowest = max(o["seconds"] for o in per.values())
    most_48h = max(per.items(), key=lambda kv: kv[1]["changes_48h_plan"])

    def row(p: str) -> str:
        return (f"| {p} | {med[p]:.3f} | {med_all[p]:.3f} | {above[p]} | {cost[p]:.2f} | "
                f"{most.get(p, '-')} | {f'{mae[p]:.3f}' if p in mae else '-'} |")

    lines = [
        f"Capacity replay over the {len(per)} real traces in `data/real` (`../shared/docs/capacity-replay.md`: "
        "last 4 days, origins daily, c = p99 / 10, reactive tracking at 0.7 underneath every floor). shaper's "
        "figures come from `shaper plan` and `shaper forecast` run on the history before each origin; the plan "
        f"as shipped stays within {DEFAULT_MAX_ACTIONS} floor changes (AWS scheduled actions) per 48 h, merged by "
        f"`{DEFAULT_MERGE}`; the other shaper rows are the same plan without a budget and with the other merges.",
        "",
        f"| policy | median breach_ratio ({len(core)} nab + crane) | median breach_ratio (all {len(per)}) | "
        "traces above 1.0 | mean cost | most changes per 48 h | geometric mean mae_ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[row(p) for p in policies],
        "",
        f"A 48-hour `shaper plan` from the last origin of each trace has at most {most_48h[1]['changes_48h_plan']} "
        f"changes ({most_48h[0]}).",
        "Traces with no daily cycle (do no harm, at most 1.05): "
        + ", ".join(f"{n} {cell(v)}" for n, v in flat.items()) + ".",
        f"Slowest single `shaper plan` / `shaper forecast` call: {slowest:.1f} s.",
        "",
        "<details><summary>per trace</summary>",
        "",
        "| trace | test days | " + " | ".join(f"{p} breach_ratio" for p in policies[1:])
        + " | shaper cost | unlimited cost | reactive 0.7 cost | shaper changes per 48 h | unlimited changes "
        "per 48 h | 48 h plan changes | Prophet mae_ratio | shaper mae_ratio | slowest call s |",
        "|---|---:|" + "---:|" * (len(policies) - 1) + "---:|" * 9,
        *rows,
        "",
        "</details>",
    ]
    publish("replay", "\n".join(lines))


if __name__ == "__main__":
    main(prophet="--no-prophet" not in sys.argv)
