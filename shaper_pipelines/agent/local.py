"""The embedded default's agent: one local agent process, started on first use and found again by
every later run, the UI and the sensor through ``SHAPER_HOME/agent.json`` (mode 0600: it holds
the token; also its pid). It exits by itself after a while with nothing to do, or when
``stop_local_agent`` asks it to."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shaper_pipelines.agent.client import AgentClient, AgentError, AgentUnreachable

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
    with log:  # the agent keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "shaper_pipelines.cli", "agent", "--port", str(port),
                                 "--exit-when-idle", IDLE_EXIT, "--work-dir", str(home / "agent-work"),
                                 *LOCAL_LIMITS],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "SHAPER_AGENT_TOKEN": token})
    url = f"http://127.0.0.1:{port}"
    fd = os.open(home / "agent.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        # The pid lets stop_local_agent make sure the process is gone, not only asked to go.
        json.dump({"url": url, "token": token, "pid": proc.pid}, f)
    client = AgentClient(url, token, timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.runs()
            return client
        except AgentUnreachable:
            time.sleep(0.2)
    raise AgentUnreachable(f"the local agent did not start; see {home / 'agent.log'}")


def _agent_process(pid: int, url: str) -> bool:
    """Whether ``pid`` is still the agent recorded with ``url`` (and not a zombie, or a process that
    reused the pid since): what stop_local_agent may signal."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    port = url.rsplit(":", 1)[-1].encode()
    return state != "Z" and b"agent" in argv and port in argv


def stop_local_agent(home: Path, timeout: float = 10.0) -> bool:
    """Stop the local agent recorded in ``home``, if one runs: asked over its API (it stops its
    load and exits), then SIGTERM, then SIGKILL, waiting each time for the process to go. Returns
    whether there was one to stop. Used when a home is thrown away (tests, an uninstall)."""
    state = home / "agent.json"
    if not state.exists():
        return False
    info = json.loads(state.read_text())
    pid, url = info.get("pid"), info["url"]
    try:
        AgentClient(url, info["token"], timeout=5).shutdown()
        asked = True
    except AgentUnreachable:
        asked = False
    except AgentError:  # an agent from before /shutdown: the signals below still end it
        asked = True
    if pid is None:
        return asked
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and _agent_process(pid, url):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout / 3
        while time.monotonic() < deadline and _agent_process(pid, url):
            time.sleep(0.05)
        if not _agent_process(pid, url):
            return True
    return True
