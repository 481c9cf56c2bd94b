"""The shaper database: an engine for a SQLAlchemy URL, with the schema migrated on open.

SQLite files and PostgreSQL share every line above this module; the differences (SQLite's
locking, the migration lock) are decided here.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant shared by every shaper process: the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK_KEY = 7_403_112_901


def open_database(url: str) -> sa.Engine:
    """An engine for ``url`` whose schema is at the newest Alembic revision."""
    engine = _make_engine(url)
    migrate(engine)
    return engine


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


class Database:
    """A store over the shaper database at ``url`` (a SQLAlchemy URL), migrated on open; usable
    as a context manager that disposes of its connections."""

    def __init__(self, url: str):
        self.url = url
        self.engine = open_database(url)

    @classmethod
    def from_env(cls):
        from shaper_pipelines.settings import database_url

        return cls(database_url())

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
