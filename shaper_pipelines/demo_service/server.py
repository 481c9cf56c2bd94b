"""The demo service's HTTP side, served by uvicorn like the agent and the control API.

- ``GET /`` (and ``GET /work``): one request's work; 200 ``ok``, or 503 at once when every worker
  is busy and the queue is full. ``/`` because that is the path the agent's Locust load asks for
  by default;
- ``GET /metrics``: Prometheus' text format (see ``metrics``);
- ``GET /healthz``: the configuration and the worker pids, as JSON; neither counts as a request.

It prints one JSON line on stdout once it accepts connections (its URL, pid and configuration),
so whoever started it on port 0 learns where it is.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from shaper_pipelines.demo_service.config import ServiceConfig
from shaper_pipelines.demo_service.metrics import CONTENT_TYPE, DemoMetrics
from shaper_pipelines.demo_service.pool import Full, WorkerPool, make_work
from shaper_pipelines.listen import BACKLOG, listening_socket

# Loopback load generators open many connections at once when the queue is full; the stdlib's
# backlog of 5 would reset them, and a reset is not the 503 the service means to give.


def build_app(config: ServiceConfig, pool: WorkerPool, metrics: DemoMetrics, worker_pids) -> FastAPI:
    app = FastAPI(title="shaper demo service", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/")
    @app.get("/work")
    async def do_work():
        arrived = time.perf_counter()
        try:
            waited = await pool.serve()
        except Full:
            metrics.requests.labels("503").inc()
            return Response(b"busy\n", status_code=503, media_type="text/plain", headers={"Retry-After": "1"})
        metrics.duration.observe(time.perf_counter() - arrived)
        metrics.queue_wait.observe(waited)
        metrics.requests.labels("200").inc()
        return Response(b"ok\n", media_type="text/plain")

    @app.get("/metrics")
    async def exposition():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/healthz")
    async def healthz():
        return JSONResponse({**config.as_dict(), "worker_pids": worker_pids()})

    return app


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(config: ServiceConfig) -> None:
    """Serve until SIGTERM or SIGINT; then the workers are stopped before the process exits."""
    import uvicorn

    sock = listening_socket(config.host, config.port)
    work = make_work(config)  # workers started (and warm) before the line that says we are ready
    try:
        pool = WorkerPool(config.workers, config.queue, work)
        metrics = DemoMetrics(config, pool, work)
        app = build_app(config, pool, metrics, work.worker_pids)
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="error", access_log=False,
                                               server_header=False, backlog=BACKLOG, timeout_keep_alive=5,
                                               timeout_graceful_shutdown=2))
        # Until uvicorn installs its handlers, and after it restores these and re-raises what it
        # caught: a signal at either moment ends the service through the same path, exit status 0.
        signal.signal(signal.SIGTERM, server.handle_exit)
        signal.signal(signal.SIGINT, server.handle_exit)
        print(json.dumps({"url": url_of(sock), "pid": os.getpid(), **config.as_dict(),
                          "port": sock.getsockname()[1], "worker_pids": work.worker_pids()}), flush=True)
        server.run(sockets=[sock])
    finally:
        work.close()
        sock.close()
        sys.stdout.flush()
