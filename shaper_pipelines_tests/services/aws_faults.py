"""An HTTP proxy on loopback in front of moto_server that fakes only what moto cannot do: throttle,
and fail midway.

Every request is forwarded to moto unchanged (the Host header too, so that moto's signature checks
still hold when IAM is enforced) and moto's answer is passed back, except for calls a test told the
proxy to fail: ``fail(operation, ...)`` answers the next ``times`` matching calls (after letting
``skip`` of them through) with the HTTP status and the AWS error body that service sends: an XML
``ErrorResponse`` for the query-protocol Auto Scaling API, JSON with ``__type`` for Application
Auto Scaling. ``respond`` answers with any body instead (per-item failures of a batch call), and
``forward=True`` lets the call reach moto first, as when AWS did the work and the answer was lost.

A call's operation is the ``Action=`` form field (query protocol) or the part of the
``X-Amz-Target`` header after the dot (JSON protocol); its service is the one its SigV4 credential
scope names. Every call is counted, per operation, with its time.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
JSON_TYPE = "application/x-amz-json-1.1"
ASG_XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    at: float  # time.monotonic() when the proxy received it
    faulted: bool


@dataclass
class _Fault:
    operation: str
    service: str | None
    times: int
    skip: int
    status: int
    code: str
    message: str
    body: bytes | None
    content_type: str
    forward: bool


@dataclass
class FaultProxy:
    upstream: str  # moto_server's URL
    calls: list[Call] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _hooks: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- what the tests say

    def fail(self, operation: str, *, code: str, message: str = "injected by the test's fault proxy",
             status: int = 400, times: int = 1, skip: int = 0, service: str | None = None,
             forward: bool = False) -> None:
        """Answer the next ``times`` calls of ``operation`` (after ``skip`` pass) with AWS error ``code``."""
        with self._lock:
            self._faults.append(_Fault(operation, service, times, skip, status, code, message, None, "", forward))

    def throttle(self, operation: str, *, times: int = 1, skip: int = 0, service: str | None = None) -> None:
        """AWS's answer to a caller over its request rate: ``Throttling`` (Auto Scaling) or
        ``ThrottlingException`` (Application Auto Scaling), HTTP 400, "Rate exceeded"."""
        with self._lock:
            self._faults.append(_Fault(operation, service, times, skip, 400, "", "Rate exceeded", None, "", False))

    def respond(self, operation: str, body: str, *, status: int = 200, content_type: str = "text/xml",
                times: int = 1, skip: int = 0, service: str | None = None, forward: bool = False) -> None:
        """Answer the next ``times`` calls of ``operation`` with exactly ``body``."""
        with self._lock:
            self._faults.append(_Fault(operation, service, times, skip, status, "", "", body.encode(), content_type,
                                       forward))

    def after(self, operation: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, when moto has answered the next call of ``operation`` and before that
        answer goes back: whatever the hook changes is in place when the caller goes on."""
        with self._lock:
            self._hooks.append((operation, hook))

    def count(self, operation: str, service: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c.operation == operation and service in (None, c.service))

    def faulted(self, operation: str) -> int:
        """How many calls of ``operation`` the proxy answered with a fault."""
        with self._lock:
            return sum(1 for c in self.calls if c.operation == operation and c.faulted)

    def times(self, operation: str) -> list[float]:
        with self._lock:
            return [c.at for c in self.calls if c.operation == operation]

    # ---- serving

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy._handle(self)

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="aws-fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        target = request.headers.get("X-Amz-Target", "")
        json_protocol = bool(target)
        operation = target.rsplit(".", 1)[-1] if target else (parse_qs(body.decode("utf-8", "replace"))
                                                              .get("Action", [""])[0])
        scope = _SCOPE.search(request.headers.get("Authorization", ""))
        service = scope.group(1) if scope else ""
        with self._lock:
            fault = next((f for f in self._faults if f.operation == operation and f.times > 0
                          and f.service in (None, service)), None)
            if fault is not None and fault.skip > 0:
                fault.skip -= 1
                fault = None
            elif fault is not None:
                fault.times -= 1
            self.calls.append(Call(service, operation, time.monotonic(), fault is not None))
        if fault is None or fault.forward:
            status, headers, answer = self._forward(request, body)
        if fault is not None:
            status, headers, answer = self._fault_answer(fault, operation, json_protocol)
        else:
            with self._lock:
                hooks = [h for h in self._hooks if h[0] == operation]
                self._hooks = [h for h in self._hooks if h[0] != operation]
            for _, hook in hooks:
                hook()
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(answer)

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes):
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(request.command, request.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}]
            return response.status, kept, answer
        finally:
            conn.close()

    @staticmethod
    def _fault_answer(fault: _Fault, operation: str, json_protocol: bool):
        if fault.body is not None:
            return fault.status, [("Content-Type", fault.content_type)], fault.body
        if json_protocol:
            code = fault.code or "ThrottlingException"
            body = json.dumps({"__type": code, "message": fault.message}).encode()
            return fault.status, [("Content-Type", JSON_TYPE)], body
        code = fault.code or "Throttling"
        body = (f'<ErrorResponse xmlns="{ASG_XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{fault.message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
        return fault.status, [("Content-Type", "text/xml")], body.encode()


def failed_items_body(operation: str, items: list[tuple[str, str, str]]) -> str:
    """The answer of Auto Scaling's BatchPutScheduledUpdateGroupAction or BatchDeleteScheduledAction
    reporting ``items`` (name, error code, message) as failed, in the query protocol's XML."""
    member_list = {"BatchPutScheduledUpdateGroupAction": "FailedScheduledUpdateGroupActions",
                   "BatchDeleteScheduledAction": "FailedScheduledActions"}[operation]
    members = "".join(f"<member><ScheduledActionName>{name}</ScheduledActionName><ErrorCode>{code}</ErrorCode>"
                      f"<ErrorMessage>{message}</ErrorMessage></member>" for name, code, message in items)
    return (f'<{operation}Response xmlns="{ASG_XMLNS}"><{operation}Result><{member_list}>{members}</{member_list}>'
            f"</{operation}Result><ResponseMetadata><RequestId>fault-proxy</RequestId></ResponseMetadata>"
            f"</{operation}Response>")
