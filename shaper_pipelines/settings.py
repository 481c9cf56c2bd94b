"""Every ``SHAPER_*`` variable, typed and described in one place: :class:`Settings`.

Code reads configuration through :func:`get_settings`, never ``os.environ``. The settings follow
the environment: a changed ``SHAPER_*`` variable (a test's ``monkeypatch.setenv``, say) gives new
settings on the next call, while an unchanged environment reuses the parsed ones.

``SHAPER_DATABASE_URL`` is the documented switch between embedded and production: unset, both
Dagster's storage and the profile store are SQLite files under ``SHAPER_HOME`` (``.shaper/`` in
the working directory); set to a ``postgresql://`` URL, both live in that PostgreSQL database,
with the password from ``SHAPER_DATABASE_PASSWORD`` when set (a Kubernetes secret, say) and the
URL's own otherwise.

Secrets are :class:`pydantic.SecretStr`: their ``repr``, ``str`` and validation errors show
``**********``; ``.get_secret_value()`` is the one way to the value.

Not here, on purpose: ``SHAPER_LOCUST_*``, which the load agent sets for its own Locust child
processes (agent/generators.py, read in agent/locustfile.py) - a private hand-over between two
processes, not something to configure.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

ENV_PREFIX = "SHAPER_"
DATABASE_URL_VAR = "SHAPER_DATABASE_URL"
DATABASE_PASSWORD_VAR = "SHAPER_DATABASE_PASSWORD"
HOME_VAR = "SHAPER_HOME"


class Settings(BaseSettings):
    """shaper's configuration: field ``x`` is the variable ``SHAPER_X``. An empty variable counts
    as unset (the default applies)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    # -- where things live -----------------------------------------------------------------------
    # SHAPER_HOME: the embedded state (SQLite files, dagster_home/, the local agent, exports).
    home: Path | None = Field(None, description="Directory of the embedded state (default: ./.shaper)")
    # SHAPER_DATABASE_URL: PostgreSQL for Dagster's storage and the profile store; unset means SQLite.
    database_url: SecretStr = Field(SecretStr(""), description="postgresql:// URL of the shaper database "
                                    "(default: SQLite under SHAPER_HOME); may hold a password")
    # SHAPER_DATABASE_PASSWORD: that database's password, when it is kept out of the URL (a secret).
    database_password: SecretStr = Field(SecretStr(""), description="Password for SHAPER_DATABASE_URL; "
                                         "overrides one in the URL")
    # SHAPER_SCALING_CONFIG: the scaling targets file.
    scaling_config: Path | None = Field(None, description="Scaling targets YAML (default: "
                                        "profiles_data/scaling.yaml)")
    # SHAPER_METRICS_CONFIG: which metrics the history assets collect.
    metrics_config: Path | None = Field(None, description="Metrics YAML (default: profiles_data/metrics.yaml)")
    # SHAPER_EVENT_FEED: the JSON-lines event feed the event sensor follows.
    event_feed: Path | None = Field(None, description="Event feed file (default: SHAPER_HOME/events.jsonl)")

    # -- the services shaper talks to ------------------------------------------------------------
    # SHAPER_PROMETHEUS_URL: where historical metrics come from; unset means the demo history.
    prometheus_url: str = Field("", description="Prometheus base URL (default: the embedded demo history)")
    # SHAPER_PUSHGATEWAY_URL: where predictions are pushed; unset means a node_exporter textfile.
    pushgateway_url: str = Field("", description="Pushgateway URL (default: a textfile under SHAPER_HOME)")
    # How shaper reaches Prometheus and the Pushgateway over HTTPS, with the names of Prometheus's
    # own http_config: TLS is verified against the system's trust store unless a CA bundle is
    # given; INSECURE_SKIP_VERIFY is the explicit, logged way out. A bearer token or a user and
    # password (not both) authenticate. SHAPER_PROMETHEUS_* for queries, SHAPER_PUSHGATEWAY_* for pushes.
    prometheus_ca_bundle: Path | None = Field(None, description="PEM file of the CA(s) that sign Prometheus's "
                                              "certificate (default: the system's trust store)")
    prometheus_insecure_skip_verify: bool = Field(False, description="Do not verify Prometheus's TLS certificate "
                                                  "(default: verified)")
    prometheus_bearer_token: SecretStr = Field(SecretStr(""), description="Bearer token sent to Prometheus")
    prometheus_username: str = Field("", description="Basic-auth user for Prometheus")
    prometheus_password: SecretStr = Field(SecretStr(""), description="Basic-auth password for Prometheus")
    pushgateway_ca_bundle: Path | None = Field(None, description="PEM file of the CA(s) that sign the "
                                               "Pushgateway's certificate (default: the system's trust store)")
    pushgateway_insecure_skip_verify: bool = Field(False, description="Do not verify the Pushgateway's TLS "
                                                   "certificate (default: verified)")
    pushgateway_bearer_token: SecretStr = Field(SecretStr(""), description="Bearer token sent to the Pushgateway")
    pushgateway_username: str = Field("", description="Basic-auth user for the Pushgateway")
    pushgateway_password: SecretStr = Field(SecretStr(""), description="Basic-auth password for the Pushgateway")
    # SHAPER_AWS_ENDPOINT_URL: an AWS-compatible endpoint (moto, LocalStack) instead of AWS itself.
    aws_endpoint_url: str = Field("", description="AWS Auto Scaling/ECS endpoint override (default: AWS)")
    # SHAPER_ALERT_WEBHOOK: where Dagster's alerts are posted; the URL is itself a credential.
    alert_webhook: SecretStr = Field(SecretStr(""), description="Webhook URL for run failures and critical "
                                     "plans (default: no alerts)")
    # SHAPER_DAGSTER_URL: the Dagster webserver the control API launches runs through.
    dagster_url: str = Field("", description="Dagster webserver URL for the control API (default: reads only)")
    # SHAPER_S3_BUCKET: the S3 bucket for Dagster's files; empty means local files.
    s3_bucket: str = Field("", description="S3 bucket for Dagster's files (default: local disk)")
    # SHAPER_S3_PREFIX: the key prefix inside that bucket.
    s3_prefix: str = Field("dagster", description="Key prefix in SHAPER_S3_BUCKET")
    # SHAPER_S3_ENDPOINT_URL: an S3-compatible endpoint (MinIO, moto) instead of AWS S3.
    s3_endpoint_url: str = Field("", description="S3 endpoint override (default: AWS S3)")

    # SHAPER_SENSOR_INTERVAL_SECONDS: how often the daemon evaluates the daily loop's automation
    # conditions and sensors; each hop of the loop (history -> forecasts -> plan -> apply) waits up
    # to one interval.
    sensor_interval_seconds: int = Field(30, ge=5, le=3600, description="Seconds between evaluations of the "
                                         "loop's automation conditions and sensors")

    # SHAPER_FORECAST_MODELS: comma-separated forecast models tried when a forecast's config names none.
    forecast_models: Annotated[list[str], NoDecode] = Field([], description="Forecast model candidates, "
                                                            "comma-separated (default: the fast ones and prophet)")

    # -- load agents -----------------------------------------------------------------------------
    # SHAPER_AGENTS: comma-separated agent URLs; empty means one local agent started on demand.
    agents: Annotated[list[str], NoDecode] = Field([], description="Load agent URLs, comma-separated "
                                                   "(default: a local agent)")
    # SHAPER_AGENT_TOKEN: the bearer token those agents share (a secret).
    agent_token: SecretStr = Field(SecretStr(""), description="Bearer token of the agents in SHAPER_AGENTS")
    # SHAPER_REHEARSAL_LEAD_HOURS: how long before a business event the calendar sensor rehearses it.
    rehearsal_lead_hours: float = Field(6.0, gt=0, description="Hours before a calendar event to rehearse it")
    # SHAPER_REHEARSAL_INTENSITY: the load of such a rehearsal, as a fraction of the event's.
    rehearsal_intensity: float = Field(0.25, gt=0, description="Intensity of a calendar rehearsal")

    # -- the control API -------------------------------------------------------------------------
    # SHAPER_API_TOKEN: the bearer token every /v1 call but /v1/health needs (a secret).
    api_token: SecretStr = Field(SecretStr(""), description="Bearer token of the control API (required to "
                                 "serve it)")

    @field_validator("database_url", "prometheus_url", "pushgateway_url", "aws_endpoint_url", "alert_webhook",
                     "dagster_url", "s3_bucket", "s3_endpoint_url", "prometheus_username", "pushgateway_username",
                     "prometheus_bearer_token", "pushgateway_bearer_token", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> "Settings":
        for service in ("prometheus", "pushgateway"):
            token = getattr(self, f"{service}_bearer_token").get_secret_value()
            user = getattr(self, f"{service}_username")
            password = getattr(self, f"{service}_password").get_secret_value()
            if token and (user or password):
                raise ValueError(f"set either {ENV_PREFIX}{service.upper()}_BEARER_TOKEN or "
                                 f"{ENV_PREFIX}{service.upper()}_USERNAME/_PASSWORD, not both")
            if password and not user:
                raise ValueError(f"{ENV_PREFIX}{service.upper()}_PASSWORD is set without "
                                 f"{ENV_PREFIX}{service.upper()}_USERNAME")
        return self

    @field_validator("agents", "forecast_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [a.strip() for a in value.split(",") if a.strip()]
        return value

    def variable(self, field: str) -> str:
        """The environment variable behind ``field``."""
        if field not in type(self).model_fields:
            raise KeyError(field)
        return f"{ENV_PREFIX}{field.upper()}"


class SettingsError(ValueError):
    """A ``SHAPER_*`` variable does not parse; the message names it (never its value)."""


def _environment_key() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))


@functools.lru_cache(maxsize=16)
def _settings_for(_key: tuple[tuple[str, str], ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise SettingsError(f"invalid shaper settings: {problems}") from None


def get_settings() -> Settings:
    """The settings of the current environment, parsed once per distinct set of ``SHAPER_*``
    variables. ``get_settings.cache_clear()`` forgets them all."""
    return _settings_for(_environment_key())


get_settings.cache_clear = _settings_for.cache_clear  # type: ignore[attr-defined]


# -- derived values, for the rest of the code ----------------------------------------------------


def shaper_home() -> Path:
    home = get_settings().home
    return Path(home or Path.cwd() / ".shaper").resolve()


def database_url() -> str:
    """The profile store's SQLAlchemy URL, with the password of :func:`database_password`."""
    url = get_settings().database_url.get_secret_value()
    if url:
        parsed = make_url(normalise_url(url))
        password = database_password()
        if password and not parsed.drivername.startswith("sqlite"):
            parsed = parsed.set(password=password)
        return parsed.render_as_string(hide_password=False)
    home = shaper_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'profiles.db'}"


def database_password() -> str:
    """``SHAPER_DATABASE_PASSWORD`` when set, else the password in ``SHAPER_DATABASE_URL``, else ""."""
    s = get_settings()
    if s.database_password.get_secret_value():
        return s.database_password.get_secret_value()
    url = s.database_url.get_secret_value()
    return (make_url(url).password or "") if url else ""


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg2 here, which is the driver installed."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def dagster_home() -> Path:
    """DAGSTER_HOME as set by the user, untouched; otherwise a project-local one whose dagster.yaml
    matches the database setting: the project's ``dagster.yaml`` for SQLite, or the PostgreSQL
    storage block written from ``SHAPER_DATABASE_URL``."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).resolve()
    home = shaper_home() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(dagster_yaml())
    return home


def dagster_yaml() -> str:
    url = get_settings().database_url.get_secret_value()
    if not url:
        template = project_root() / "dagster.yaml"
        if template.exists():
            return template.read_text()
        return "telemetry:\n  enabled: false\n"
    parsed = make_url(normalise_url(url))
    if not parsed.drivername.startswith("postgresql"):
        raise ValueError(f"{DATABASE_URL_VAR} must be a postgresql:// URL, got {parsed.drivername}://")
    # The password is read from the environment at instance start, never written to disk: the
    # processes started with dagster_env() have it in SHAPER_DATABASE_PASSWORD.
    import yaml

    postgres_db = {"username": parsed.username, "hostname": parsed.host or "localhost", "db_name": parsed.database,
                   "port": parsed.port or 5432, "scheme": "postgresql+psycopg2"}
    if database_password():
        postgres_db["password"] = {"env": DATABASE_PASSWORD_VAR}
    # Everything else (the run queue's limit, telemetry) as the project's template says: only the
    # storage differs between SQLite and PostgreSQL.
    template = project_root() / "dagster.yaml"
    config = (yaml.safe_load(template.read_text()) if template.exists() else None) or {"telemetry": {"enabled": False}}
    config["storage"] = {"postgres": {"postgres_db": postgres_db}}
    return "# Written by shaper from SHAPER_DATABASE_URL; edit the variable, not this file.\n" + yaml.safe_dump(
        config, sort_keys=False)


def dagster_env() -> dict[str, str]:
    """Environment for a Dagster process: DAGSTER_HOME prepared, and the password variable the
    generated dagster.yaml reads."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home())
    if get_settings().database_url.get_secret_value() and database_password():
        env[DATABASE_PASSWORD_VAR] = database_password()
    return env


def project_root() -> Path:
    """The checkout this package runs from (it is installed editable): where workspace.yaml and
    profiles_data/ live."""
    return Path(__file__).resolve().parent.parent


def profiles_dir() -> Path:
    return project_root() / "profiles_data" / "profiles"
