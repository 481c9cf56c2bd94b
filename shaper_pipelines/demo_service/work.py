"""The work one request costs in "cpu" mode, run in the worker processes.

Kept free of imports beyond the standard library: each worker process is started with ``spawn``
and imports this module, so what it imports is each worker's start-up time and memory.

The work is measured in CPU time, not wall time: a worker that the kernel deschedules (another
process wants the core) still does its full ``work_ms`` of hashing, as a real CPU-bound request
would. The service's capacity is then ``workers / work_ms`` while that many cores are free, and
less, honestly, when they are not.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time

# Small enough that the loop checks the clock often (a few microseconds per block), big enough
# that the hashing, not the loop, is what burns the CPU.
_BLOCK = os.urandom(4096)


_all_started = None  # a barrier for every worker, set by ``started``


def started(parent: int, all_started) -> None:
    """Worker initialiser: die with the service (the kernel's SIGKILL if it is killed outright) and
    leave Ctrl-C to it, so one keystroke does not print a traceback per worker."""
    global _all_started
    from shaper_pipelines.agent.lifeline import die_with_parent

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _all_started = all_started


def burn(seconds: float) -> tuple[int, float]:
    """Hash until this thread has used ``seconds`` of CPU. Returns this worker's pid and the CPU
    seconds its process has used so far, which the service reports as its workers' CPU."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        hashlib.sha256(_BLOCK).digest()
    return os.getpid(), time.process_time()


def ready() -> tuple[int, float]:
    """A task that waits for every worker to be in it too: N of them, submitted at once, are how
    the service makes sure each of its N workers has started (a worker that started first would
    otherwise take two while another still imports)."""
    _all_started.wait(timeout=60)
    return os.getpid(), time.process_time()
