"""A small HTTP server on loopback for load tests: answers every GET with 200 and counts them.

Run as ``python -m shaper_pipelines_tests.services.http_target PORT``; ``GET /count`` returns the
number of requests served so far (it is not counted itself)."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_served = 0
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a load generator should not measure TCP set-up

    def log_message(self, *args):
        pass

    def do_GET(self):
        global _served
        if self.path == "/count":
            body = str(_served).encode()
        else:
            with _lock:
                _served += 1
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A load generator stopping mid-request resets its connections; that is not news.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@contextmanager
def http_target() -> Iterator[str]:
    """This server in a process of its own on a free loopback port; yields its base URL (no
    trailing slash) and ends it afterwards."""
    from shaper_pipelines_tests.services.postgres import free_port
    from shaper_pipelines_tests.services.processes import end_process

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shaper_pipelines_tests.services.http_target", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "serving"
        yield f"http://127.0.0.1:{port}"
    finally:
        end_process(proc)


def served(url: str) -> int:
    """How many requests the target at ``url`` has served."""
    with urllib.request.urlopen(f"{url}/count", timeout=5) as response:
        return int(response.read())


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("serving", flush=True)
    server.serve_forever()
