"""Historical metrics in the shaper database: one regular series per (target, metric).

Written a window at a time (a day partition, an imported file) in one transaction that replaces
the window, so a failed or repeated write never leaves half a day or a day twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from shaper_pipelines.store.database import open_database
from shaper_pipelines.store.schema import metric_samples

BATCH = 10_000


@dataclass(frozen=True)
class SeriesInfo:
    target: str
    metric: str
    points: int
    first: pd.Timestamp
    last: pd.Timestamp


class MetricStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = open_database(url)

    @classmethod
    def from_env(cls) -> "MetricStore":
        from shaper_pipelines.settings import database_url

        return cls(database_url())

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def replace_window(
        self, target: str, metric: str, start: pd.Timestamp, end: pd.Timestamp, series: pd.Series,
        *, filled: pd.Series | np.ndarray | None = None, origin: str,
    ) -> int:
        """Make ``[start, end)`` of (target, metric) hold exactly ``series`` (NaNs are not stored).
        Returns the rows written."""
        series = series[(series.index >= start) & (series.index < end)]
        mask = np.zeros(len(series), dtype=bool) if filled is None else np.asarray(filled, dtype=bool)[-len(series):]
        keep = np.isfinite(series.to_numpy(dtype=np.float64))
        ts_ms = series.index.as_unit("ms").asi8[keep].tolist()
        values = series.to_numpy(dtype=np.float64)[keep].tolist()
        flags = mask[keep].tolist() if len(mask) == len(keep) else [False] * len(values)
        m = metric_samples
        with self.engine.begin() as conn:
            conn.execute(m.delete().where(m.c.target == target, m.c.metric == metric,
                                          m.c.ts_ms >= _ms(start), m.c.ts_ms < _ms(end)))
            for lo in range(0, len(ts_ms), BATCH):
                conn.execute(m.insert(), [
                    {"target": target, "metric": metric, "ts_ms": a, "value": b, "filled": bool(c), "origin": origin}
                    for a, b, c in zip(ts_ms[lo:lo + BATCH], values[lo:lo + BATCH], flags[lo:lo + BATCH])
                ])
        return len(ts_ms)

    def read(self, target: str, metric: str, start: pd.Timestamp | None = None,
             end: pd.Timestamp | None = None) -> pd.DataFrame:
        """``value`` and ``filled`` on a UTC DatetimeIndex named ``timestamp``, ``start <= t < end``."""
        m = metric_samples
        query = sa.select(m.c.ts_ms, m.c.value, m.c.filled).where(m.c.target == target, m.c.metric == metric)
        if start is not None:
            query = query.where(m.c.ts_ms >= _ms(start))
        if end is not None:
            query = query.where(m.c.ts_ms < _ms(end))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(m.c.ts_ms)).all()
        index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], unit="ms", utc=True), name="timestamp")
        return pd.DataFrame({"value": np.array([r[1] for r in rows], dtype=np.float64),
                             "filled": np.array([bool(r[2]) for r in rows], dtype=bool)}, index=index)

    def series(self) -> list[SeriesInfo]:
        m = metric_samples
        query = (sa.select(m.c.target, m.c.metric, sa.func.count(), sa.func.min(m.c.ts_ms), sa.func.max(m.c.ts_ms))
                 .group_by(m.c.target, m.c.metric).order_by(m.c.target, m.c.metric))
        with self.engine.connect() as conn:
            return [SeriesInfo(t, mt, n, pd.Timestamp(lo, unit="ms", tz="UTC"), pd.Timestamp(hi, unit="ms", tz="UTC"))
                    for t, mt, n, lo, hi in conn.execute(query)]


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).as_unit("ms").value)
