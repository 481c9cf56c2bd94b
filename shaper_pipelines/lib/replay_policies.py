"""The policies ``shaper replay`` and the replay benchmark compare, each run through the protocol of
``lib.replay``: reactive tracking alone, floors from seasonal naive and from Prophet with
defaults, and shaper's own plan. Each forecast or plan sees only the history before its origin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from shaper_pipelines.lib import replay
from shaper_pipelines.lib.forecast import Context, forecast, prophet_model
from shaper_pipelines.lib.planning import make_plan

DAY = replay.DAY


@dataclass
class PolicyResult:
    name: str
    score: replay.Score
    breach_ratio: float
    mae_ratio: float | None  # for policies made from a forecast
    capacity: np.ndarray  # serving instances at every step of the trace
    forecast: np.ndarray | None = None  # over the test window


def _history(trace: replay.Trace, origin: int) -> pd.Series:
    return pd.Series(trace.demand[:origin], index=trace.index[:origin])


def run(trace: replay.Trace, *, prophet: bool = True, shaper: bool = True,
        progress: Callable[[str], None] = lambda _m: None) -> list[PolicyResult]:
    frontier = replay.reactive_frontier(trace)
    results: list[PolicyResult] = []

    def add(name: str, plan: np.ndarray | None, fc: np.ndarray | None) -> None:
        results.append(score_policy(trace, name, plan, fc, frontier))

    progress("reactive target tracking at 0.7")
    add("reactive tracking (0.7)", None, None)
    naive = replay.seasonal_naive(trace)
    progress("seasonal-naive floor")
    add("seasonal-naive floor", replay.floor_from_forecast(trace, naive), naive)

    if prophet:
        ctx = Context(step=replay.STEP, period=DAY, start=trace.index[0])
        fc = np.zeros(trace.test_days * DAY)
        for i, origin in enumerate(trace.origins()):
            progress(f"Prophet (defaults): fitting origin {i + 1}/{trace.test_days}")
            fc[i * DAY:(i + 1) * DAY] = prophet_model(trace.demand[:origin], DAY, ctx)
        add("Prophet floor (defaults)", replay.floor_from_forecast(trace, np.maximum(fc, 0)), fc)

    if shaper:
        add_shaper(trace, add, progress)
    return results


def score_policy(trace: replay.Trace, name: str, plan: np.ndarray | None, fc: np.ndarray | None,
                 frontier=None) -> PolicyResult:
    """One policy's result: ``plan`` a floor per step of the trace (None: reactive alone), ``fc``
    its day-ahead forecast over the test window (None: not made from one)."""
    frontier = frontier or replay.reactive_frontier(trace)
    cap = replay.serving(trace, replay.REACTIVE_TARGET, plan)
    s = replay.score(trace, cap)
    mae = replay.mae_ratio(trace, fc) if fc is not None else None
    return PolicyResult(name, s, replay.breach_ratio(s, frontier), mae, cap, fc)


def add_shaper(trace: replay.Trace, add, progress) -> None:
    plan = np.zeros(len(trace.demand), dtype=np.int64)
    fc = np.zeros(trace.test_days * DAY)
    for i, origin in enumerate(trace.origins()):
        progress(f"shaper: forecast and plan for origin {i + 1}/{trace.test_days}")
        history = _history(trace, origin)
        f = forecast(history, pd.Timedelta(days=1))
        fc[i * DAY:(i + 1) * DAY] = f.frame["yhat"].to_numpy()[:DAY]
        p = make_plan(history, pd.Timedelta(days=1), capacity_per_instance=trace.c,
                      target_utilization=replay.REACTIVE_TARGET)
        plan[origin:origin + DAY] = p.frame["desired_capacity"].to_numpy()[:DAY]
    add("shaper plan", plan, fc)


def table(results: list[PolicyResult]) -> str:
    lines = [f"{'policy':28s} {'breach %':>9s} {'cost':>6s} {'breach_ratio':>13s} {'mae_ratio':>10s}"]
    for r in results:
        mae = f"{r.mae_ratio:10.3f}" if r.mae_ratio is not None else f"{'-':>10s}"
        lines.append(f"{r.name:28s} {r.score.breach_pct:9.2f} {r.score.cost:6.2f} {r.breach_ratio:13.3f} {mae}")
    return "\n".join(lines)


def plot_png(trace: replay.Trace, results: list[PolicyResult], title: str) -> bytes:
    """Demand against each policy's serving capacity over the test window, in instances' worth of
    load, with breaches marked."""
    from shaper_pipelines.lib.plots import _png, _pyplot

    plt = _pyplot()
    s = slice(trace.test_start, None)
    x = trace.index[s].tz_convert("UTC").tz_localize(None)
    fig, axes = plt.subplots(len(results), 1, figsize=(11, 2.1 * len(results)), sharex=True)
    demand = trace.demand[s] / trace.c
    for ax, r in zip(np.atleast_1d(axes), results):
        cap = r.capacity[s]
        ax.plot(x, demand, color="#444444", lw=0.8, label="demand (instances at 100 %)")
        ax.step(x, cap, where="post", color="#1f77b4", lw=1.0, label="serving instances")
        breach = demand > cap
        ax.scatter(x[breach], demand[breach], color="#d62728", s=6, zorder=3, label="breach")
        ax.set_title(f"{r.name}: breach {r.score.breach_pct:.2f} %, cost {r.score.cost:.2f}, "
                     f"breach_ratio {r.breach_ratio:.2f}", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=7)
    return _png(plt, fig, title)
