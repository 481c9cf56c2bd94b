"""``shaper api``: serve the control API (see shaper_pipelines.api.app)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="serve the control API (HTTP, OpenAPI at /openapi.json; needs SHAPER_API_TOKEN)",
                       description="Serve the control API. The bearer token comes from SHAPER_API_TOKEN (never the "
                                   "command line, which any user can read in ps); runs are launched through the "
                                   "Dagster webserver at SHAPER_DAGSTER_URL.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; elsewhere, serve TLS or put a TLS proxy in front: "
                        "the token travels in every request)")
    p.add_argument("--port", type=int, default=8780)
    p.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    p.set_defaults(func=_api)


def _api(args) -> int:
    import logging

    import uvicorn

    from shaper_pipelines.api.app import create_app

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is not a TCP port")
    # Built before uvicorn starts, so that a missing token or an unreachable database is one clear
    # line from `shaper` (an ApiConfigError is a ValueError) instead of a server that never serves.
    app = create_app()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                log_level="info")
    return 0
