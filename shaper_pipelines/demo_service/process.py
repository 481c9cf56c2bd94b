"""Starting the demo service as a process of its own, and stopping it for good.

``start_demo_service`` validates the configuration first (a non-loopback host is refused before
anything starts), starts ``python -m shaper_pipelines.demo_service`` on a free port, reads the
JSON line it prints when it accepts connections and checks ``/healthz`` once. The result stops it
on ``stop()`` or at the end of a ``with`` block: SIGTERM, then SIGKILL if it is still there after
the timeout (its worker processes die with it: see ``work.started``).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import shaper_pipelines
from shaper_pipelines.demo_service.config import ServiceConfig


class DemoServiceError(RuntimeError):
    """The service did not start."""


@dataclass
class DemoService:
    url: str  # e.g. http://127.0.0.1:40123, no trailing slash
    process: subprocess.Popen
    info: dict = field(default_factory=dict)  # the JSON line: pid, mode, workers, work_ms, capacity_rps, ...

    @property
    def capacity_rps(self) -> float:
        return self.info["capacity_rps"]

    @property
    def worker_pids(self) -> list[int]:
        return list(self.info.get("worker_pids", []))

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status. Safe to call twice."""
        proc = self.process
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _child_env() -> dict[str, str]:
    """The environment, with this checkout first on the path: the service runs the same code as
    whoever starts it (a worktree's tests, not another checkout's editable install)."""
    root = str(Path(shaper_pipelines.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}


def _first_line(proc: subprocess.Popen, deadline: float) -> str:
    """The service's first stdout line, without blocking past ``deadline`` on a silent process."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        buffered = b""
        while b"\n" not in buffered:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise DemoServiceError("the demo service did not report its address in time")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                proc.wait(timeout=5)
                raise DemoServiceError(f"the demo service exited with status {proc.returncode} before it started")
            buffered += chunk
    return buffered.split(b"\n", 1)[0].decode()


def start_demo_service(mode: str = "pool", workers: int = 4, work_ms: float = 5.0, queue: int = 16, *,
                       host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0,
                       stderr=None) -> DemoService:
    """The demo service in a process of its own, accepting requests; ``stderr`` as for Popen
    (inherited by default, so its errors show where the caller's do)."""
    config = ServiceConfig(mode=mode, workers=workers, work_ms=work_ms, queue=queue, host=host, port=port)
    argv = [sys.executable, "-m", "shaper_pipelines.demo_service", "--mode", config.mode,
            "--workers", str(config.workers), "--work-ms", repr(config.work_ms), "--queue", str(config.queue),
            "--host", config.host, "--port", str(config.port)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                            env=_child_env())
    service = DemoService(url="", process=proc)
    try:
        info = json.loads(_first_line(proc, time.monotonic() + timeout))
        service.url, service.info = info["url"], info
        # No proxy: a proxy from the environment has no business with a loopback service.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{service.url}/healthz", timeout=10) as response:
            json.loads(response.read())
    except BaseException:
        service.stop()
        raise
    return service
