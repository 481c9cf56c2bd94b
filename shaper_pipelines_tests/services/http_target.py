"""A small HTTP server on loopback for load tests: answers every GET with 200 and counts them.

Run as ``python -m shaper_pipelines_tests.services.http_target PORT``; ``GET /count`` returns the
number of requests served so far (it is not counted itself)."""

from __future__ import annotations

import sys
import threading
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


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("serving", flush=True)
    server.serve_forever()
