"""The embedded default's agent: one local agent process, started on first use and found again by
every later run, the UI and the sensor through ``SHAPER_HOME/agent.json`` (mode 0600: it holds
the token). It exits by itself after a while with nothing to do."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from shaper_pipelines.agent.client import AgentClient, AgentUnreachable

IDLE_EXIT = "10m"
# Gentle by design: the embedded default runs on a developer's machine.
LOCAL_LIMITS = ["--max-cores", "0.5", "--max-memory-mib", "256", "--max-disk-mib-per-s", "10",
                "--max-disk-quota-mib", "64", "--max-duration", "10m", "--dead-man", "5m"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def known_local_agent(home: Path) -> AgentClient | None:
    """A client for the local agent recorded in ``home``, answering or not; None if none was started."""
    state = home / "agent.json"
    if not state.exists():
        return None
    info = json.loads(state.read_text())
    return AgentClient(info["url"], info["token"], timeout=5)


def local_agent(home: Path) -> AgentClient:
    """A client for the local agent, starting one if none answers."""
    client = known_local_agent(home)
    if client is not None:
        try:
            client.runs()
            return client
        except AgentUnreachable:
            pass
    home.mkdir(parents=True, exist_ok=True)
    token, port = secrets.token_urlsafe(24), _free_port()
    log = open(home / "agent.log", "ab")
    # The token goes through the environment: on a command line any user could read it in ps (and
    # a token starting with '-' would read as an option).
    subprocess.Popen([sys.executable, "-m", "shaper_pipelines.cli", "agent", "--port", str(port),
                      "--exit-when-idle", IDLE_EXIT, "--work-dir", str(home / "agent-work"), *LOCAL_LIMITS],
                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                     env={**os.environ, "SHAPER_AGENT_TOKEN": token})
    url = f"http://127.0.0.1:{port}"
    fd = os.open(home / "agent.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    client = AgentClient(url, token, timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.runs()
            return client
        except AgentUnreachable:
            time.sleep(0.2)
    raise AgentUnreachable(f"the local agent did not start; see {home / 'agent.log'}")
