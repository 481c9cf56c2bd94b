"""The service's side of a rehearsal read from Prometheus: each PromQL query evaluated at a 1 s
step over exactly the rehearsal's seconds, as per-second columns beside the agent's samples.

Second ``t`` of a run covers ``[started + t, started + t + 1)`` (the agent's clock), so its value
is the query evaluated at ``started + t + 1`` over a ``$window`` ending there. Prometheus' range
queries take whole seconds; a run started at a fraction of a second is read up to half a second
off, which a rate over a few seconds' window does not notice.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from shaper_pipelines.lib.prometheus import PrometheusSettings, fetch_range

SCALE = {"service_p50_ms": 1000.0, "service_p95_ms": 1000.0, "service_p99_ms": 1000.0}  # PromQL gives seconds


def prometheus_observations(settings: PrometheusSettings, queries: dict[str, str], started_at: float,
                            seconds: int) -> pd.DataFrame:
    """Columns ``t`` (0 .. seconds-1) and one per query (NaN where Prometheus had no value).
    Raises PrometheusUnavailable or PrometheusQueryError as ``fetch_range`` does."""
    frame = pd.DataFrame({"t": np.arange(seconds, dtype=int)})
    if seconds <= 0:
        return frame.assign(**{c: np.array([], dtype=float) for c in queries})
    first = math.floor(started_at + 0.5) + 1
    start = pd.Timestamp(first, unit="s", tz="UTC")
    end = start + pd.Timedelta(seconds=seconds)  # exclusive
    for column, query in queries.items():
        series = fetch_range(settings, query, start, end, pd.Timedelta(seconds=1))
        values = np.full(seconds, np.nan)
        if len(series):
            # In seconds whatever unit pandas parsed the index in (microseconds, here).
            t = np.rint((series.index - start) / pd.Timedelta(seconds=1)).astype(int)
            ok = (t >= 0) & (t < seconds)
            values[t[ok]] = series.to_numpy(dtype=float)[ok] * SCALE.get(column, 1.0)
        frame[column] = values
    return frame
