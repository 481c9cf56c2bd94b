"""The one place that decides embedded (SQLite, local) against production (PostgreSQL) settings.

``SHAPER_DATABASE_URL`` is the documented switch: unset, both Dagster's storage and the profile
store are SQLite files under ``SHAPER_HOME`` (``.shaper/`` in the working directory); set to a
``postgresql://`` URL, both live in that PostgreSQL database.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

DATABASE_URL_VAR = "SHAPER_DATABASE_URL"
HOME_VAR = "SHAPER_HOME"


def shaper_home() -> Path:
    return Path(os.environ.get(HOME_VAR) or Path.cwd() / ".shaper").resolve()


def database_url() -> str:
    """The profile store's SQLAlchemy URL."""
    url = os.environ.get(DATABASE_URL_VAR, "").strip()
    if url:
        return normalise_url(url)
    home = shaper_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'profiles.db'}"


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
    url = os.environ.get(DATABASE_URL_VAR, "").strip()
    if not url:
        template = project_root() / "dagster.yaml"
        if template.exists():
            return template.read_text()
        return "telemetry:\n  enabled: false\n"
    parsed = make_url(normalise_url(url))
    if not parsed.drivername.startswith("postgresql"):
        raise ValueError(f"{DATABASE_URL_VAR} must be a postgresql:// URL, got {parsed.drivername}://")
    # The password is read from the environment at instance start, never written to disk.
    password = "      password:\n        env: SHAPER_DATABASE_PASSWORD\n" if parsed.password else ""
    return (
        "# Written by shaper from SHAPER_DATABASE_URL; edit the variable, not this file.\n"
        "storage:\n"
        "  postgres:\n"
        "    postgres_db:\n"
        f"      username: {parsed.username}\n"
        f"{password}"
        f"      hostname: {parsed.host or 'localhost'}\n"
        f"      db_name: {parsed.database}\n"
        f"      port: {parsed.port or 5432}\n"
        "      scheme: postgresql+psycopg2\n"
        "telemetry:\n"
        "  enabled: false\n"
    )


def dagster_env() -> dict[str, str]:
    """Environment for a Dagster process: DAGSTER_HOME prepared, and the password variable the
    generated dagster.yaml reads."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home())
    url = os.environ.get(DATABASE_URL_VAR, "").strip()
    if url and make_url(url).password:
        env["SHAPER_DATABASE_PASSWORD"] = make_url(url).password
    return env


def project_root() -> Path:
    """The checkout this package runs from (it is installed editable): where workspace.yaml and
    profiles_data/ live."""
    return Path(__file__).resolve().parent.parent


def profiles_dir() -> Path:
    return project_root() / "profiles_data" / "profiles"
