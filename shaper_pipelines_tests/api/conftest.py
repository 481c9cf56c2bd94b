"""The control API as real processes: uvicorn serving the app on a free loopback port, and a real
Dagster webserver (no daemon, so launched runs stay QUEUED and nothing executes) whose GraphQL
API both the control API and the tests talk to."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shaper_pipelines_tests.conftest import PROJECT
from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process

TOKEN = "api-test-token-0123456789"


def _request(url: str, method: str = "GET", body=None, headers: dict | None = None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class ApiProcess:
    """``python -m uvicorn shaper_pipelines.api.app:app`` with ``env``, ready when /v1/health answers."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"api-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "shaper_pipelines.api.app:app", "--host", "127.0.0.1", "--port",
                 str(self.port)], cwd=log_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the API exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if _request(f"{self.url}/v1/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the API did not answer within 60 s:\n{self.log.read_text()}")

    def call(self, method: str, path: str, body=None, token: str | None = TOKEN) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, _headers, text = _request(f"{self.url}{path}", method, body, headers)
        return status, (json.loads(text) if text else None)

    def stop(self) -> None:
        end_process(self.proc)


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    status, _headers, text = _request(f"{url}/graphql", "POST", {"query": query, "variables": variables or {}})
    assert status == 200, text
    payload = json.loads(text)
    assert "errors" not in payload, payload
    return payload["data"]


RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId jobName status runConfigYaml tags { key value } }
  }
}
"""

_WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def dagster_run(url: str, run_id: str) -> dict:
    run = graphql(url, RUN_QUERY, {"runId": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    return run


class DagsterWebserver:
    """``dagster-webserver -w workspace.yaml`` from the project root, as `shaper ui` runs Dagster."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / "dagster-webserver.log"
        webserver = str(Path(sys.executable).parent / "dagster-webserver")
        with open(self.log, "wb") as out:
            # Its own session, so that stopping it also stops the code server it starts.
            self.proc = subprocess.Popen([webserver, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
                                         cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dagster-webserver exited:\n{self.log.read_text()[-5000:]}")
            try:
                entries = graphql(self.url, _WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            except (OSError, AssertionError):
                entries = []
            entry = next((e for e in entries if e["name"] == "shaper_pipelines"), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                assert loaded["__typename"] == "RepositoryLocation", loaded
                return
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"the code location did not load within 180 s:\n{self.log.read_text()[-5000:]}")

    def stop(self) -> None:
        end_process(self.proc, 20, group=True)


def shaper_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a shaper process whose SHAPER_HOME is ``home``: SQLite under it, and
    DAGSTER_HOME taken from it the way settings.dagster_env() decides."""
    from shaper_pipelines.settings import dagster_env

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHAPER_HOME", str(home))
        for name in ("SHAPER_DATABASE_URL", "DAGSTER_HOME", "SHAPER_AGENTS", "SHAPER_AGENT_TOKEN",
                     "SHAPER_DAGSTER_URL", "SHAPER_API_TOKEN", "SHAPER_SCALING_CONFIG"):
            mp.delenv(name, raising=False)
        env = dagster_env()
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def dagster_webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster") / "shaper_home"
    server = DagsterWebserver(shaper_env(home), home.parent)
    yield server
    server.stop()


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'profiles.db'}"
