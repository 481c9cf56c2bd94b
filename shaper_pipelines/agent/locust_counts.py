"""Counting completed requests inside Locust, for whoever measures the rate outside it: how many,
how many failed, and how long they took.

What leaves Locust is a file (``counts-<pid>.txt`` in ``directory``), rewritten every 10 ms when
it changed, holding one JSON object of cumulative counts since Locust started::

    {"completed": 1234, "failures": 5, "latency": [3, 40, ...]}

``completed`` counts every request that finished, failed or not; ``failures`` those Locust marked
failed (a 5xx, a refused connection, a timeout); ``latency`` the successful ones' response times
in the buckets of ``BOUNDS_MS`` (one count per bucket, not cumulative; the last bucket is above
10 s). The reader takes differences at its own instants, so a stale count would read as a wrong
rate. Run alone, a Locust process writes its own counts; distributed, workers (on this host or
others) send theirs to the master over Locust's own messages, and the master writes the sum, so
nothing assumes the workers share a disk. A file holding a bare number (the format before
latency was counted) reads as completed requests only, and so does such a worker's message.

Only ``publish_completed_requests`` needs gevent (which Locust has patched in by then): the rest
is imported by the agent too, to read the files, and must not import Locust.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

COUNT_MESSAGE = "shaper_count"
# Milliseconds, 0.5 ms to 10 s: 1-1.25-1.5-1.75-2-2.5-3-3.5-4-5-6-7-8 per decade, so no bucket is
# wider than a quarter of its lower bound and a quantile interpolated inside one is off by less.
BOUNDS_MS: tuple[float, ...] = tuple(
    b for b in (round(m * 10.0 ** e, 6) for e in range(-1, 4)
                for m in (1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8)) if b >= 0.5) + (10000.0,)
BUCKETS = len(BOUNDS_MS) + 1  # and one above the last bound


@dataclass
class Counts:
    """Cumulative counts of one Locust process, or summed over several."""

    completed: int = 0
    failures: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, data) -> None:
        """Add a file's or a message's content: a JSON object as above, or a bare number."""
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            self.completed += int(data)
            return
        if not isinstance(data, dict):
            return
        self.completed += int(data.get("completed", 0))
        self.failures += int(data.get("failures", 0))
        latency = data.get("latency") or []
        if len(latency) == BUCKETS:  # another bucket layout (another version) is not summed in
            self.latency = [a + int(b) for a, b in zip(self.latency, latency)]

    def as_dict(self) -> dict:
        return {"completed": self.completed, "failures": self.failures, "latency": self.latency}


def read_counts(directory: Path, last: dict | None = None) -> Counts:
    """The sum of every ``counts-*.txt`` in ``directory``. A file that cannot be read or parsed
    this time counts as it did last time, from ``last`` (file name -> content, kept up to date
    here): a count that dipped for one reading would read as a reset, then as a burst."""
    last = {} if last is None else last
    total = Counts()
    for f in directory.glob("counts-*.txt"):
        try:
            text = f.read_text()
            last[f.name] = json.loads(text) if text.strip() else 0
        except (OSError, ValueError):
            pass
        total.add(last.get(f.name, 0))
    return total


def _write(path: Path, counts: Counts) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts.as_dict(), separators=(",", ":")))
    tmp.replace(path)


def publish_completed_requests(directory: Path) -> None:
    import gevent
    from locust import events

    own = Counts()
    changes = [0]  # bumped on every request: a write only when something changed

    @events.request.add_listener
    def _count(response_time=None, exception=None, **_kwargs):
        own.completed += 1
        if exception is not None:
            own.failures += 1
        elif response_time is not None:
            own.latency[bisect.bisect_left(BOUNDS_MS, float(response_time))] += 1
        changes[0] += 1

    def every_10ms(action):
        def loop():
            while True:
                action()
                gevent.sleep(0.01)

        gevent.spawn(loop)

    @events.init.add_listener
    def _start(environment, **_kwargs):
        from locust.runners import MasterRunner, WorkerRunner

        runner = environment.runner
        path = directory / f"counts-{os.getpid()}.txt"
        if isinstance(runner, MasterRunner):
            latest: dict[str, object] = {}
            runner.register_message(COUNT_MESSAGE, lambda msg, **_: latest.__setitem__(msg.node_id, msg.data))
            written = [None]

            def write_sum():
                total = Counts()
                for data in list(latest.values()):
                    total.add(data)
                if total != written[0]:
                    _write(path, total)
                    written[0] = total

            every_10ms(write_sum)
        elif isinstance(runner, WorkerRunner):
            every_10ms(lambda: runner.send_message(COUNT_MESSAGE, own.as_dict()))
        else:
            written = [-1]

            def write_own():
                if changes[0] != written[0]:
                    written[0] = changes[0]
                    _write(path, own)

            every_10ms(write_own)
