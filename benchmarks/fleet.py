"""Fleet scale: day-ahead forecasts and scaling plans for 1,000 series of 14 days at 5 minutes,
against a per-series loop of Prophet with defaults, in the same run, in one process each.

The series are 14-day windows of the real traces in ``data/real`` (5-minute means,
random start days, each scaled by a random factor so no two are alike; seeded). Each is forecast
from its first 13 days and scored on the 14th. shaper forecasts and plans every series; Prophet
is fitted on a random sample of them (``PROPHET_SAMPLE``) and its time for the whole fleet is that
sample's mean time times the fleet size - said so in the results, because a full Prophet loop
takes most of an hour here. Accuracy is compared on the same sample.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from benchmarks.common import REAL_DATA, publish
from shaper_pipelines.lib import replay
from shaper_pipelines.lib.forecast import Context, forecast, prophet_model
from shaper_pipelines.lib.history import read_history_csv
from shaper_pipelines.lib.planning import make_plan

TRACES = REAL_DATA
FLEET = 1000
PROPHET_SAMPLE = 40
DAY = 288
DAYS = 14


def fleet(n: int, seed: int = 7) -> list[pd.Series]:
    rng = np.random.default_rng(seed)
    sources = []
    for path in sorted(TRACES.glob("*/*.csv")):
        trace = replay.prepare(read_history_csv(path))
        if len(trace.demand) >= DAYS * DAY:
            sources.append((trace.demand, trace.index))
    out = []
    for i in range(n):
        demand, index = sources[i % len(sources)]
        days = len(demand) // DAY
        first = int(rng.integers(0, days - DAYS + 1)) * DAY if days > DAYS else len(demand) - DAYS * DAY
        window = demand[first:first + DAYS * DAY] * float(rng.uniform(0.5, 2.0))
        out.append(pd.Series(window, index=index[first:first + DAYS * DAY]))
    return out


def main(n: int = FLEET) -> None:
    series = fleet(n)
    mae = lambda a, b: float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))
    shaper_err, naive_err = np.zeros(n), np.zeros(n)
    started = time.perf_counter()
    for i, s in enumerate(series):
        history, truth = s.iloc[:-DAY], s.iloc[-DAY:].to_numpy()
        f = forecast(history, pd.Timedelta(days=1))
        c = float(np.percentile(history, 99)) / 10 or 1.0
        make_plan(history, pd.Timedelta(days=1), capacity_per_instance=c)
        shaper_err[i] = mae(f.frame["yhat"], truth)
        naive_err[i] = mae(history.to_numpy()[-DAY:], truth)
        if (i + 1) % 100 == 0:
            print(f"shaper: {i + 1}/{n} series, {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    shaper_seconds = time.perf_counter() - started

    sample = np.random.default_rng(11).choice(n, size=min(PROPHET_SAMPLE, n), replace=False)
    prophet_err = np.zeros(len(sample))
    started = time.perf_counter()
    for j, i in enumerate(sample):
        history, truth = series[i].iloc[:-DAY], series[i].iloc[-DAY:].to_numpy()
        ctx = Context(step=300.0, period=DAY, start=history.index[0])
        prophet_err[j] = mae(prophet_model(history.to_numpy(), DAY, ctx), truth)
    prophet_each = (time.perf_counter() - started) / len(sample)
    prophet_fleet = prophet_each * n

    ok = naive_err > 0
    ratio = lambda e, idx: float(np.exp(np.mean(np.log(np.maximum(e[ok[idx]], 1e-12) / naive_err[idx][ok[idx]]))))
    all_idx = np.arange(n)
    lines = [
        f"Fleet of {n} series (14-day windows of the real traces, 5-minute steps; forecast from 13 days, "
        "scored on the 14th), one process:",
        "",
        "| | time for the fleet | per series | MAE vs seasonal naive (geometric mean) |",
        "|---|---:|---:|---:|",
        f"| shaper: forecast + scaling plan | {shaper_seconds:.0f} s | {shaper_seconds / n * 1000:.0f} ms | "
        f"{ratio(shaper_err, all_idx):.3f} (all), {ratio(shaper_err[sample], sample):.3f} (Prophet's sample) |",
        f"| Prophet with defaults, forecast only | {prophet_fleet:.0f} s (from a {len(sample)}-series sample) | "
        f"{prophet_each * 1000:.0f} ms | {ratio(prophet_err, sample):.3f} (its sample) |",
        "",
        f"shaper takes **{shaper_seconds / prophet_fleet:.2f}x** the time of the Prophet loop (aim: 0.33 or less) "
        "while also making the plans.",
    ]
    publish("fleet", "\n".join(lines))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else FLEET)
