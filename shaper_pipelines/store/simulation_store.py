"""Simulations: what was dispatched to which agent, and the load it achieved second by second."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa

from shaper_pipelines.store.database import Database
from shaper_pipelines.store.schema import simulation_runs, simulation_samples


@dataclass(frozen=True)
class Dispatch:
    run_key: str
    profile_id: str
    profile_version: int
    agent_url: str
    resource: str
    intensity: float
    scaling_target: str | None = None  # a capacity rehearsal of this target's service
    service_version: str | None = None


class SimulationStore(Database):
    def record_dispatches(self, dispatches: list[Dispatch], dispatched_by: str) -> None:
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            for d in dispatches:
                conn.execute(simulation_runs.insert().values(
                    run_key=d.run_key, profile_id=d.profile_id, profile_version=d.profile_version,
                    agent_url=d.agent_url, resource=d.resource, intensity=d.intensity, dispatched_at=now,
                    dispatched_by=dispatched_by[:200], status="dispatched", reason="",
                    scaling_target=d.scaling_target, service_version=d.service_version))

    def runs(self, status: str | None = None) -> list[dict]:
        query = sa.select(simulation_runs).order_by(simulation_runs.c.dispatched_at, simulation_runs.c.run_key)
        if status:
            query = query.where(simulation_runs.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def run(self, run_key: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(simulation_runs).where(simulation_runs.c.run_key == run_key)).mappings().first()
        if row is None:
            raise LookupError(f"no simulation run {run_key!r} was dispatched")
        return dict(row)

    def record_result(self, run_key: str, status: str, reason: str, samples: list[dict], *,
                      started_at: float | None = None, ended_by: str | None = None) -> int:
        """The outcome of one run and its samples, replacing any earlier record, in one transaction.
        A sample's optional observations (OBSERVED) are stored when present and finite."""
        s = simulation_samples
        with self.engine.begin() as conn:
            conn.execute(simulation_runs.update().where(simulation_runs.c.run_key == run_key)
                         .values(status=status, reason=reason[:2000], started_at=started_at, ended_by=ended_by))
            conn.execute(s.delete().where(s.c.run_key == run_key))
            if samples:
                conn.execute(s.insert(), [{"run_key": run_key, "t": int(x["t"]), "target": float(x["target"]),
                                           "achieved": float(x["achieved"]),
                                           **{k: _finite(x.get(k)) for k in OBSERVED}} for x in samples])
        return len(samples)

    def samples(self, run_key: str) -> pd.DataFrame:
        """Columns t, target, achieved and OBSERVED (NaN where not measured)."""
        s = simulation_samples
        columns = ["t", "target", "achieved", *OBSERVED]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*[s.c[c] for c in columns]).where(s.c.run_key == run_key)
                                .order_by(s.c.t)).all()
        frame = pd.DataFrame(rows, columns=columns)
        frame[list(OBSERVED)] = frame[list(OBSERVED)].astype(float)
        return frame


# Per second, besides target and achieved: what Locust saw, and what the service reported.
OBSERVED = ("errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
            "service_utilisation", "service_p95_ms", "service_p99_ms", "service_errors")


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
