"""Shared by the benchmarks: timing and the results file the README shows."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
# The real traces the project carries, each folder with its licence (data/real/README.md).
REAL_DATA = ROOT / "data" / "real"


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` calls: the least disturbed by the rest of the machine."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def publish(name: str, markdown: str) -> Path:
    """Write ``benchmarks/results/NAME.md`` and put the same text in the README between
    ``<!-- bench:NAME -->`` markers, so the README always shows the last measured figures."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = f"{markdown.rstrip()}\n\n_Measured {stamp} on {machine()} with `python -m benchmarks.{name}`._\n"
    path = RESULTS / f"{name}.md"
    path.write_text(body)
    if README.exists():
        text = README.read_text()
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        if pattern.search(text):
            README.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))
    print(body)
    return path
