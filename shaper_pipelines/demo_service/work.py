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


def started(parent: int) -> None:
    """Worker initialiser: die with the service (the kernel's SIGKILL if it is killed outright) and
    leave Ctrl-C to it, so one keystroke does not print a traceback per worker."""
    from shaper_pipelines.agent.lifeline import die_with_parent

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def burn(seconds: float) -> tuple[int, float]:
    """Hash until this thread has used ``seconds`` of CPU. Returns this worker's pid and the CPU
    seconds its process has used so far, which the service reports as its workers' CPU."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        hashlib.sha256(_BLOCK).digest()
    return os.getpid(), time.process_time()


def ready() -> tuple[int, float]:
    """A task that does nothing: how the service makes sure every worker has started."""
    time.sleep(0.05)  # long enough that no worker takes two of these while the others start
    return os.getpid(), time.process_time()
