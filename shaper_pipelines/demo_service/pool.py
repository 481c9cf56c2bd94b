"""The service's fixed worker pool and its bounded queue, and what it knows about its own load.

Everything here runs on the server's event loop: a request takes a worker if one is free, waits
in the queue if the queue has room, and is turned away (``Full``, a 503) otherwise. A worker is
held for the whole of the request's work, so at most ``workers`` requests are in work at once and
throughput cannot pass ``workers / work_s``; past that, the queue fills, latency climbs to about
``(queue + workers) / workers * work_s``, and then the excess is refused.

Utilisation is kept as a counter of busy worker-seconds, integrated at every change, not only as
a gauge: a gauge read once a scrape misses what happened between scrapes, while the counter's
increase over any interval, divided by ``workers`` and the interval, is the exact mean
utilisation over it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor

from shaper_pipelines.demo_service import work
from shaper_pipelines.demo_service.config import ServiceConfig


class Full(Exception):
    """Every worker busy and the queue full."""


class WorkerPool:
    def __init__(self, workers: int, queue: int, do_work: Callable[[], Awaitable[None]]):
        self.workers, self.queue_limit = workers, queue
        self._do_work = do_work
        self._free = asyncio.Semaphore(workers)
        self.busy = 0  # requests holding a worker
        self.queued = 0  # requests waiting for one
        # The scrape may come from another thread than the loop's; the lock keeps the integral whole.
        self._lock = threading.Lock()
        self._busy_seconds = 0.0
        self._since = time.monotonic()

    def _set_busy(self, delta: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._busy_seconds += self.busy * (now - self._since)
            self._since = now
            self.busy += delta

    def busy_seconds(self) -> float:
        """Worker-seconds spent in work since the service started."""
        with self._lock:
            return self._busy_seconds + self.busy * (time.monotonic() - self._since)

    def utilisation(self) -> float:
        return self.busy / self.workers

    async def serve(self) -> float:
        """One request's work, once a worker is free; the seconds it waited in the queue."""
        if self.busy + self.queued >= self.workers + self.queue_limit:
            raise Full()
        self.queued += 1
        arrived = time.perf_counter()
        try:
            await self._free.acquire()
        finally:
            self.queued -= 1
        waited = time.perf_counter() - arrived
        self._set_busy(+1)
        try:
            await self._do_work()
        finally:
            self._set_busy(-1)
            self._free.release()
        return waited


class CpuWork:
    """"cpu" mode: ``work_s`` of CPU per request in a process of its own, one per worker.

    Processes, not threads: hashing in threads would leave the GIL to decide how much of it runs
    at once, and the service's capacity would no longer be ``workers / work_s``. The pool's
    semaphore already bounds the requests in work to ``workers``, so the executor's own queue
    stays empty and a request never waits where the service cannot see it."""

    def __init__(self, config: ServiceConfig):
        import multiprocessing

        self.work_s = config.work_s
        # spawn, not fork: forking a process that runs threads (asyncio's, the executor's) can
        # copy a held lock into the child.
        context = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(config.workers, mp_context=context, initializer=work.started,
                                            initargs=(os.getpid(), context.Barrier(config.workers)))
        self._cpu: dict[int, float] = {}  # worker pid -> CPU seconds it had used at its last request
        self._lock = threading.Lock()
        # Every worker started now, from this (the main) thread: the kernel's parent-death signal
        # is tied to the thread that started a child, and a request handler's thread may retire.
        # Each ``ready`` waits at the barrier until all are in one, so each holds a worker of its own.
        for future in [self.executor.submit(work.ready) for _ in range(config.workers)]:
            self._record(*future.result(timeout=60))

    def _record(self, pid: int, cpu: float) -> None:
        with self._lock:
            self._cpu[pid] = cpu

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        self._record(*await loop.run_in_executor(self.executor, work.burn, self.work_s))

    def worker_pids(self) -> list[int]:
        with self._lock:
            return sorted(self._cpu)

    def worker_cpu_seconds(self) -> float:
        """CPU the workers have used, as of each one's last request (an idle worker uses next to none)."""
        with self._lock:
            return sum(self._cpu.values())

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class HoldWork:
    """"pool" mode: each request holds its worker for ``work_s`` without using the CPU, like a
    connection pool in front of a slow backend. Latency climbs as the queue fills while the host
    stays idle, so its capacity is ``workers / work_s`` on any machine."""

    def __init__(self, config: ServiceConfig):
        self.work_s = config.work_s

    async def __call__(self) -> None:
        await asyncio.sleep(self.work_s)

    def worker_pids(self) -> list[int]:
        return []

    def worker_cpu_seconds(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def make_work(config: ServiceConfig) -> CpuWork | HoldWork:
    return CpuWork(config) if config.mode == "cpu" else HoldWork(config)
