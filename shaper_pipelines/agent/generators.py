"""Real load, one resource each: CPU, memory and disk. Each generator takes a target every second
(``set_target``), reports what it achieved (``achieved``) and gives everything back on ``stop``.

The work happens in child processes (CPU, memory) so that load is real operating-system load,
measured from /proc as any monitoring agent would see it, and so that stopping is a kill that
leaves nothing allocated behind.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

from shaper_pipelines.agent.lifeline import die_with_parent
from shaper_pipelines.agent.locust_counts import BOUNDS_MS, Counts, read_counts
from shaper_pipelines.lib.histograms import increase, quantile_from_buckets

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PERIOD = 0.05  # seconds per busy/idle cycle of a CPU worker: short enough to average smoothly


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _cpu_worker(parent, duty, ready) -> None:
    die_with_parent(parent)
    ready.set()
    while True:
        d = duty.value
        start = time.perf_counter()
        if d > 0:
            while time.perf_counter() - start < d * _PERIOD:
                pass
        rest = _PERIOD - (time.perf_counter() - start)
        if rest > 0:
            time.sleep(rest)


class CpuGenerator:
    """Keeps ``share`` of ``cores`` busy, closing the loop on measured CPU time: each second the
    duty cycle is corrected by the gap between target and achieved, so scheduler noise and other
    load on the machine are compensated rather than ignored."""

    def __init__(self, cores: float):
        self.cores = cores
        self.workers_n = max(1, int(-(-cores // 1)))
        ctx = mp.get_context("spawn")
        self.duties = [ctx.Value("d", 0.0, lock=False) for _ in range(self.workers_n)]
        ready = [ctx.Event() for _ in range(self.workers_n)]
        self.workers = [ctx.Process(target=_cpu_worker, args=(os.getpid(), d, r), daemon=True) for d, r in zip(self.duties, ready)]
        for w in self.workers:
            w.start()
        for r in ready:
            r.wait(timeout=30)
        self.target_cores = 0.0
        # Feed-forward (target / workers) plus a correction integrated from the measured error:
        # a step in the target moves the duty at once; the correction absorbs overheads.
        self._correction = 0.0
        self._duty = 0.0
        # Measured from here: the interpreters' start-up is not generated load.
        self._last = (time.monotonic(), self._cpu_total())
        self.last_achieved = 0.0

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def _cpu_total(self) -> float:
        total = 0.0
        for w in self.workers:
            try:
                total += _cpu_seconds(w.pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def set_target(self, share: float) -> None:
        self.target_cores = max(0.0, min(1.0, share)) * self.cores
        self._apply()

    def tick(self) -> float:
        """Measure the last interval and correct the duty cycle; returns achieved share."""
        now, cpu = time.monotonic(), self._cpu_total()
        elapsed = now - self._last[0]
        achieved = (cpu - self._last[1]) / elapsed if elapsed > 0 else 0.0
        self._last = (now, cpu)
        self.last_achieved = achieved / self.cores
        if self.target_cores > 0:
            self._correction += 0.5 * (self.target_cores - achieved) / self.workers_n
            self._correction = max(-0.5, min(0.5, self._correction))
        self._apply()
        return self.last_achieved

    def _apply(self) -> None:
        feed = self.target_cores / self.workers_n
        self._duty = 0.0 if feed <= 0 else max(0.0, min(1.0, feed + self._correction))
        for d in self.duties:
            d.value = self._duty

    def stop(self) -> None:
        for w in self.workers:
            w.kill()
        for w in self.workers:
            w.join(timeout=2)


def _touched(size: int) -> bytearray:
    """A block with every page written, so the kernel really backs it: resident, not reserved.
    (A helper, so no local name keeps a freed block alive after a step down.)"""
    block = bytearray(size)
    block[::4096] = b"\x01" * len(range(0, size, 4096))
    return block


def _memory_worker(parent, conn) -> None:
    die_with_parent(parent)
    chunks: list[bytearray] = []
    chunk = 16 * 1024 * 1024
    while True:
        target_mib = conn.recv()
        if target_mib is None:
            return
        want = int(target_mib * 1024 * 1024 // chunk)
        while len(chunks) < want:
            chunks.append(_touched(chunk))
        del chunks[want:]
        conn.send(True)


class MemoryGenerator:
    """Holds ``target`` MiB resident in a child process; freeing is the child's, so nothing leaks."""

    def __init__(self, max_mib: float):
        self.max_mib = max_mib
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_memory_worker, args=(os.getpid(), child), daemon=True)
        self.proc.start()
        self.set_target(0.0)  # answers once the child is up: what it holds now is not load
        self.baseline = _rss_mib(self.proc.pid)
        self.last_achieved = 0.0

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def set_target(self, mib: float) -> None:
        self._conn.send(max(0.0, min(mib, self.max_mib)))
        self._conn.recv()

    def tick(self) -> float:
        self.last_achieved = max(0.0, _rss_mib(self.proc.pid) - self.baseline)
        return self.last_achieved

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=2)


class DiskGenerator:
    """Writes and fsyncs ``target`` MiB per second inside its own directory under the quota, in a
    ring of files so the quota is never exceeded; the directory is removed on stop."""

    BLOCK = 1024 * 1024

    def __init__(self, directory: Path, quota_mib: float):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.quota_blocks = max(1, int(quota_mib))
        self.target = 0.0
        self.written = 0
        self._stop = threading.Event()
        self._counted = (time.monotonic(), 0)
        self.last_achieved = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    pids: list[int] = []  # a thread of the agent, not a process

    def set_target(self, mib_per_s: float) -> None:
        self.target = max(0.0, mib_per_s)

    def _run(self) -> None:
        block = os.urandom(self.BLOCK)
        path = self.directory / "load.bin"
        with open(path, "wb") as f:
            position = 0
            started = time.monotonic()
            budget = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                budget += self.target * (now - started)
                started = now
                if budget >= 1:
                    if position >= self.quota_blocks:
                        f.seek(0)
                        position = 0
                    f.write(block)
                    f.flush()
                    os.fsync(f.fileno())
                    position += 1
                    self.written += 1
                    budget -= 1
                else:
                    time.sleep(0.01)
                budget = min(budget, max(2.0, self.target))  # no catching up after a stall

    def tick(self) -> float:
        now = time.monotonic()
        elapsed = now - self._counted[0]
        self.last_achieved = (self.written - self._counted[1]) / elapsed if elapsed > 0 else 0.0
        self._counted = (now, self.written)
        return self.last_achieved

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for f in self.directory.glob("*"):
            f.unlink(missing_ok=True)
        self.directory.rmdir()


LOCUSTFILE = str(Path(__file__).with_name("locustfile.py"))
LATENCY_BOUNDS = (*BOUNDS_MS, math.inf)


class NetworkGenerator:
    """HTTP requests at a target arrival rate against one URL, through Locust in its own process
    group. ``processes`` > 1 forks Locust workers under a local master; ``remote_workers`` > 0
    makes it a master that waits for that many ``shaper locust-worker`` processes, on this host or
    others, to connect to ``master_bind:master_port``."""

    def __init__(self, url: str, work_dir: Path, processes: int = 1, remote_workers: int = 0,
                 master_bind: str = "127.0.0.1", master_port: int = 5557, arrivals: str = "even"):
        import subprocess
        import sys
        from urllib.parse import urlparse

        parsed = urlparse(url)
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.control = work_dir / "target_rps"
        self.control.write_text("0")
        users = remote_workers or processes  # one arrival user per worker
        env = {**os.environ, "SHAPER_LOCUST_CONTROL": str(self.control), "SHAPER_LOCUST_COUNTS": str(work_dir),
               "SHAPER_LOCUST_USERS": str(users), "SHAPER_LOCUST_PATH": parsed.path or "/",
               "SHAPER_LOCUST_ARRIVALS": arrivals}
        # Through the lifeline wrapper: Locust dies with the agent, and its forked workers with
        # Locust (the locustfile's at-fork hook), even when the agent is killed outright.
        cmd = [sys.executable, "-m", "shaper_pipelines.agent.lifeline", str(os.getpid()),
               "locust", "-f", LOCUSTFILE, "--headless",
               "--host", f"{parsed.scheme}://{parsed.netloc}", "--loglevel", "WARNING", "--only-summary"]
        if remote_workers:
            cmd += ["--master", "--expect-workers", str(remote_workers), "--expect-workers-max-wait", "30",
                    "--master-bind-host", master_bind, "--master-bind-port", str(master_port)]
        elif processes > 1:
            cmd += ["--processes", str(processes)]
        with open(work_dir / "locust.log", "ab") as log:  # Locust keeps its own descriptor
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.last_achieved = 0.0
        self.last_window: dict = {"errors": None, "latency_p50_ms": None, "latency_p95_ms": None,
                                  "latency_p99_ms": None}
        self._counted = (time.monotonic(), Counts())
        self._files: dict = {}  # each counts file as last read

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def set_target(self, rps: float) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(repr(max(0.0, rps)))
        tmp.replace(self.control)  # atomic: a worker never reads half a number

    def tick(self) -> float:
        """Requests per second completed since the last tick, summed over Locust's workers, failed
        or not. ``last_window`` then says the rest of that window: ``errors`` (failed requests per
        second) and the successful requests' latency quantiles in ms (``latency_p50_ms``,
        ``latency_p95_ms``, ``latency_p99_ms``; None when none succeeded in the window)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"Locust exited with {self.proc.returncode}; see {self.work_dir / 'locust.log'}")
        counts = read_counts(self.work_dir, self._files)
        now = time.monotonic()
        then, before = self._counted
        elapsed = now - then
        rate = (lambda n: max(0, n) / elapsed) if elapsed > 0 else (lambda n: 0.0)
        self.last_achieved = rate(counts.completed - before.completed)
        # Buckets of this window, made cumulative at BOUNDS_MS and +Inf (a Locust that restarted
        # and counts from zero again reads as having started in this window).
        window = increase(dict(enumerate(before.latency)), dict(enumerate(counts.latency)))
        cumulative = list(itertools.accumulate(window[i] for i in range(len(counts.latency))))
        self.last_window = {"errors": rate(counts.failures - before.failures)}
        for q in (0.5, 0.95, 0.99):
            value = quantile_from_buckets(q, LATENCY_BOUNDS, cumulative)
            self.last_window[f"latency_p{round(q * 100)}_ms"] = None if math.isnan(value) else round(value, 3)
        self._counted = (now, counts)
        return self.last_achieved

    def stop(self) -> None:
        import shutil
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=1.5)
        except (ProcessLookupError, OSError):
            pass
        except Exception:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=2)
        shutil.rmtree(self.work_dir, ignore_errors=True)
