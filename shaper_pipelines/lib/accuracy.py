"""How good a forecast was, once what it forecast has happened.

MASE here is the forecast's MAE over the MAE of seasonal naive (yesterday's values) on the same
steps: below 1 the forecast was worth having. Coverage is the share of steps inside its interval
(nominally 90 %); bias is the mean error relative to the mean level (positive: too high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEGRADED_MASE = 0.9  # worse than this is a warning: close to what yesterday repeated would do
MIN_COVERAGE = 0.7  # a 90 % interval covering less than this is miscalibrated


@dataclass(frozen=True)
class Accuracy:
    mase: float
    coverage: float
    bias: float
    points: int

    @property
    def worse_than_naive(self) -> bool:
        return not self.mase < 1.0

    @property
    def degraded(self) -> bool:
        return self.mase > DEGRADED_MASE or self.coverage < MIN_COVERAGE


def score(forecast: pd.DataFrame, actual: pd.Series, yesterday: pd.Series) -> Accuracy:
    """``forecast`` (timestamp, yhat, yhat_lower, yhat_upper) against ``actual`` and against
    ``yesterday`` (the actual a day earlier, indexed on the same timestamps), on the steps all
    three have."""
    f = forecast.set_index("timestamp")
    both = f.index.intersection(actual.dropna().index).intersection(yesterday.dropna().index)
    if len(both) == 0:
        raise ValueError("the forecast, the actual values and the day before share no step")
    a, y, f = actual.loc[both].to_numpy(), yesterday.loc[both].to_numpy(), f.loc[both]
    err = np.abs(f["yhat"].to_numpy() - a)
    naive = np.abs(y - a).mean()
    mase = float(err.mean() / naive) if naive > 0 else (0.0 if err.mean() == 0 else float("inf"))
    inside = (a >= f["yhat_lower"].to_numpy()) & (a <= f["yhat_upper"].to_numpy())
    level = float(np.abs(a).mean())
    bias = float((f["yhat"].to_numpy() - a).mean() / level) if level > 0 else 0.0
    return Accuracy(mase=mase, coverage=float(inside.mean()), bias=bias, points=len(both))
