"""A small open-loop load generator for loopback services: requests start on a schedule, whether
or not earlier ones have answered, as real users arrive.

A closed loop (each client waits for its answer before the next request) slows down with the
service and so never pushes it past its capacity; here a dispatcher hands each request to a pool
of threads at its due time, and latency counts from that due time, so a generator that falls
behind shows as latency rather than as a politely lower load. Enough threads for every request
the service can hold at once (its workers and queue) keep that lateness to the dispatch itself.

Arrivals are evenly spaced (``"uniform"``) or a seeded Poisson process (``"poisson"``), whose
bunching is what makes latency climb before throughput flattens.
"""

from __future__ import annotations

import http.client
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class Outcome:
    due: float  # seconds from the step's start
    done: float
    status: int  # 0: no answer (connection error or timeout)


@dataclass
class StepResult:
    rate: float
    seconds: float
    warmup: float
    outcomes: list[Outcome] = field(default_factory=list)

    def _measured(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.due >= self.warmup]

    @property
    def window(self) -> float:
        return self.seconds - self.warmup

    @property
    def offered_rps(self) -> float:
        return len(self._measured()) / self.window

    @property
    def achieved_rps(self) -> float:
        """Served (200) answers completed within the window, per second."""
        return sum(1 for o in self.outcomes if o.status == 200 and self.warmup <= o.done < self.seconds) / self.window

    def count(self, status: int, *, whole: bool = False) -> int:
        """Answers with ``status`` to requests due within the window (or, ``whole``, at any time)."""
        return sum(1 for o in (self.outcomes if whole else self._measured()) if o.status == status)

    def latencies(self) -> np.ndarray:
        """Seconds from due to answer of the served requests due within the window."""
        return np.array([o.done - o.due for o in self._measured() if o.status == 200])

    def quantile(self, q: float) -> float:
        lat = self.latencies()
        return float(np.quantile(lat, q)) if len(lat) else float("nan")

    def describe(self) -> str:
        return (f"offered {self.offered_rps:.1f}/s, achieved {self.achieved_rps:.1f}/s, p50 "
                f"{self.quantile(0.5) * 1000:.1f} ms, p95 {self.quantile(0.95) * 1000:.1f} ms, "
                f"503 {self.count(503)}, no answer {self.count(0)}")


def _schedule(rate: float, seconds: float, arrivals: str, seed: int) -> list[float]:
    if arrivals == "uniform":
        return [i / rate for i in range(int(rate * seconds))]
    if arrivals != "poisson":
        raise ValueError(f"arrivals {arrivals!r}: uniform or poisson")
    rng, due, t = random.Random(seed), [], 0.0
    while (t := t + rng.expovariate(rate)) < seconds:
        due.append(t)
    return due


def offer(url: str, rate: float, seconds: float, *, warmup: float = 0.0, threads: int = 32,
          arrivals: str = "uniform", seed: int = 0, path: str = "/", timeout: float = 10.0) -> StepResult:
    """Offer ``rate`` requests per second to ``url`` for ``seconds``; measured from ``warmup`` on.
    Returns once every request has an outcome."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    result = StepResult(rate=rate, seconds=seconds, warmup=warmup)
    todo: queue.Queue = queue.Queue()
    lock = threading.Lock()
    start = time.perf_counter()

    def client():
        conn = None
        while (due := todo.get()) is not None:
            status = 0
            for _attempt in range(2):
                fresh = conn is None
                if fresh:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    break
                except (http.client.HTTPException, OSError) as exc:
                    conn.close()
                    conn = None
                    # Once more on a fresh connection only if the server had closed a kept-alive
                    # one: anything else (a timeout) may have reached it, and must not count twice.
                    if fresh or not isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError,
                                                     BrokenPipeError)):
                        break
            done = time.perf_counter() - start
            with lock:
                result.outcomes.append(Outcome(due, done, status))
        if conn is not None:
            conn.close()

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for due in _schedule(rate, seconds, arrivals, seed):
        wait = start + due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        todo.put(due)
    for _ in workers:
        todo.put(None)
    for w in workers:
        w.join(timeout + 5)
    return result
