"""Running a hostile case the way a user meets it: the real command in a subprocess, under a
memory ceiling the kernel enforces, with its wall time and peak memory measured.

A case passes when it is refused within ``SECONDS`` of work and ``MEGABYTES`` of peak memory. The
work is the wall time beyond the command's own start-up (importing pandas alone takes about a
second on a busy 2-core machine), measured in the same session as the median of three runs that
only load what the commands load, so the budget means the same on a fast and a slow machine.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SECONDS = 2.0  # work allowed beyond start-up before the refusal
MEGABYTES = 500  # peak resident memory allowed
# The kernel's ceiling on address space: far above what a refusal needs, so a regression fails the
# test with a MemoryError instead of taking the machine's memory (virtual size runs well above
# resident size: thread stacks, numpy's arenas).
ADDRESS_SPACE = 3 * 1024**3
SHAPER = [sys.executable, "-m", "shaper_pipelines.cli"]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time
    megabytes: float  # peak resident set

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


MEASURED = Path(__file__).with_name("measured.py")


def run_limited(argv: list[str], *, input: str | bytes | None = None, env: dict | None = None,
                cwd: str | Path | None = None, timeout: float = 60.0) -> Outcome:
    """Run ``argv`` under the address-space ceiling; measure wall time and peak RSS, the latter
    from the command's own rusage (``wait4``), taken by the small launcher ``measured.py`` so that
    neither other processes of the test run nor the test process's own size count. Past
    ``timeout`` the command is killed and the outcome says so by its signal return code."""
    data = input.encode() if isinstance(input, str) else input
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    report, reported = os.pipe()
    start = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(MEASURED), str(reported), str(ADDRESS_SPACE), *argv],
                                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd,
                                pass_fds=(reported,), start_new_session=True)
    finally:
        os.close(reported)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def drain(stream, key):
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)

    readers = [threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True)]
    for reader in readers:
        reader.start()
    if data is not None:
        try:
            proc.stdin.write(data)
        except BrokenPipeError:  # refused before reading it all: that is allowed
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    killer.start()
    try:
        _, status, _ = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    with os.fdopen(report, "rb") as f:
        kib = f.read().decode() or "0"  # nothing when the launcher itself was killed
    for reader in readers:
        reader.join(timeout=5)
    return Outcome(proc.returncode, b"".join(chunks["out"]).decode(errors="replace"),
                   b"".join(chunks["err"]).decode(errors="replace"), seconds, int(kib) / 1024)


# What a command loads before it can look at its input: the command line and the libraries its
# commands use (pandas, numpy, SciPy, SQLAlchemy, the profile and forecast code). `--help` alone
# no longer imports them.
LOADING = [sys.executable, "-c", "import shaper_pipelines.cli, shaper_pipelines.lib.profile, "
           "shaper_pipelines.lib.history, shaper_pipelines.lib.forecast, shaper_pipelines.lib.planning, "
           "shaper_pipelines.store.profile_store"]


@lru_cache(maxsize=None)
def startup_seconds(argv: tuple[str, ...] = tuple(LOADING)) -> float:
    """The median wall time of ``argv`` (by default: loading what the commands load), three runs:
    what start-up alone costs here."""
    return statistics.median(run_limited(list(argv)).seconds for _ in range(3))


def server_megabytes(pid: int) -> float:
    """The peak resident memory (VmHWM) of a server process still running: what a case cost it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def assert_refused(outcome: Outcome, *, startup: float | None = None, exit_code: int | None = 2,
                   mentions: str | None = None) -> None:
    """Refused fast, small and clearly: the exit code, one line on stderr naming the problem and
    no traceback, within ``SECONDS`` beyond start-up and ``MEGABYTES`` of peak memory."""
    startup = startup_seconds() if startup is None else startup
    detail = f"rc={outcome.returncode} stderr={outcome.stderr[-2000:]!r}"
    if exit_code is None:
        assert outcome.returncode != 0, detail
    else:
        assert outcome.returncode == exit_code, detail
    assert "Traceback" not in outcome.stderr, detail
    assert len(outcome.lines) == 1, detail
    if mentions is not None:
        assert mentions.lower() in outcome.stderr.lower(), detail
    assert outcome.seconds <= startup + SECONDS, f"{outcome.seconds:.1f} s (start-up {startup:.1f} s)"
    assert outcome.megabytes <= MEGABYTES, f"{outcome.megabytes:.0f} MB"
