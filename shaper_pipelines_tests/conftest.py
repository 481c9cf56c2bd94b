"""Real services for the tests: a throwaway PostgreSQL cluster (session-wide) and a fresh
profile-store database per test on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from shaper_pipelines_tests.services.postgres import start_postgres

PROJECT = Path(__file__).resolve().parent.parent
# The real traces the project carries (copied from ../shared/data/real with their licences): a
# clone of the project alone passes its tests.
REAL_DATA = PROJECT / "data" / "real"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory):
    """Tests leave no process behind: after the last test (and every other session fixture's
    teardown), nothing may still run in this session's temporary directories."""
    yield
    from shaper_pipelines_tests.services.leftovers import left_behind

    leftovers = left_behind(tmp_path_factory.getbasetemp())
    assert not leftovers, "processes left running by the tests (now killed): " + "; ".join(
        f"{pid}: {cmd[:200]}" for pid, cmd in leftovers.items())


@pytest.fixture(scope="session")
def postgres():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new, empty profile-store database: one SQLite file, or one PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profiles.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def store(store_url):
    from shaper_pipelines.store.profile_store import ProfileStore

    s = ProfileStore(store_url)
    yield s
    s.close()


@pytest.fixture
def shaper_home(tmp_path, monkeypatch):
    """An isolated SHAPER_HOME (and so DAGSTER_HOME and SQLite store) for command-line tests."""
    home = tmp_path / "shaper_home"
    monkeypatch.setenv("SHAPER_HOME", str(home))
    monkeypatch.delenv("SHAPER_DATABASE_URL", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    yield home
    # A `shaper run` starts a detached local agent that would otherwise idle on for ten minutes
    # after the test: tests leave no process behind.
    from shaper_pipelines.agent.local import stop_local_agent

    stop_local_agent(home)


@pytest.fixture
def predefined_dir() -> Path:
    return PROJECT / "profiles_data" / "profiles"
