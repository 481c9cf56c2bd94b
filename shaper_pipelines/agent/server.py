"""The load agent's HTTP API, served by uvicorn like the control API.

- every request carries ``Authorization: Bearer <token>`` (401 without), checked on the raw header
  bytes before routing or reading a body, so a caller without the token learns nothing;
- writes (``POST``, ``PATCH``, ``DELETE``) are the controller's acts and renew the dead-man timer;
  reads (``GET /runs``, ``GET /metrics``) never do. ``POST /heartbeat`` renews it and nothing else;
- ``POST /stop-all`` and SIGTERM stop everything within two seconds, children included;
  ``POST /shutdown`` does the same and then ends the agent (for agents started on demand);
- a malformed request gets a 4xx with ``{"error": ...}`` (or uvicorn's own 400 for a request h11
  cannot parse), never a dropped connection; the listen backlog, a connection cap and deadlines
  for request heads and bodies keep many concurrent or idle clients from taking it down.

The rules themselves live in ``core``; this module only maps HTTP onto them.
"""

from __future__ import annotations

import hmac
import logging
import signal
import sys
import threading

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from shaper_pipelines.agent.core import Agent, Limits, Refused, Run  # noqa: F401  (the agent's API)
from shaper_pipelines.agent.http_guard import BadRequest, DeadlineH11Protocol, read_json
from shaper_pipelines.agent.metrics import CONTENT_TYPE, exposition
from shaper_pipelines.body_limit import BodyLimitMiddleware
from shaper_pipelines.listen import BACKLOG, listening_socket

log = logging.getLogger("shaper.agent")

MAX_CONNECTIONS = 2048  # beyond it requests get 503 at once; idle ones are closed by the deadline
REQUEST_TIMEOUT = 10.0  # seconds for a request head, and again for its body
READS = frozenset({"GET", "HEAD"})


def _authorised(token: bytes, scope) -> bool:
    # Compared as bytes: a header is bytes on the wire, and a non-ASCII one must be a 401, not
    # the TypeError hmac.compare_digest raises for non-ASCII str.
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    return hmac.compare_digest(header, b"Bearer " + token)


def _bearer_guard(app, agent: Agent):
    """ASGI middleware: 401 before anything else; a write from the controller renews the dead-man."""
    token = agent.token.encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            if not _authorised(token, scope):
                response = JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
            if scope["method"] not in READS:
                agent.heard_from_controller()
        return await app(scope, receive, send)

    return guarded


def build_app(agent: Agent, request_exit=lambda: None, request_timeout: float = REQUEST_TIMEOUT):
    """The agent's ASGI app; ``request_exit`` ends the server (``POST /shutdown``)."""
    app = FastAPI(title="shaper agent", openapi_url=None, docs_url=None, redoc_url=None)

    async def body(request: Request) -> dict:
        return await read_json(request.stream(), request_timeout)

    @app.exception_handler(Refused)
    @app.exception_handler(BadRequest)
    async def refused(_request, exc):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        detail = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
        return JSONResponse({"error": detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request, exc):
        # The traceback goes to the agent's log; the caller gets a line, never the traceback.
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the agent's log"},
                            status_code=500)

    @app.get("/metrics")
    async def metrics():
        return Response(exposition(agent), media_type=CONTENT_TYPE)

    # Plain JSONResponses: the views are JSON already, and a run's samples (up to an hour of
    # seconds) need no trip through FastAPI's encoder.
    @app.get("/runs")
    async def runs():
        return JSONResponse([r.view() for r in list(agent.runs.values())])

    @app.post("/runs")
    async def start(request: Request):
        data = await body(request)
        return JSONResponse((await run_in_threadpool(agent.start, data)).view(), status_code=201)

    @app.get("/runs/{run_id}")
    async def get(run_id: str):
        return JSONResponse(agent._get(run_id).view())

    @app.patch("/runs/{run_id}")
    async def adjust(run_id: str, request: Request):
        data = await body(request)
        return JSONResponse((await run_in_threadpool(agent.adjust, run_id, data)).view())

    @app.delete("/runs/{run_id}")
    async def stop(run_id: str):
        return JSONResponse((await run_in_threadpool(agent.stop, run_id)).view())

    @app.post("/stop-all")
    async def stop_all():
        return JSONResponse({"stopped": [r.id for r in await run_in_threadpool(agent.stop_all)]})

    @app.post("/heartbeat")
    async def heartbeat():
        # The guard has renewed the timer already (a write); this says how long it now runs.
        return JSONResponse({"dead_man_s": agent.limits.dead_man_s, "active_runs": len(agent.active())})

    @app.post("/shutdown")
    async def shutdown():
        stopping = [r.id for r in agent.active()]
        request_exit()
        return JSONResponse({"stopping": stopping}, status_code=202)

    # The token first (a caller without it learns nothing, not even the body limit), then the size.
    return _bearer_guard(BodyLimitMiddleware(app, error_key="error"), agent)


def serve(agent: Agent, host: str, port: int, request_timeout: float = REQUEST_TIMEOUT) -> None:
    """Serve until SIGTERM, SIGINT or ``POST /shutdown``, then stop all load before exiting."""
    import uvicorn

    class AgentServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # Load stops now, in parallel with uvicorn's own (bounded) wind-down of connections.
            threading.Thread(target=agent.close, daemon=True, name="close").start()
            super().handle_exit(sig, frame)

    protocol = type("AgentProtocol", (DeadlineH11Protocol,), {"head_timeout": request_timeout})
    sock = listening_socket(host, port)
    server: AgentServer | None = None

    def request_exit() -> None:
        server.handle_exit(signal.SIGTERM, None)

    config = uvicorn.Config(build_app(agent, request_exit, request_timeout), http=protocol, lifespan="off",
                            log_level="error", access_log=False, server_header=False, backlog=BACKLOG,
                            limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5,
                            timeout_graceful_shutdown=1, h11_max_incomplete_event_size=16 * 1024)
    server = AgentServer(config)
    agent.on_idle = request_exit
    # Until uvicorn installs its handlers, and after it restores these and re-raises what it
    # caught: a signal before or after serving still stops the load, and the exit status stays 0.
    signal.signal(signal.SIGTERM, server.handle_exit)
    signal.signal(signal.SIGINT, server.handle_exit)
    print(f"shaper agent listening on http://{host}:{sock.getsockname()[1]}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        agent.close()
        sock.close()
        sys.stdout.flush()
