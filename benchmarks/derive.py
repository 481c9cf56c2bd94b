"""How well a profile derived from history reproduces the next day.

For each Crane trace: fit the weekly shape (``lib.derive.fit_weekly_shape``) on everything
before the final day, render it over the held-back final day, and compare its mean absolute
error with two baselines measured in the same run: a flat profile at the training mean, and
yesterday's values repeated. A ratio below 1 beats the baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.common import REAL_DATA, publish
from shaper_pipelines.lib.derive import fit_weekly_shape
from shaper_pipelines.lib.history import load_history

TRACES = REAL_DATA / "crane"
DAILY = [f"cpu_{i}" for i in range(5)]  # strong daily cycles (the data's README)
FLAT = [f"cpu_{i}" for i in range(5, 8)]  # almost none


def score(name: str) -> tuple[float, float, int]:
    series, _ = load_history(TRACES / f"{name}.csv", 300)
    cut = series.index[-1].floor("D")
    train, test = series[series.index < cut], series[series.index >= cut]
    mae = lambda pred: float(np.mean(np.abs(np.asarray(pred) - test.to_numpy())))
    derived = mae(fit_weekly_shape(train).at(test.index))
    flat = mae(np.full(len(test), train.mean()))
    yesterday = mae(train.reindex(test.index - pd.Timedelta(days=1)).to_numpy())
    return derived / flat, derived / yesterday, len(train) // 288


def main() -> None:
    rows, ratios = [], {}
    for name in DAILY + FLAT:
        vs_flat, vs_yesterday, days = score(name)
        ratios[name] = vs_flat
        kind = "daily cycle" if name in DAILY else "little cycle"
        rows.append(f"| crane/{name} | {kind} | {days} | {vs_flat:.3f} | {vs_yesterday:.3f} |")
    gmean = float(np.exp(np.mean(np.log([ratios[n] for n in DAILY]))))
    lines = [
        "Derived peak/valley profiles against the held-back final day (MAE ratio; below 1 is better):",
        "",
        "| trace | kind | training days | vs flat at the mean | vs yesterday repeated |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        f"Geometric mean against flat on the daily-cycle traces (cpu_0 .. cpu_4): **{gmean:.3f}**.",
    ]
    publish("derive", "\n".join(lines))


if __name__ == "__main__":
    main()
