"""A throwaway moto server for tests: the real ``moto_server`` executable from this virtualenv on a
free loopback port, spoken to over HTTP by ordinary boto3 clients, never the real AWS.

moto keeps all state in the server process; ``reset()`` empties it between tests. IAM is not
enforced unless ``enforce_iam(True)`` is called: moto's ``/moto-api/reset-auth`` then checks every
request's signature and the caller's IAM policies, as AWS does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process


@dataclass
class MotoServer:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget every resource, and stop enforcing IAM."""
        self.enforce_iam(False)
        self._post("/moto-api/reset")

    def enforce_iam(self, on: bool) -> None:
        # The body is how many requests may still go unauthenticated. Switching it on at start-up
        # (INITIAL_NO_AUTH_ACTION_COUNT=0) would leave no principal able to create the IAM user.
        self._post("/moto-api/reset-auth", b"0" if on else b"inf")

    def _post(self, path: str, body: bytes = b"") -> None:
        # text/plain: with a form content type Flask would swallow the body moto reads.
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        end_process(self.process)
        self.log.unlink(missing_ok=True)


def moto_executable() -> Path:
    found = Path(sys.executable).parent / "moto_server"
    if not found.exists():
        raise RuntimeError(f"{found} not found: install the test extras (pip install -e '.[test]', moto[server])")
    return found


def start_moto(timeout: float = 30.0) -> MotoServer:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="shaper-moto-", suffix=".log")[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log, "wb") as out:
        process = subprocess.Popen([str(moto_executable()), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    server = MotoServer(process=process, port=port, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(server.url + "/moto-api/", timeout=1):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"moto_server did not answer on {server.url} within {timeout:.0f}s:\n{log.read_text()}")
