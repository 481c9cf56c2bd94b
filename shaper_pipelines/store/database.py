"""The shaper database: one engine per SQLAlchemy URL per process, with the schema migrated at
its first use.

SQLite files and PostgreSQL share every line above this module; the differences (SQLite's
locking, the migration lock) are decided here.

Stores are cheap to open: the first ``Database(url)`` in a process builds the engine and runs the
Alembic upgrade; every later one, of any store class, reuses that engine and skips the upgrade.
Sensors run in threads, so the cache is guarded by a lock; a forked child gives each engine a new
pool (``os.register_at_fork``) instead of sharing its parent's sockets.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant shared by every shaper process: the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK_KEY = 7_403_112_901
# A process normally talks to one database; the bound is for the test suite, which makes a new
# database per test and must not keep every one's idle pooled connections open (PostgreSQL's
# default max_connections is 100). The least recently opened engine beyond it is disposed of.
MAX_SHARED_ENGINES = 8


def open_database(url: str) -> sa.Engine:
    """The process's shared engine for ``url``, its schema at the newest Alembic revision (the
    upgrade runs at the first open in a process, and again only when a SQLite file was replaced)."""
    return _cache.engine(url)


def dispose(url: str) -> None:
    """Close the shared engine for ``url`` and forget it and its migration; for whoever is about
    to drop or replace that database (PostgreSQL refuses DROP DATABASE while a pooled connection
    is open). Stores still holding the engine keep working on fresh connections."""
    _cache.dispose(url)


def dispose_all() -> None:
    """``dispose`` for every URL this process has opened."""
    _cache.dispose_all()


def migrate(engine: sa.Engine) -> None:
    """Upgrade to the newest revision; safe when several processes open a new database at once
    (they take turns under a lock)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()


def _make_engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    # pysqlite starts transactions lazily, so two writers can both read and then deadlock on the
    # upgrade to a write lock. Taking the write lock at BEGIN makes writers queue instead.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _in_memory(url: str) -> bool:
    parsed = sa.engine.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _canonical(url: str) -> str:
    """The cache key and the URL the engine is built from: a SQLite file by its absolute path, so
    a relative URL names the same file after a chdir, and two spellings share one engine."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not parsed.database.startswith("file:"):
        parsed = parsed.set(database=os.path.abspath(parsed.database))
    return parsed.render_as_string(hide_password=False)


def _file_identity(engine: sa.Engine) -> tuple[int, int] | None:
    """A SQLite file's (device, inode), or None when it is missing or not a file database; a
    database replaced at the same path gets a new identity, and so a new engine and migration."""
    if engine.dialect.name != "sqlite":
        return None
    try:
        st = os.stat(engine.url.database)
    except (OSError, TypeError):
        return None
    return (st.st_dev, st.st_ino)


@dataclass
class _Shared:
    engine: sa.Engine
    lock: threading.Lock = field(default_factory=threading.Lock)
    migrated: bool = False
    identity: tuple[int, int] | None = None  # a SQLite file's, as of the migration


class _EngineCache:
    """Engines by canonical URL, most recently opened last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: collections.OrderedDict[str, _Shared] = collections.OrderedDict()

    def engine(self, url: str) -> sa.Engine:
        key = _canonical(url)
        evicted: list[sa.Engine] = []
        with self._lock:
            shared = self._shared.get(key)
            if shared is not None and shared.migrated and shared.engine.dialect.name == "sqlite" \
                    and _file_identity(shared.engine) != shared.identity:
                # The file was deleted (and perhaps recreated): its pooled connections hold the
                # old inode, and the new file has no schema.
                evicted.append(self._shared.pop(key).engine)
                shared = None
            if shared is None:
                shared = self._shared[key] = _Shared(_make_engine(key))
                while len(self._shared) > MAX_SHARED_ENGINES:
                    evicted.append(self._shared.popitem(last=False)[1].engine)
            self._shared.move_to_end(key)
        for old in evicted:
            old.dispose()
        if not shared.migrated:
            # Per-URL, so a slow upgrade (or one waiting for another process's lock) holds up
            # only the threads opening that database.
            with shared.lock:
                if not shared.migrated:
                    migrate(shared.engine)
                    shared.identity = _file_identity(shared.engine)
                    shared.migrated = True
        return shared.engine

    def dispose(self, url: str) -> None:
        with self._lock:
            shared = self._shared.pop(_canonical(url), None)
        if shared is not None:
            shared.engine.dispose()

    def dispose_all(self) -> None:
        with self._lock:
            engines = [s.engine for s in self._shared.values()]
            self._shared.clear()
        for engine in engines:
            engine.dispose()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's pooled connections are its sockets, not ours. Each engine
        drops them without closing them (closing would end the parent's sessions) and starts a new
        pool; what was migrated stays migrated. The locks may have been held by threads that do
        not exist here."""
        self._lock = threading.Lock()
        for shared in self._shared.values():
            shared.lock = threading.Lock()
            shared.engine.dispose(close=False)


_cache = _EngineCache()
os.register_at_fork(after_in_child=_cache.forget_after_fork)


class Database:
    """A store over the shaper database at ``url`` (a SQLAlchemy URL), migrated on the process's
    first open; usable as a context manager.

    The engine is shared by every store on the same URL in this process, so ``close()`` leaves it
    open: each method already returns its connection to the pool, and there is nothing of this
    store's own to release. (An in-memory SQLite URL is the exception: its database lives only as
    long as its engine, so each store gets its own, disposed of by ``close()``.) To really close
    the connections, as before dropping the database, call ``database.dispose(url)``."""

    def __init__(self, url: str):
        self.url = url
        if _in_memory(url):
            self._own_engine = True
            self.engine = _make_engine(url)
            migrate(self.engine)
        else:
            self._own_engine = False
            self.engine = open_database(url)

    @classmethod
    def from_env(cls):
        from shaper_pipelines.settings import database_url

        return cls(database_url())

    def close(self) -> None:
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
