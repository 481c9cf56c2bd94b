"""Operator switches for scaling (dry run, paused), set through the control API. Every change is a
new row, so the current mode also says who set it, when and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from shaper_pipelines.store.database import Database
from shaper_pipelines.store.schema import scaling_mode_changes


@dataclass(frozen=True)
class ScalingMode:
    dry_run: bool
    paused: bool
    changed_at: datetime | None  # None: never set, the default is in force
    changed_by: str
    note: str


# Until someone decides otherwise, approvals change nothing on AWS.
DEFAULT_MODE = ScalingMode(dry_run=True, paused=False, changed_at=None, changed_by="", note="default")


class ControlStore(Database):
    def scaling_mode(self) -> ScalingMode:
        t = scaling_mode_changes
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(1)).mappings().first()
        return DEFAULT_MODE if row is None else _mode(row)

    def set_scaling_mode(self, *, dry_run: bool, paused: bool, actor: str, note: str = "") -> ScalingMode:
        if not actor:
            raise ValueError("a scaling mode change needs the actor who made it")
        row = {"at": datetime.now(timezone.utc), "actor": actor[:200], "dry_run": bool(dry_run),
               "paused": bool(paused), "note": note}
        with self.engine.begin() as conn:
            conn.execute(scaling_mode_changes.insert().values(**row))
        return _mode(row)

    def mode_history(self, limit: int = 100) -> list[ScalingMode]:
        """The newest ``limit`` changes, newest first."""
        t = scaling_mode_changes
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).mappings().all()
        return [_mode(r) for r in rows]


def _mode(row) -> ScalingMode:
    at = row["at"]
    # SQLite hands back naive datetimes even for timezone=True columns; shaper writes only UTC.
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return ScalingMode(dry_run=bool(row["dry_run"]), paused=bool(row["paused"]), changed_at=at,
                       changed_by=row["actor"], note=row["note"])
