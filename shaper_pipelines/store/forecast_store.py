"""Forecasts as they were issued: kept so that the metrics that later happen can judge them."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from shaper_pipelines.store.database import Database
from shaper_pipelines.store.schema import forecast_points, forecast_runs

COLUMNS = ("yhat", "yhat_lower", "yhat_upper", "p90")


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).tz_convert("UTC").value // 1_000_000)


class ForecastStore(Database):
    def save(self, target: str, metric: str, frame: pd.DataFrame, *, model: str, version: str,
             backtest_mase: float, beats_naive: bool, produced_by: str) -> int:
        """Store one issued forecast (``frame``: timestamp and COLUMNS), header and points in one
        transaction; returns its id."""
        if frame.empty or not frame["timestamp"].is_monotonic_increasing:
            raise ValueError("a forecast needs at least one step, in time order")
        values = frame[list(COLUMNS)].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("a forecast with NaN or infinite values is not stored")
        ts = [_ms(t) for t in frame["timestamp"]]
        with self.engine.begin() as conn:
            fid = conn.execute(forecast_runs.insert().values(
                target=target, metric=metric, issued_at=datetime.now(timezone.utc), origin_ms=ts[0], model=model,
                version=version, backtest_mase=float(backtest_mase) if np.isfinite(backtest_mase) else 1e9,
                beats_naive=bool(beats_naive), produced_by=produced_by[:200])).inserted_primary_key[0]
            conn.execute(forecast_points.insert(), [
                {"forecast_id": fid, "ts_ms": t, **dict(zip(COLUMNS, map(float, row)))} for t, row in zip(ts, values)])
        return int(fid)

    def issued_before(self, target: str, metric: str, start: pd.Timestamp, end: pd.Timestamp
                      ) -> tuple[dict, pd.DataFrame] | None:
        """The newest forecast issued for [start, end) before it began (origin at or before start),
        with its points inside the window; None when there is none."""
        r, p = forecast_runs, forecast_points
        with self.engine.connect() as conn:
            header = conn.execute(sa.select(r).where(r.c.target == target, r.c.metric == metric,
                                                     r.c.origin_ms <= _ms(start))
                                  .order_by(r.c.origin_ms.desc(), r.c.forecast_id.desc()).limit(1)).mappings().first()
            if header is None:
                return None
            rows = conn.execute(sa.select(p.c.ts_ms, *[p.c[c] for c in COLUMNS])
                                .where(p.c.forecast_id == header["forecast_id"], p.c.ts_ms >= _ms(start),
                                       p.c.ts_ms < _ms(end)).order_by(p.c.ts_ms)).all()
        if not rows:
            return None
        frame = pd.DataFrame(rows, columns=["ts_ms", *COLUMNS])
        frame.insert(0, "timestamp", pd.to_datetime(frame.pop("ts_ms"), unit="ms", utc=True))
        return dict(header), frame
