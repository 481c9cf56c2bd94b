"""A throwaway Pushgateway for tests: Debian's prometheus-pushgateway on a free loopback port,
in memory only (the package's default persistence file is the system's, not ours); optionally
behind its own web config (TLS, basic auth)."""

from __future__ import annotations

import json
import shutil
import ssl
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

    context: ssl.SSLContext | None = None  # for an HTTPS gateway: one that trusts its certificate
    headers: dict | None = None  # for a gateway with basic auth: its Authorization header

    def metrics(self) -> str:
        """What a scrape of it returns now."""
        request = urllib.request.Request(f"{self.url}/metrics", headers=self.headers or {})
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
            return response.read().decode()

    def stop(self) -> None:
        """Terminate (kill if it lingers) and remove its directory. Safe to call twice."""
        end_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_pushgateway(timeout: float = 30.0, *, web_config: dict | None = None,
                      context: ssl.SSLContext | None = None, headers: dict | None = None) -> PushgatewayServer:
    """Start a Pushgateway on a free loopback port; return once /-/ready answers 200. With
    ``web_config`` (the exporter-toolkit web config as a dict: tls_server_config, basic_auth_users)
    it serves HTTPS when that config says so; ``context`` and ``headers`` are how the readiness
    check and :meth:`PushgatewayServer.metrics` reach it then."""
    binary = shutil.which(BINARY) or ("/usr/bin/" + BINARY if Path("/usr/bin/" + BINARY).exists() else None)
    if not binary:
        raise RuntimeError(f"{BINARY} not found: install Debian's prometheus-pushgateway package "
                           "(apt-get install prometheus-pushgateway, or scripts/install test)")
    directory = Path(tempfile.mkdtemp(prefix="shaper-pushgateway-"))
    port = free_port()
    args = [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", "--log.level=warn"]
    if web_config:
        (directory / "web.yml").write_text(json.dumps(web_config))  # JSON is YAML
        args.append(f"--web.config.file={directory / 'web.yml'}")
    with open(directory / "pushgateway.log", "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    scheme = "https" if web_config and web_config.get("tls_server_config") else "http"
    server = PushgatewayServer(f"{scheme}://127.0.0.1:{port}", port, directory, process, context, headers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            request = urllib.request.Request(f"{server.url}/-/ready", headers=headers or {})
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
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
