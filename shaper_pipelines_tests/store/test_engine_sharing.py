"""Stores share one engine per URL per process, and the schema is migrated once per process: real
engines and real migrations, only counted."""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy as sa

from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.store import database
from shaper_pipelines.store.control_store import ControlStore
from shaper_pipelines.store.profile_store import ProfileStore


@pytest.fixture
def counted(monkeypatch):
    """Lists that grow by the URL of each engine built and each migration run."""
    built: list[str] = []
    migrated: list[str] = []
    make_engine, migrate = database._make_engine, database.migrate

    def counting_make_engine(url):
        built.append(url)
        return make_engine(url)

    def counting_migrate(engine):
        migrated.append(str(engine.url))
        migrate(engine)

    monkeypatch.setattr(database, "_make_engine", counting_make_engine)
    monkeypatch.setattr(database, "migrate", counting_migrate)
    yield built, migrated


@pytest.fixture
def url(store_url):
    yield store_url
    database.dispose(store_url)  # the next test's database is a new one


def _has_schema(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table("shaper_alembic_version")
    finally:
        engine.dispose()


def test_every_kind_of_store_shares_one_engine_and_one_migration(url, counted):
    built, migrated = counted
    resource = DatabaseResource(url=url)
    openers = [resource.profile_store, resource.metric_store, resource.simulation_store,
               resource.scaling_store, resource.forecast_store, resource.control_store]
    engines = []
    for _ in range(3):  # as a per-target loop does
        for open_store in openers:
            with open_store() as store:
                engines.append(store.engine)
    with resource.control_store() as control:
        control.set_scaling_mode(dry_run=False, paused=True, actor="test")
    # Closing a store leaves the shared engine working for the next one.
    with resource.control_store() as control:
        assert control.scaling_mode().paused is True
    assert len(built) == 1 and len(migrated) == 1
    assert all(e is engines[0] for e in engines)


def test_a_new_database_is_migrated_at_its_first_open(url, counted, request, tmp_path):
    built, migrated = counted
    ProfileStore(url).close()
    if url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        other = request.getfixturevalue("postgres").create_database()
    assert not _has_schema(other)
    with ControlStore(other) as control:
        assert control.mode_history() == []
    assert _has_schema(other)
    ControlStore(other).close()
    database.dispose(other)
    assert len(built) == 2 and len(migrated) == 2


def test_threads_opening_a_new_database_at_once_build_and_migrate_it_once(url, counted):
    built, migrated = counted
    go = threading.Barrier(8)
    errors: list[BaseException] = []
    engines: list[sa.Engine] = []

    def open_one():
        try:
            go.wait()
            with ControlStore(url) as control:
                control.scaling_mode()
                engines.append(control.engine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(engines) == 8 and all(e is engines[0] for e in engines)
    assert len(built) == 1 and len(migrated) == 1


def test_a_sqlite_file_replaced_at_the_same_path_gets_a_new_engine_and_migration(tmp_path, counted):
    built, migrated = counted
    path = tmp_path / "replaced.db"
    url = f"sqlite:///{path}"
    with ControlStore(url) as control:
        control.set_scaling_mode(dry_run=False, paused=False, actor="before")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    with ControlStore(url) as control:
        assert control.mode_history() == []  # the new file, with the schema
    assert len(built) == 2 and len(migrated) == 2
    database.dispose(url)


def test_a_relative_sqlite_url_shares_the_engine_of_its_absolute_spelling(tmp_path, monkeypatch, counted):
    built, _ = counted
    monkeypatch.chdir(tmp_path)
    relative = ControlStore("sqlite:///rel.db")
    absolute = ControlStore(f"sqlite:///{tmp_path / 'rel.db'}")
    assert relative.engine is absolute.engine and len(built) == 1
    database.dispose("sqlite:///rel.db")


def test_in_memory_sqlite_stores_keep_their_own_databases(counted):
    built, migrated = counted
    with ControlStore("sqlite://") as a, ControlStore("sqlite://") as b:
        a.set_scaling_mode(dry_run=False, paused=True, actor="a")
        assert b.mode_history() == []
    assert len(built) == 2 and len(migrated) == 2


def test_a_forked_child_gets_a_new_pool_and_leaves_the_parents_connections(url, counted):
    built, migrated = counted
    parent = ControlStore(url)
    parent.set_scaling_mode(dry_run=False, paused=False, actor="parent")
    parents_pool = parent.engine.pool
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only
        code = 1
        try:
            child = ControlStore(url)
            child.set_scaling_mode(dry_run=False, paused=True, actor="child")
            # The same engine (already migrated, nothing built again) on a pool of its own.
            shared = child.engine is parent.engine and child.engine.pool is not parents_pool
            code = 0 if shared and len(built) == 1 and len(migrated) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's pooled connection was not closed or used by the child.
    assert [m.changed_by for m in parent.mode_history()] == ["child", "parent"]
    assert parent.engine.pool is parents_pool and len(built) == 1 and len(migrated) == 1


def test_dispose_closes_the_pool_so_postgresql_can_drop_the_database(postgres, counted):
    built, _ = counted
    url = postgres.create_database()
    with ControlStore(url) as control:
        control.scaling_mode()
    database.dispose(url)
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{sa.engine.make_url(url).database}"'))
    finally:
        admin.dispose()
    postgres.create_database(sa.engine.make_url(url).database)
    with ControlStore(url) as control:  # recreated under the same name: a new engine and migration
        assert control.mode_history() == []
    assert len(built) == 2
    database.dispose(url)
