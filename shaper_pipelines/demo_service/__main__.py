"""``python -m shaper_pipelines.demo_service --port 0 --workers 4 --work-ms 5 --mode pool``

Prints one JSON line on stdout when it accepts connections (``url``, ``pid``, the configuration
and ``capacity_rps``); ends on SIGTERM or SIGINT with status 0.

The server's imports stay inside ``main``: the "cpu" mode's workers are spawned processes that
import this module again (as ``__mp_main__``), and they need none of FastAPI or uvicorn.
"""

from __future__ import annotations

import argparse
import sys


def parse(argv: list[str]):
    from shaper_pipelines.demo_service.config import MODES, ConfigError, ServiceConfig

    parser = argparse.ArgumentParser(prog="python -m shaper_pipelines.demo_service",
                                     description="A small HTTP service on loopback whose latency rises with load.")
    parser.add_argument("--mode", choices=MODES, default="pool",
                        help="cpu: each request burns --work-ms of CPU in a worker process; "
                             "pool: each request holds a worker for --work-ms (default: pool)")
    parser.add_argument("--workers", type=int, default=4, help="worker pool size (default: 4)")
    parser.add_argument("--work-ms", type=float, default=5.0, help="work per request in milliseconds (default: 5)")
    parser.add_argument("--queue", type=int, default=16,
                        help="requests that may wait for a worker; more get 503 (default: 16)")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 for a free one (default: 0)")
    args = parser.parse_args(argv)
    try:
        return ServiceConfig(mode=args.mode, workers=args.workers, work_ms=args.work_ms, queue=args.queue,
                             host=args.host, port=args.port)
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    config = parse(sys.argv[1:] if argv is None else argv)
    from shaper_pipelines.demo_service.server import serve

    serve(config)


if __name__ == "__main__":
    main()
