"""A throwaway Pushgateway for tests: Debian's prometheus-pushgateway on a free loopback port,
in memory only (the package's default persistence file is the system's, not ours)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process

BINARY = "prometheus-pushgateway"


@dataclass
class PushgatewayServer:
    url: str
    port: int
    directory: Path
    process: subprocess.Popen

    @property
    def address(self) -> str:
        """host:port, as a scrape config's target."""
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        """What a scrape of it returns now."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return response.read().decode()

    def stop(self) -> None:
        """Terminate (kill if it lingers) and remove its directory. Safe to call twice."""
        end_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_pushgateway(timeout: float = 30.0) -> PushgatewayServer:
    """Start a Pushgateway on a free loopback port; return once /-/ready answers 200."""
    binary = shutil.which(BINARY) or ("/usr/bin/" + BINARY if Path("/usr/bin/" + BINARY).exists() else None)
    if not binary:
        raise RuntimeError(f"{BINARY} not found: install Debian's prometheus-pushgateway package "
                           "(apt-get install prometheus-pushgateway, or scripts/install test)")
    directory = Path(tempfile.mkdtemp(prefix="shaper-pushgateway-"))
    port = free_port()
    with open(directory / "pushgateway.log", "ab") as log:
        process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=",
                                    "--log.level=warn"],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = PushgatewayServer(f"http://127.0.0.1:{port}", port, directory, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    exited = process.poll()
    state = f"exited with status {exited}" if exited is not None else f"was not ready in {timeout:.0f}s"
    tail = (directory / "pushgateway.log").read_text(errors="replace")[-3000:]
    server.stop()
    raise RuntimeError(f"Pushgateway {state}; end of pushgateway.log:\n{tail}")
