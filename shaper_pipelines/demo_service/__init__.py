"""A small real HTTP service on loopback whose latency rises with load, with a capacity known in
advance: what a rehearsal is measured against (issue 14's benchmark compares the capacity a
rehearsal finds to this one).

What it models
--------------
A fixed pool of ``workers`` (N) in front of a bounded queue of ``queue`` (Q) requests. Each
request holds one worker for a known amount of work, ``work_ms`` (W):

- ``cpu`` mode: W milliseconds of CPU, hashing in a worker process of its own (processes, so the
  GIL does not serialise the work), like a CPU-bound handler;
- ``pool`` mode: W milliseconds holding the worker without using the CPU, like a connection
  pool in front of a slow backend.

A request that finds every worker busy waits in the queue; one that finds the queue full gets a
503 at once. Nothing else limits it while its server process (uvicorn, one event loop) has the
CPU it needs: about 1 ms a request, 2 ms in ``cpu`` mode with the hand-over to a worker.

Its known capacity
------------------
**N / W requests per second** (``capacity_rps`` in its JSON line, and
``demo_capacity_requests_per_second`` in its ``/metrics``): each worker finishes one request
every W. In ``cpu`` mode this holds only while N cores are free for it (and the event loop
needs a little CPU of its own besides): with C < N free cores it is about C / W. ``pool`` mode's
capacity is the same on any machine.

In practice the true capacity is a little below N / W: in ``pool`` mode each hold overshoots by
the event loop's timer (about 0.4 ms) and by the loop's other work, about 4 % below at W = 50 ms
under overload and relatively more at small W; in ``cpu`` mode the server's own CPU comes from a
spare core, or from the workers' if there is none. Keep W at 20 ms or more where the capacity
must be known to a few per cent, and measure it (a step load) where it must be exact.

Measured (the tests, on 2 shared cores, open-loop load from the same machine):

- ``pool``, N = 4, W = 50 ms, Q = 16 (80/s): at 40/s p50 52.6 ms, p95 55 ms, utilisation 0.500;
  at 72/s in Poisson arrivals p95 175 ms (latency climbs before throughput flattens) with 68.9/s
  achieved; at 120/s 76.9/s achieved (-4 %), p95 262 ms ((16 + 4) / 4 · 50 = 250), the rest 503;
- ``cpu``, N = 1, W = 50 ms, Q = 8 (20/s): at 10/s p50 58 ms; at 30/s 17.7/s achieved while the
  worker had 0.89 of a core (another process had the other): throughput is the CPU the
  workers get divided by W.

How it responds to load (offered rate λ)
----------------------------------------
- utilisation (busy workers / workers) is λ·W / N below capacity, and 1 at and past it;
  ``demo_busy_worker_seconds_total`` integrates it exactly;
- latency is W (plus the queueing that random arrivals bring as λ nears N / W) below capacity;
  past it the queue fills and latency climbs to about (Q + N) / N · W, then stays there while
  the excess, λ − N / W, is answered 503;
- achieved throughput follows λ up to N / W and then stays flat.

Starting it
-----------
``python -m shaper_pipelines.demo_service --port 0 --workers 4 --work-ms 5 --mode pool`` prints
one JSON line with its ``url`` (loopback only; any other address is refused). From Python::

    with start_demo_service(mode="cpu", workers=1, work_ms=20) as service:
        service.url, service.process, service.capacity_rps  # 50 requests/s

Modules: ``config`` (the configuration and the loopback rule), ``work`` (the CPU work, in the
worker processes), ``pool`` (the workers, the queue, busy time), ``metrics`` (``/metrics``),
``server`` (the HTTP side), ``process`` (starting and stopping it).
"""

from __future__ import annotations

# Exported lazily: "cpu" mode's worker processes import this package too (they are spawned), and
# need none of what starting a service takes.
__all__ = ["ConfigError", "DemoService", "DemoServiceError", "ServiceConfig", "start_demo_service"]


def __getattr__(name: str):
    if name in ("ConfigError", "ServiceConfig"):
        from shaper_pipelines.demo_service import config

        return getattr(config, name)
    if name in ("DemoService", "DemoServiceError", "start_demo_service"):
        from shaper_pipelines.demo_service import process

        return getattr(process, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
