"""How closely generated load follows its target, next to the usual tools measured in the same run.

- CPU: shaper's closed-loop generator over a 60-second peak/valley profile (20 % .. 80 % of one
  core), error in percentage points at 1-second samples; next to ``stress-ng --cpu 1 --cpu-load L``
  at fixed levels, measured the same way (the processes' own CPU time from /proc).
- HTTP: shaper's open-model Locust generator along a ramp to 1,000 requests per second on a local
  server; next to plain Locust shaped by user count (one request per second per user).
- Memory: resident size against target along steps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, publish
from shaper_pipelines.agent.generators import CpuGenerator, MemoryGenerator, NetworkGenerator, _cpu_seconds

RAMP_SECONDS = 30


def follow(generator, targets) -> np.ndarray:
    """Drive ``generator`` one target per second; returns achieved per second."""
    achieved = []
    begin = time.monotonic()
    for second, target in enumerate(targets):
        generator.set_target(float(target))
        time.sleep(max(0.0, begin + second + 1 - time.monotonic()))
        achieved.append(generator.tick())
    return np.array(achieved)


def cpu_shaper() -> float:
    t = np.arange(60)
    targets = 0.5 + 0.3 * np.sin(2 * np.pi * t / 60)
    gen = CpuGenerator(1.0)
    try:
        achieved = follow(gen, targets)
    finally:
        gen.stop()
    return float(np.mean(np.abs(achieved[1:] - targets[1:])) * 100)


def cpu_stress_ng(level: int, seconds: int = 12) -> float:
    proc = subprocess.Popen(["stress-ng", "--cpu", "1", "--cpu-load", str(level), "--timeout", f"{seconds + 2}s",
                             "--quiet"], start_new_session=True)
    time.sleep(1.0)  # let it fork its worker
    samples = []
    try:
        last = None
        for _ in range(seconds):
            pids = [int(p) for p in subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                                                   text=True).stdout.split()]
            total = sum(_cpu_seconds(p) for p in pids if Path(f"/proc/{p}").exists())
            now = time.monotonic()
            if last is not None:
                samples.append((total - last[1]) / (now - last[0]))
            last = (now, total)
            time.sleep(1.0)
    finally:
        proc.kill()
        proc.wait()
    return float(np.mean(np.abs(np.array(samples) * 100 - level)))


def http_target() -> tuple[subprocess.Popen, str]:
    from shaper_pipelines_tests.services.postgres import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shaper_pipelines_tests.services.http_target", str(port)],
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    return proc, f"http://127.0.0.1:{port}/"


def ramp_error(targets: np.ndarray, achieved: np.ndarray) -> float:
    """Mean relative error where the target is at least 100 req/s (start-up seconds excluded)."""
    mask = targets >= 100
    return float(np.mean(np.abs(achieved[mask] - targets[mask]) / targets[mask]) * 100)


def http_shaper() -> tuple[float, float]:
    server, url = http_target()
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    targets = np.linspace(0, 1000, RAMP_SECONDS + 1)[1:]
    gen = NetworkGenerator(url, work / "run", processes=1)
    try:
        achieved = follow(gen, targets)
    finally:
        gen.stop()
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    return ramp_error(targets, achieved), float(achieved[-1])


def http_usercount() -> tuple[float, float]:
    server, url = http_target()
    work = Path(tempfile.mkdtemp(prefix="bench-locust-"))
    env = {**os.environ, "SHAPER_LOCUST_COUNTS": str(work), "BASELINE_SECONDS": str(RAMP_SECONDS)}
    proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "locust_usercount.py"),
                             "--headless", "--host", url.rstrip("/"), "--loglevel", "ERROR", "--only-summary"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    start = time.monotonic()
    targets, achieved, last = [], [], (start, 0)
    try:
        for second in range(RAMP_SECONDS):
            time.sleep(max(0.0, start + second + 1 - time.monotonic()))
            total = sum(int(f.read_text() or 0) for f in work.glob("counts-*.txt"))
            now = time.monotonic()
            achieved.append((total - last[1]) / (now - last[0]))
            last = (now, total)
            targets.append(1000 * min(1.0, (now - start) / RAMP_SECONDS))  # users, one request/s each
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    return ramp_error(np.array(targets), np.array(achieved)), float(achieved[-1])


def memory() -> float:
    targets = np.repeat([64, 128, 192, 128, 64], 3).astype(float)
    gen = MemoryGenerator(256)
    try:
        achieved = follow(gen, targets)
    finally:
        gen.stop()
    return float(np.mean(np.abs(achieved - targets) / targets) * 100)


def main() -> None:
    if not shutil.which("stress-ng"):
        sys.exit("stress-ng is needed for the CPU baseline: apt-get install stress-ng")
    cpu = cpu_shaper()
    stress = {level: cpu_stress_ng(level) for level in (20, 50, 80)}
    stress_mean = float(np.mean(list(stress.values())))
    http, http_peak = http_shaper()
    users, users_peak = http_usercount()
    mem = memory()
    lines = [
        "| load | shaper | baseline (same run) | ratio shaper / baseline |",
        "|---|---:|---:|---:|",
        f"| CPU, mean abs error at 1 s samples | {cpu:.2f} points (60 s peak/valley, 20-80 %) | "
        f"{stress_mean:.2f} points (stress-ng --cpu-load " + ", ".join(f"{k}: {v:.2f}" for k, v in stress.items())
        + f") | {cpu / stress_mean:.2f} |",
        f"| HTTP, mean abs error along a ramp to 1,000 req/s | {http:.1f} % (reached {http_peak:.0f} req/s) | "
        f"{users:.1f} % (plain Locust, user count; reached {users_peak:.0f} req/s) | {http / users:.2f} |",
        f"| Memory, mean abs error of resident size over steps of 64-192 MiB | {mem:.1f} % | - | - |",
        "",
        "Aims: CPU under 3 points, HTTP within 2 %, memory within 5 %. stress-ng holds a fixed level, the "
        "easier task; shaper follows a moving target.",
    ]
    publish("fidelity", "\n".join(lines))


if __name__ == "__main__":
    main()
