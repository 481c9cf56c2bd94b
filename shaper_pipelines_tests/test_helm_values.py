"""deploy/helm/values.yaml gives every pod that runs shaper's code - the code server (user
deployment) and each run's pod (K8sRunLauncher) - the same database and S3 settings, with the
database password only ever coming from the shaper-env secret."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "values.yaml"
SECRET = "shaper-env"


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def user_deployments() -> list[dict]:
    section = values()["dagster-user-deployments"]
    assert section["enabled"] is True
    return section["deployments"]


def launcher() -> dict:
    run_launcher = values()["runLauncher"]
    assert run_launcher["type"] == "K8sRunLauncher"
    return run_launcher["config"]["k8sRunLauncher"]


def deployment_env(deployment: dict) -> tuple[dict[str, str], dict[str, dict], set[str]]:
    """Literal values, values taken from a secret (name -> secretKeyRef), and whole secrets."""
    literal = {e["name"]: str(e["value"]) for e in deployment.get("env") or [] if "value" in e}
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in deployment.get("env") or []
                   if "secretKeyRef" in e.get("valueFrom", {})}
    return literal, from_secret, {s["name"] for s in deployment.get("envSecrets") or []}


def launcher_env(config: dict) -> tuple[dict[str, str], dict[str, dict], set[str]]:
    literal = {}
    for entry in config.get("envVars") or []:
        name, sep, value = entry.partition("=")
        if sep:  # "NAME" alone copies the daemon's own variable: no value of ours
            literal[name] = value
    return literal, {}, {s["name"] for s in config.get("envSecrets") or []}


def code_pods() -> list[tuple[str, tuple[dict[str, str], dict[str, dict], set[str]]]]:
    pods = [(f"user deployment {d['name']}", deployment_env(d)) for d in user_deployments()]
    return pods + [("run launcher", launcher_env(launcher()))]


@pytest.mark.parametrize("pod", range(len(code_pods())), ids=[name for name, _ in code_pods()])
def test_every_code_pod_gets_the_database_and_the_bucket(pod):
    name, (literal, from_secret, secrets) = code_pods()[pod]
    # The bucket turns the S3 io_manager on; without it each run pod pickles to its own disk.
    assert literal.get("SHAPER_S3_BUCKET"), f"{name}: no SHAPER_S3_BUCKET"
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", literal["SHAPER_S3_BUCKET"]), "not an S3 bucket name"
    url = make_url(literal.get("SHAPER_DATABASE_URL", ""))
    assert url.drivername.startswith("postgres") and url.host and url.username and url.database, name
    assert url.password is None, f"{name}: the database URL carries a password"
    # The password: the whole shaper-env secret, or that one key of it.
    ref = from_secret.get("SHAPER_DATABASE_PASSWORD")
    assert SECRET in secrets or (ref and ref["name"] == SECRET and ref["key"] == "SHAPER_DATABASE_PASSWORD"), name


def test_code_server_and_run_pods_agree():
    """Run pods get the deployment's config as well (includeConfigInLaunchedRuns): two different
    values for one variable would be resolved by merge order, not by intent."""
    pods = code_pods()
    for variable in ("SHAPER_S3_BUCKET", "SHAPER_S3_PREFIX", "SHAPER_S3_ENDPOINT_URL", "SHAPER_DATABASE_URL"):
        seen = {literal.get(variable) for _, (literal, _, _) in pods}
        assert len(seen) == 1, f"{variable}: {seen}"
    for deployment in user_deployments():
        assert (deployment.get("includeConfigInLaunchedRuns") or {}).get("enabled", True) is True


def test_no_secret_is_a_value():
    text = VALUES.read_text()
    for _, (literal, _, _) in code_pods():
        for variable in literal:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|AWS_ACCESS_KEY_ID", variable), variable
    assert "postgresqlPassword" not in values().get("postgresql", {})
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URL with a password"
    # The secret the comments tell operators to create holds the database password.
    assert re.search(rf"create secret generic {SECRET} .*SHAPER_DATABASE_PASSWORD=", text)
    # and the S3 endpoint override is documented next to the bucket, for MinIO.
    assert "SHAPER_S3_ENDPOINT_URL" in text


def test_the_settings_layer_reads_a_run_pod_environment(monkeypatch):
    """What a run pod ends up with parses into the settings the io_manager and the store use: the
    bucket, and the database URL completed by the secret's password."""
    from shaper_pipelines.settings import database_url, get_settings

    literal, _, _ = launcher_env(launcher())
    for variable in list(os.environ):
        if variable.startswith("SHAPER_"):
            monkeypatch.delenv(variable)
    for variable, value in literal.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("SHAPER_DATABASE_PASSWORD", "from-the-secret")
    settings = get_settings()
    assert settings.s3_bucket == literal["SHAPER_S3_BUCKET"] and settings.s3_prefix == literal["SHAPER_S3_PREFIX"]
    assert make_url(database_url()).password == "from-the-secret"
