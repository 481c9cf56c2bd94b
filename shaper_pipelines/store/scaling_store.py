"""Scaling plans (one desired capacity per timestamp, per target) and the audit trail of what shaper
did, or would have done, to AWS because of them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from shaper_pipelines.store.database import Database
from shaper_pipelines.store.schema import scaling_actions, scaling_plan_rows, scaling_plans

PLAN_COLUMNS = ("timestamp", "desired_capacity", "reason")
_ACTION_FIELDS = ("at", "actor", "target", "kind", "resource", "action", "params", "reason", "dry_run",
                  "outcome", "plan_id")
_OUTCOMES = ("applied", "would-apply", "failed")


class ScalingStore(Database):
    def save_plan(self, target: str, frame: pd.DataFrame, produced_by: str, model: str) -> int:
        """Store a plan for ``target`` (columns timestamp, desired_capacity, reason) and return its
        id; the header and every row in one transaction."""
        if not target:
            raise ValueError("a plan needs the scaling target's name")
        rows = _plan_rows(frame)
        with self.engine.begin() as conn:
            plan_id = conn.execute(scaling_plans.insert().values(
                target=target[:100], created_at=datetime.now(timezone.utc), produced_by=produced_by[:200],
                model=model)).inserted_primary_key[0]
            conn.execute(scaling_plan_rows.insert(), [{"plan_id": plan_id, **r} for r in rows])
        return int(plan_id)

    def latest_plan(self, target: str) -> tuple[dict, pd.DataFrame]:
        """The newest plan for ``target``: its header and its rows (timestamp in UTC)."""
        p = scaling_plans
        with self.engine.connect() as conn:
            header = conn.execute(sa.select(p).where(p.c.target == target).order_by(p.c.plan_id.desc())
                                  .limit(1)).mappings().first()
            if header is None:
                known = conn.execute(sa.select(p.c.target).distinct().order_by(p.c.target)).scalars().all()
                raise LookupError(f"no scaling plan for target {target!r} has been saved"
                                  + (f"; plans exist for: {', '.join(known)}" if known else ""))
            r = scaling_plan_rows
            rows = conn.execute(sa.select(r.c.ts_ms, r.c.desired_capacity, r.c.reason)
                                .where(r.c.plan_id == header["plan_id"]).order_by(r.c.ts_ms)).all()
        frame = pd.DataFrame({
            "timestamp": pd.to_datetime([x[0] for x in rows], unit="ms", utc=True),
            "desired_capacity": np.array([x[1] for x in rows], dtype=np.int64),
            "reason": [x[2] for x in rows],
        })
        return _header(header), frame

    def record_actions(self, actions: Sequence[Mapping]) -> int:
        """Append audit rows (keys: at, actor, target, kind, resource, action, params, reason,
        dry_run, outcome, plan_id), all or none."""
        rows = [_action_row(a) for a in actions]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(scaling_actions.insert(), rows)
        return len(rows)

    def actions(self, target: str | None = None) -> list[dict]:
        """Audit rows, oldest first; ``params`` decoded from JSON."""
        a = scaling_actions
        query = sa.select(a).order_by(a.c.id)
        if target is not None:
            query = query.where(a.c.target == target)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for r in rows:
            r["params"] = json.loads(r["params"])
            r["at"] = _utc(r["at"])
        return rows


def _plan_rows(frame: pd.DataFrame) -> list[dict]:
    missing = [c for c in PLAN_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"a scaling plan needs columns {', '.join(PLAN_COLUMNS)}; missing {', '.join(missing)}")
    if frame.empty:
        raise ValueError("a scaling plan needs at least one row")
    ts = pd.DatetimeIndex(frame["timestamp"])
    if ts.tz is None:
        # A naive time could be anyone's local time; scheduling an hour off is worse than refusing.
        raise ValueError("plan timestamps must be timezone-aware (UTC)")
    if ts.hasnans:
        raise ValueError("a plan timestamp is missing")
    ts = ts.tz_convert("UTC")
    if ts.has_duplicates:
        raise ValueError(f"plan timestamp {ts[ts.duplicated()][0].isoformat()} appears twice")
    capacity = pd.to_numeric(frame["desired_capacity"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(capacity) | (capacity < 0) | (capacity != np.round(capacity))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"desired_capacity at {ts[i].isoformat()} is {frame['desired_capacity'].iloc[i]!r}; "
                         "it must be a whole number of instances, at least 0")
    reasons = ["" if r is None or (isinstance(r, float) and np.isnan(r)) else str(r) for r in frame["reason"]]
    ts_ms = ts.as_unit("ms").asi8.tolist()
    return [{"ts_ms": int(t), "desired_capacity": int(c), "reason": r}
            for t, c, r in sorted(zip(ts_ms, capacity.tolist(), reasons))]


def _action_row(action: Mapping) -> dict:
    missing = [k for k in _ACTION_FIELDS if k not in action]
    if missing:
        raise ValueError(f"a scaling action record needs {', '.join(missing)}")
    outcome = str(action["outcome"])
    if not outcome.startswith(_OUTCOMES):
        raise ValueError(f"outcome {outcome!r} is not applied, would-apply or failed: <message>")
    params = action["params"]
    return {
        "at": _utc(action["at"]),
        "actor": str(action["actor"])[:200],
        "target": str(action["target"])[:100],
        "kind": str(action["kind"]),
        "resource": str(action["resource"])[:300],
        "action": str(action["action"])[:64],
        "params": params if isinstance(params, str) else json.dumps(params, sort_keys=True, default=str),
        "reason": str(action["reason"]),
        "dry_run": bool(action["dry_run"]),
        "outcome": outcome,
        "plan_id": None if action["plan_id"] is None else int(action["plan_id"]),
    }


def _header(row: Mapping) -> dict:
    out = dict(row)
    out["created_at"] = _utc(out["created_at"])
    return out


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; shaper writes only UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
