"""How a plan's floor changes are merged to fit the action budget, judged by the capacity replay on
more than the last four days of each trace.

The replay benchmark (``benchmarks/replay.py``) judges the last 4 days of each real trace: 29
numbers, where one trace's choice moves the median. Here every trace is also cut at earlier
points - its last 4 days, the 4 before them, and so on, up to 6 windows while 8 days of history
remain before a window - and each window is replayed under the protocol with shaper's plan made
without a budget and with each merge (``lib.action_budget``), through ``make_plan`` as ``shaper
plan`` calls it. Nothing is tuned here; this is the comparison the default merge was chosen by.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from benchmarks.common import REAL_DATA, publish
from benchmarks.replay import changes_per_48h
from shaper_pipelines.lib import replay, replay_policies
from shaper_pipelines.lib.action_budget import DEFAULT_MERGE, MERGES
from shaper_pipelines.lib.history import read_history_csv
from shaper_pipelines.lib.planning import make_plan

WINDOWS = 6  # per trace at most
HISTORY_DAYS = 8  # before a window, at least
VARIANTS = {"unlimited": {"max_actions": None}, **{m: {"merge": m} for m in MERGES}}


def _window(job: tuple[str, int]) -> tuple[str, dict[str, tuple[float, float, int]]]:
    path, k = job
    full = replay.prepare(read_history_csv(path))
    n = len(full.demand) - k * replay.TEST_DAYS * replay.DAY
    demand, index = full.demand[:n], full.index[:n]
    trace = replay.Trace(demand, index, float(np.percentile(demand, 99)) / 10.0, replay.TEST_DAYS)
    frontier = replay.reactive_frontier(trace)
    out = {}
    for name, options in VARIANTS.items():
        plan = np.zeros(len(demand), dtype=np.int64)
        for origin in trace.origins():
            history = pd.Series(demand[:origin], index=index[:origin])
            p = make_plan(history, pd.Timedelta(days=1), capacity_per_instance=trace.c, **options)
            plan[origin:origin + replay.DAY] = p.frame["desired_capacity"].to_numpy()[:replay.DAY]
        r = replay_policies.score_policy(trace, name, plan, None, frontier)
        out[name] = (r.breach_ratio, r.score.cost, changes_per_48h(plan, trace))
    return f"{path.parent.name}/{path.stem} window {k + 1}", out


def main(workers: int = 2) -> None:
    jobs = []
    for path in sorted(REAL_DATA.glob("*/*.csv")):
        days = len(replay.prepare(read_history_csv(path)).demand) // replay.DAY
        jobs += [(path, k) for k in range(WINDOWS) if days - k * replay.TEST_DAYS >= HISTORY_DAYS + replay.TEST_DAYS]
    with ProcessPoolExecutor(workers) as pool:
        results = dict(pool.map(_window, jobs))
    print(f"{len(results)} windows", file=sys.stderr)
    base = np.array([o["unlimited"][1] for o in results.values()])
    rows = []
    for name in VARIANTS:
        ratio = np.array([o[name][0] for o in results.values()])
        cost = np.array([o[name][1] for o in results.values()])
        rows.append(f"| {name}{' (default)' if name == DEFAULT_MERGE else ''} | {np.median(ratio):.3f} | "
                    f"{np.mean(np.minimum(ratio, 2.0)):.3f} | {int(np.sum(ratio > 1.0))} | "
                    f"{int(np.sum(~np.isfinite(ratio)))} | {np.exp(np.mean(np.log(cost / base))):.3f} | "
                    f"{max(o[name][2] for o in results.values())} |")
    publish("merges", "\n".join([
        f"Capacity replay of shaper's plan on {len(results)} four-day windows of the real traces in `data/real` "
        f"(up to {WINDOWS} per trace, each with at least {HISTORY_DAYS} days of history before it), without an "
        "action budget and with each way of merging changes into the budget of 100 per 48 h.",
        "",
        "| merge | median breach_ratio | mean breach_ratio (capped at 2) | windows above 1.0 | windows at inf | "
        "cost / unlimited (geometric mean) | most changes per 48 h |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]))


if __name__ == "__main__":
    main()
