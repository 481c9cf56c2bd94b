"""The settings layer: every SHAPER_* variable is a typed Settings field, read fresh when the
environment changes, secrets never shown; and the PostgreSQL password taken from
SHAPER_DATABASE_PASSWORD for a URL without one, proven against a real PostgreSQL that demands it."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from shaper_pipelines import settings as st
from shaper_pipelines_tests.conftest import PROJECT

SECRET = "s3cr3t p@ss:%word"  # characters a URL must escape


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No SHAPER_* variable of the machine leaks in; SHAPER_HOME is a temporary directory."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SHAPER_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("SHAPER_HOME", str(tmp_path / "home"))
    st.get_settings.cache_clear()
    yield
    st.get_settings.cache_clear()


def test_every_shaper_variable_in_the_code_is_a_settings_field():
    """A variable the code mentions but Settings does not know is configuration nobody typed,
    described or documented. SHAPER_LOCUST_* is the agent's private hand-over to its Locust
    children (see the settings module)."""
    fields = {st.Settings().variable(name) for name in st.Settings.model_fields}
    mentioned = set()
    for path in (PROJECT / "shaper_pipelines").rglob("*.py"):
        mentioned |= set(re.findall(r"\bSHAPER_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    unknown = {v for v in mentioned if not v.startswith("SHAPER_LOCUST_")} - fields
    assert not unknown, f"SHAPER_* variables without a Settings field: {sorted(unknown)}"
    # The agreed names other code is written against.
    for name in ("SHAPER_S3_BUCKET", "SHAPER_S3_PREFIX", "SHAPER_S3_ENDPOINT_URL", "SHAPER_SCALING_CONFIG",
                 "SHAPER_METRICS_CONFIG", "SHAPER_AGENT_TOKEN", "SHAPER_API_TOKEN", "SHAPER_DATABASE_PASSWORD"):
        assert name in fields


def test_every_field_is_described():
    for name, field in st.Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"


def test_defaults_are_the_embedded_setup(monkeypatch):
    monkeypatch.delenv("SHAPER_HOME")
    s = st.get_settings()
    assert s.home is None and s.agents == [] and s.agent_token.get_secret_value() == ""
    assert (s.s3_bucket, s.s3_prefix, s.s3_endpoint_url) == ("", "dagster", "")
    assert s.scaling_config is None and s.metrics_config is None and s.event_feed is None
    assert (s.rehearsal_lead_hours, s.rehearsal_intensity) == (6.0, 0.25)
    assert st.shaper_home() == (Path.cwd() / ".shaper").resolve()


def test_values_are_parsed_and_typed(monkeypatch, tmp_path):
    monkeypatch.setenv("SHAPER_AGENTS", " http://a:9460 ,, http://b:9460/,")
    monkeypatch.setenv("SHAPER_SCALING_CONFIG", str(tmp_path / "scaling.yaml"))
    monkeypatch.setenv("SHAPER_METRICS_CONFIG", "")  # empty is unset
    monkeypatch.setenv("SHAPER_PROMETHEUS_URL", "  http://prom:9090  ")
    monkeypatch.setenv("SHAPER_REHEARSAL_LEAD_HOURS", "2.5")
    monkeypatch.setenv("SHAPER_S3_BUCKET", "logs")
    monkeypatch.setenv("SHAPER_S3_PREFIX", "shaper/dagster")
    s = st.get_settings()
    assert s.agents == ["http://a:9460", "http://b:9460/"]
    assert s.scaling_config == tmp_path / "scaling.yaml" and s.metrics_config is None
    assert s.prometheus_url == "http://prom:9090"
    assert s.rehearsal_lead_hours == 2.5
    assert (s.s3_bucket, s.s3_prefix) == ("logs", "shaper/dagster")


def test_settings_follow_the_environment(monkeypatch):
    first = st.get_settings()
    assert st.get_settings() is first  # unchanged environment: parsed once
    monkeypatch.setenv("SHAPER_EVENT_FEED", "/tmp/feed.jsonl")
    assert st.get_settings().event_feed == Path("/tmp/feed.jsonl")
    monkeypatch.delenv("SHAPER_EVENT_FEED")
    assert st.get_settings().event_feed is None
    st.get_settings.cache_clear()
    assert st.get_settings() is not first


def test_secrets_never_show(monkeypatch):
    monkeypatch.setenv("SHAPER_AGENT_TOKEN", "agent-" + SECRET)
    monkeypatch.setenv("SHAPER_API_TOKEN", "api-" + SECRET)
    monkeypatch.setenv("SHAPER_DATABASE_PASSWORD", SECRET)
    monkeypatch.setenv("SHAPER_DATABASE_URL", "postgresql://shaper:url-password@db/shaper")
    monkeypatch.setenv("SHAPER_ALERT_WEBHOOK", "https://hooks.example/T000/B000/" + SECRET)
    s = st.get_settings()
    for shown in (repr(s), str(s), s.model_dump_json()):
        assert SECRET not in shown and "url-password" not in shown
    assert s.agent_token.get_secret_value() == "agent-" + SECRET
    assert s.api_token.get_secret_value() == "api-" + SECRET


def test_a_bad_value_names_its_variable_but_not_the_value(monkeypatch):
    monkeypatch.setenv("SHAPER_REHEARSAL_LEAD_HOURS", "six-" + SECRET)
    with pytest.raises(st.SettingsError, match="SHAPER_REHEARSAL_LEAD_HOURS") as caught:
        st.get_settings()
    assert SECRET not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # the command line reports it in one line


# -- the database password -----------------------------------------------------------------------


def test_password_from_the_environment_joins_a_url_without_one(monkeypatch):
    monkeypatch.setenv("SHAPER_DATABASE_URL", "postgresql://shaper@db.internal:5433/shaper")
    monkeypatch.setenv("SHAPER_DATABASE_PASSWORD", SECRET)
    from sqlalchemy.engine import make_url

    url = make_url(st.database_url())
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg2", "shaper", SECRET, "db.internal", 5433, "shaper")
    text = st.dagster_yaml()
    assert "env: SHAPER_DATABASE_PASSWORD" in text and SECRET not in text
    assert st.dagster_env()["SHAPER_DATABASE_PASSWORD"] == SECRET


def test_the_environment_password_wins_over_the_urls(monkeypatch):
    monkeypatch.setenv("SHAPER_DATABASE_URL", "postgresql://shaper:stale@db/shaper")
    monkeypatch.setenv("SHAPER_DATABASE_PASSWORD", SECRET)
    from sqlalchemy.engine import make_url

    assert make_url(st.database_url()).password == SECRET
    assert st.dagster_env()["SHAPER_DATABASE_PASSWORD"] == SECRET
    assert "stale" not in st.dagster_yaml() and SECRET not in st.dagster_yaml()


def test_the_urls_password_alone_still_works(monkeypatch):
    monkeypatch.setenv("SHAPER_DATABASE_URL", "postgres://shaper:in-url@db/shaper")
    from sqlalchemy.engine import make_url

    assert make_url(st.database_url()).password == "in-url"
    assert st.dagster_env()["SHAPER_DATABASE_PASSWORD"] == "in-url"
    assert "env: SHAPER_DATABASE_PASSWORD" in st.dagster_yaml() and "in-url" not in st.dagster_yaml()


def test_no_password_anywhere_writes_no_password_block(monkeypatch):
    monkeypatch.setenv("SHAPER_DATABASE_URL", "postgresql://shaper@db/shaper")
    assert "password" not in st.dagster_yaml()
    assert "SHAPER_DATABASE_PASSWORD" not in st.dagster_env()


@pytest.fixture
def password_database(postgres):
    """A role that must give a password (scram-sha-256 for it alone in pg_hba.conf, the rest of
    the test cluster keeps trust) owning a new database; the URL carries no password."""
    import sqlalchemy as sa

    role = f"pw_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SET password_encryption = 'scram-sha-256'"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'"))  # no quote in SECRET
    name = postgres.create_database()
    database = name.rsplit("/", 1)[1]
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{database}" OWNER TO {role}'))
        hba = postgres.directory / "data" / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    admin.dispose()
    yield f"postgresql://{role}@127.0.0.1:{postgres.port}/{database}"


def test_a_password_only_in_the_environment_opens_dagster_and_the_profile_store(password_database, monkeypatch):
    import dagster as dg
    import sqlalchemy as sa

    from shaper_pipelines.store.profile_store import ProfileStore

    # The server really demands it: without the password the connection is refused.
    engine = sa.create_engine(st.normalise_url(password_database))
    with pytest.raises(sa.exc.OperationalError, match="password"):
        engine.connect().close()
    engine.dispose()

    monkeypatch.setenv("SHAPER_DATABASE_URL", password_database)
    monkeypatch.setenv("SHAPER_DATABASE_PASSWORD", SECRET)
    env = st.dagster_env()  # what `shaper ui` and `shaper run` start Dagster with
    home = Path(env["DAGSTER_HOME"])
    text = (home / "dagster.yaml").read_text()
    assert "postgres_db" in text and "env: SHAPER_DATABASE_PASSWORD" in text
    assert SECRET not in text and SECRET.split()[0] not in text

    @dg.asset
    def settings_probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([settings_probe], instance=instance)
        assert result.success
        assert [r.run_id for r in instance.get_runs()] == [result.run_id]

    with ProfileStore(st.database_url()) as store:
        assert store.list() == []
