"""``shaper agent``: start a load agent on this host."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run a load agent (HTTP control API, token-protected)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9460)
    p.add_argument("--token", default=None,
                   help="bearer token; prefer SHAPER_AGENT_TOKEN, since a command line is visible in ps")
    p.add_argument("--allow", action="append", default=None,
                   help="host a run may target (repeat; default localhost and 127.0.0.1)")
    p.add_argument("--max-cores", type=float, default=1.0, help="hard cap on CPU cores (default 1)")
    p.add_argument("--max-memory-mib", type=float, default=512.0)
    p.add_argument("--max-disk-mib-per-s", type=float, default=50.0)
    p.add_argument("--max-disk-quota-mib", type=float, default=256.0)
    p.add_argument("--max-rps", type=float, default=2000.0, help="hard cap on HTTP requests per second")
    p.add_argument("--locust-processes", type=int, default=1,
                   help="Locust worker processes for HTTP load (more than 1: a local master and workers)")
    p.add_argument("--locust-remote-workers", type=int, default=0,
                   help="wait for this many `shaper locust-worker` processes (other hosts) instead of forking")
    p.add_argument("--locust-master-bind", default="127.0.0.1", help="where remote Locust workers connect")
    p.add_argument("--locust-master-port", type=int, default=5557)
    p.add_argument("--max-duration", default="1h", help="longest run accepted (default 1h)")
    p.add_argument("--dead-man", default="60s", help="stop all load after this long without the controller")
    p.add_argument("--exit-when-idle", default=None,
                   help="exit after this long with no run and no request (for agents started on demand)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where disk and HTTP load keep their files (default: a temp dir, removed on a clean stop)")
    p.add_argument("--request-timeout", default="10s",
                   help="time a client has to send a request's head, and again its body (default 10s)")
    p.set_defaults(func=_agent)


def _agent(args) -> int:
    from shaper_pipelines.agent.server import Agent, Limits, serve
    from shaper_pipelines.lib.durations import parse_duration

    for name in ("max_cores", "max_memory_mib", "max_disk_mib_per_s", "max_disk_quota_mib", "max_rps"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    limits = Limits(max_cores=min(args.max_cores, os.cpu_count() or 1), max_memory_mib=args.max_memory_mib,
                    max_disk_mib_per_s=args.max_disk_mib_per_s, max_disk_quota_mib=args.max_disk_quota_mib,
                    max_rps=args.max_rps, locust_processes=max(1, args.locust_processes),
                    locust_remote_workers=max(0, args.locust_remote_workers),
                    locust_master_bind=args.locust_master_bind, locust_master_port=args.locust_master_port,
                    max_duration_s=parse_duration(args.max_duration), dead_man_s=parse_duration(args.dead_man),
                    idle_exit_s=parse_duration(args.exit_when_idle) if args.exit_when_idle else None)
    request_timeout = parse_duration(args.request_timeout)
    if not request_timeout > 0:
        raise ValueError("--request-timeout must be positive")
    from shaper_pipelines.settings import get_settings

    token = args.token or get_settings().agent_token.get_secret_value()
    if args.work_dir is None:  # made here, so the agent removes it on a clean stop
        work_dir, owned = Path(tempfile.mkdtemp(prefix="shaper-agent-")), True
    else:  # removed on a clean stop only if it did not exist before
        work_dir, owned = args.work_dir, not args.work_dir.exists()
    try:
        agent = Agent(token, args.allow or ["localhost", "127.0.0.1"], limits, work_dir, owns_work_dir=owned)
    except ValueError:
        if owned and args.work_dir is None:
            work_dir.rmdir()
        raise
    try:
        serve(agent, args.host, args.port, request_timeout)
    finally:  # also when serving never started (the port is taken): the temp dir goes too
        agent.close()
    return 0


def add_worker_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("locust-worker", help="serve an agent's HTTP load as a Locust worker (for other hosts)")
    p.add_argument("--master-host", required=True)
    p.add_argument("--master-port", type=int, default=5557)
    p.set_defaults(func=_locust_worker)


def _locust_worker(args) -> int:
    """A Locust worker for the agent's master, started again after each run: Locust workers quit
    with their master, and the agent starts a master per run."""
    import signal
    import subprocess
    import sys
    import time

    from shaper_pipelines.agent.generators import LOCUSTFILE

    stopping = []
    child: list[subprocess.Popen] = []

    def stop(signum, _frame):
        stopping.append(signum)
        if child and child[0].poll() is None:
            child[0].terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    env = {**os.environ, "SHAPER_LOCUST_COUNTS": tempfile.mkdtemp(prefix="shaper-worker-")}
    while not stopping:
        child[:] = [subprocess.Popen([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host",
                                      args.master_host, "--master-port", str(args.master_port),
                                      "--loglevel", "WARNING"], env=env)]
        child[0].wait()
        if not stopping:
            time.sleep(0.5)
    return 0
