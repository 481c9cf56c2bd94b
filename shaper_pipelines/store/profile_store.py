"""The profile store: versioned, immutable profiles and their rendered series in a real database.

SQLite by default, PostgreSQL by URL, one code path through SQLAlchemy Core (``database.py``). Every write is one
transaction: a batch of profiles with one bad member stores nothing, and a series write either
replaces its whole time range or leaves it as it was.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shaper_pipelines.lib.profile import Profile, ProfileError, parse_profile
from shaper_pipelines.store.database import Database
from shaper_pipelines.store.schema import profile_series, profile_versions

SERIES_BATCH = 10_000
_WRITE_RETRIES = 8
log = logging.getLogger(__name__)


class ProfileNotFound(LookupError):
    pass


@dataclass(frozen=True)
class StoredProfile:
    profile: Profile
    version: int
    content_hash: str
    created_at: datetime
    created_by: str
    pk: int

    @property
    def profile_id(self) -> str:
        return self.profile.profile_id


@dataclass(frozen=True)
class PutResult:
    profile_id: str
    version: int
    content_hash: str
    created: bool  # False when an identical definition was already stored


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ProfileStore(Database):
    """Profiles and series in the database at ``url`` (a SQLAlchemy URL); migrates on open."""

    # (profile_id, version, why) of the rows the last list() or versions() left out
    skipped: list[tuple[str, int, str]] = []

    # -- profiles -----------------------------------------------------------------------------

    def put(self, profile: Profile, *, created_by: str | None = None) -> PutResult:
        return self.put_many([profile], created_by=created_by)[0]

    def put_many(self, profiles: Sequence[Profile], *, created_by: str | None = None) -> list[PutResult]:
        """Store each profile as a new version unless its content is already stored.

        All in one transaction. When another writer takes the same version number first, the
        unique constraint refuses ours; the whole transaction is retried and then finds theirs."""
        for p in profiles:
            if not isinstance(p, Profile):
                raise TypeError(f"expected Profile, got {type(p).__name__}")
        seen: dict[str, str] = {}
        for p in profiles:
            if seen.get(p.profile_id, p.content_hash) != p.content_hash:
                raise ProfileError("two different definitions in one batch", profile_id=p.profile_id)
            seen[p.profile_id] = p.content_hash
        actor = (created_by or default_actor())[:200]
        for attempt in range(_WRITE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    return [self._put_one(conn, p, actor) for p in profiles]
            except IntegrityError:
                if attempt == _WRITE_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _put_one(self, conn, profile: Profile, actor: str) -> PutResult:
        t = profile_versions
        existing = conn.execute(
            sa.select(t.c.version).where(t.c.profile_id == profile.profile_id, t.c.content_hash == profile.content_hash)
        ).scalar()
        if existing is not None:
            return PutResult(profile.profile_id, existing, profile.content_hash, created=False)
        latest = conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.profile_id == profile.profile_id)).scalar()
        version = (latest or 0) + 1
        conn.execute(
            t.insert().values(
                profile_id=profile.profile_id,
                version=version,
                content_hash=profile.content_hash,
                resource_type=profile.resource_type.value,
                source=profile.source.value,
                priority=profile.priority,
                trigger_kinds="," + ",".join(profile.trigger_kinds) + ",",
                definition=json.dumps(profile.canonical(), sort_keys=True),
                created_at=datetime.now(timezone.utc),
                created_by=actor,
            )
        )
        return PutResult(profile.profile_id, version, profile.content_hash, created=True)

    def get(self, profile_id: str, version: int | None = None) -> StoredProfile:
        t = profile_versions
        query = sa.select(t).where(t.c.profile_id == profile_id)
        query = query.where(t.c.version == version) if version is not None else query.order_by(t.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            what = f"version {version} of profile {profile_id!r}" if version is not None else f"profile {profile_id!r}"
            raise ProfileNotFound(f"{what} is not in the store")
        return _stored(row)

    def versions(self, profile_id: str) -> list[StoredProfile]:
        t = profile_versions
        with self.engine.connect() as conn:
            rows = list(conn.execute(sa.select(t).where(t.c.profile_id == profile_id).order_by(t.c.version)).mappings())
        return self._readable(rows)

    def list(
        self,
        *,
        resource_type: str | None = None,
        source: str | None = None,
        min_priority: int | None = None,
        trigger_kind: str | None = None,
        latest_only: bool = True,
    ) -> list[StoredProfile]:
        """Profiles matching every given filter, highest priority first; the newest version of each
        unless ``latest_only`` is False."""
        t = profile_versions
        query = sa.select(t)
        if latest_only:
            newest = (
                sa.select(t.c.profile_id, sa.func.max(t.c.version).label("v")).group_by(t.c.profile_id).subquery()
            )
            query = query.join(newest, sa.and_(t.c.profile_id == newest.c.profile_id, t.c.version == newest.c.v))
        if resource_type:
            query = query.where(t.c.resource_type == resource_type)
        if source:
            query = query.where(t.c.source == source)
        if min_priority is not None:
            query = query.where(t.c.priority >= min_priority)
        if trigger_kind:
            query = query.where(t.c.trigger_kinds.like(f"%,{trigger_kind},%"))
        query = query.order_by(t.c.priority.desc(), t.c.profile_id, t.c.version)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        return self._readable(rows)

    def _readable(self, rows) -> list[StoredProfile]:
        """The rows that still parse as profiles. A row that does not (written by an older version,
        or edited by hand) is skipped with a warning naming it, so one bad row never stops the
        listing or the selection of all the others; ``skipped`` says which were left out."""
        out, self.skipped = [], []
        for row in rows:
            try:
                out.append(_stored(row))
            except (ValueError, TypeError, KeyError) as exc:  # ProfileError and JSON errors are ValueErrors
                reason = " ".join(getattr(exc, "reason", str(exc)).split())[:300]
                self.skipped.append((row["profile_id"], row["version"], reason))
                log.warning("profile store: skipped profile %r: %s", row["profile_id"], reason)
        return out

    # -- series -------------------------------------------------------------------------------

    def write_series(
        self, profile_id: str, version: int, timestamps: np.ndarray, values: np.ndarray, *, batch_size: int = SERIES_BATCH
    ) -> int:
        """Replace the stored series of one profile version over the span of ``timestamps`` (epoch
        seconds) with these values, in batches inside one transaction. Returns rows written."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if timestamps.shape != values.shape or timestamps.ndim != 1:
            raise ValueError("timestamps and values must be 1-D arrays of the same length")
        if len(values) == 0:
            return 0
        if not np.isfinite(values).all() or not np.isfinite(timestamps).all():
            i = int(np.argmax(~np.isfinite(values) | ~np.isfinite(timestamps)))
            raise ProfileError(f"series point {i} is not a finite number; nothing was written", profile_id=profile_id)
        ts_ms = np.round(timestamps * 1000).astype(np.int64)
        if len(ts_ms) > 1 and not (np.diff(ts_ms) > 0).all():
            raise ProfileError("series timestamps must be strictly increasing; nothing was written", profile_id=profile_id)
        pk = self.get(profile_id, version).pk
        s = profile_series
        with self.engine.begin() as conn:
            conn.execute(
                s.delete().where(s.c.version_pk == pk, s.c.ts_ms >= int(ts_ms[0]), s.c.ts_ms <= int(ts_ms[-1]))
            )
            for lo in range(0, len(ts_ms), batch_size):
                chunk_ts = ts_ms[lo : lo + batch_size].tolist()
                chunk_v = values[lo : lo + batch_size].tolist()
                conn.execute(s.insert(), [{"version_pk": pk, "ts_ms": a, "value": b} for a, b in zip(chunk_ts, chunk_v)])
        return len(ts_ms)

    def read_series(
        self, profile_id: str, version: int | None = None, start: float | None = None, end: float | None = None
    ) -> pd.DataFrame:
        """``timestamp`` (UTC) and ``value`` of a stored series, ``start <= ts < end`` in epoch seconds."""
        stored = self.get(profile_id, version)
        s = profile_series
        query = sa.select(s.c.ts_ms, s.c.value).where(s.c.version_pk == stored.pk)
        if start is not None:
            query = query.where(s.c.ts_ms >= int(round(start * 1000)))
        if end is not None:
            query = query.where(s.c.ts_ms < int(round(end * 1000)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(s.c.ts_ms)).all()
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vals = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        return pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="ms", utc=True), "value": vals})


def _stored(row) -> StoredProfile:
    created = row["created_at"]
    if created.tzinfo is None:  # SQLite keeps no zone; every write is UTC
        created = created.replace(tzinfo=timezone.utc)
    try:
        profile = parse_profile(json.loads(row["definition"]))
    except ProfileError as exc:
        where = f" (field {exc.field})" if exc.field else ""
        raise ProfileError(f"stored version {row['version']} no longer parses{where}: {exc.reason}",
                           profile_id=row["profile_id"]) from None
    except ValueError as exc:
        raise ProfileError(f"stored version {row['version']} is not JSON: {exc}", profile_id=row["profile_id"]) from None
    return StoredProfile(
        profile=profile,
        version=row["version"],
        content_hash=row["content_hash"],
        created_at=created,
        created_by=row["created_by"],
        pk=row["id"],
    )
