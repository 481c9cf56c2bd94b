"""Historical metrics in the shaper database: one regular series per (target, metric).

Written a window at a time (a day partition, an imported file) in one transaction that replaces
the window, so a failed or repeated write never leaves half a day or a day twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from shaper_pipelines.store.database import Database
from shaper_pipelines.store.schema import metric_samples

BATCH = 10_000


@dataclass(frozen=True)
class Window:
    """One series' values for ``[start, end)``; ``filled`` marks interpolated points."""

    target: str
    metric: str
    start: pd.Timestamp
    end: pd.Timestamp
    series: pd.Series
    filled: pd.Series | np.ndarray | None
    origin: str

    def rows(self) -> list[dict]:
        inside = (self.series.index >= self.start) & (self.series.index < self.end)
        values = self.series.to_numpy(dtype=np.float64)[inside]
        flags = np.zeros(len(self.series), dtype=bool) if self.filled is None else np.asarray(self.filled, dtype=bool)
        keep = np.isfinite(values)
        ts_ms = self.series.index[inside].as_unit("ms").asi8[keep].tolist()
        return [{"target": self.target, "metric": self.metric, "ts_ms": a, "value": b, "filled": bool(c),
                 "origin": self.origin}
                for a, b, c in zip(ts_ms, values[keep].tolist(), flags[inside][keep].tolist())]


@dataclass(frozen=True)
class SeriesInfo:
    target: str
    metric: str
    points: int
    first: pd.Timestamp
    last: pd.Timestamp


class MetricStore(Database):
    def replace_window(self, target: str, metric: str, start: pd.Timestamp, end: pd.Timestamp,
                       series: pd.Series, *, filled=None, origin: str) -> int:
        """Make ``[start, end)`` of (target, metric) hold exactly ``series``; returns rows written."""
        return self.replace_windows([Window(target, metric, start, end, series, filled, origin)])

    def replace_windows(self, windows: list["Window"]) -> int:
        """Replace every window in one transaction: all are stored, or none. NaNs are not stored."""
        m = metric_samples
        written = 0
        with self.engine.begin() as conn:
            for w in windows:
                rows = w.rows()
                conn.execute(m.delete().where(m.c.target == w.target, m.c.metric == w.metric,
                                              m.c.ts_ms >= _ms(w.start), m.c.ts_ms < _ms(w.end)))
                for lo in range(0, len(rows), BATCH):
                    conn.execute(m.insert(), rows[lo:lo + BATCH])
                written += len(rows)
        return written

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
    return int(pd.Timestamp(ts).value // 1_000_000)  # .value is nanoseconds whatever the unit
