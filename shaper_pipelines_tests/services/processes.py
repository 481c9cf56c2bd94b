"""Ending the processes the tests start: politely, then firmly."""

from __future__ import annotations

import os
import signal
import subprocess


def end_process(proc: subprocess.Popen, timeout: float = 10.0, *, group: bool = False) -> None:
    """SIGTERM, and SIGKILL if it is still there after ``timeout``; with ``group``, to its whole
    process group (a server that starts children in a session of its own). Safe to call twice."""
    if proc.poll() is not None:
        return

    def send(sig: int) -> None:
        if group:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        else:
            proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(timeout=timeout)
