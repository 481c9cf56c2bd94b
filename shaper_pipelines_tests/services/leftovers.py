"""Processes a test run left behind: anything still running whose command line or working
directory lies in the run's temporary directories (agents started with a work directory there,
servers with their data there, detached `shaper agent`s of a `shaper run`)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def processes_in(root: Path) -> dict[int, str]:
    """pid -> command line of every process (but this one) that mentions ``root``."""
    root_text, found = str(root), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z" and (root_text in cmdline or cwd.startswith(root_text)):
            found[int(entry)] = cmdline.strip()
    return found


def left_behind(root: Path, grace: float = 10.0) -> dict[int, str]:
    """What still runs in ``root`` after ``grace`` seconds (time to finish exiting); those are then
    killed, by pid, so a failing run does not leave them to the next one."""
    deadline = time.monotonic() + grace
    while (found := processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found
