"""Counting completed requests inside Locust, for whoever measures the rate outside it.

The count leaves Locust as a file (``counts-<pid>.txt`` in ``directory``) holding the cumulative
number of completed requests, rewritten every 10 ms: the reader takes differences at its own
instants, so a stale count would read as a wrong rate. Run alone, a Locust process writes its
own count; distributed, workers (on this host or others) send theirs to the master over Locust's
own messages, and the master writes the sum, so nothing assumes the workers share a disk.
Imported only by locustfiles: it needs gevent, which Locust has patched in.
"""

import os
from pathlib import Path

import gevent
from locust import events

COUNT_MESSAGE = "shaper_count"


def _write(path: Path, value: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(value))
    tmp.replace(path)


def publish_completed_requests(directory: Path) -> None:
    completed = [0]

    @events.request.add_listener
    def _count(**_kwargs):
        completed[0] += 1

    @events.init.add_listener
    def _start(environment, **_kwargs):
        from locust.runners import MasterRunner, WorkerRunner

        runner = environment.runner
        path = directory / f"counts-{os.getpid()}.txt"
        if isinstance(runner, MasterRunner):
            totals: dict[str, int] = {}
            runner.register_message(COUNT_MESSAGE, lambda msg, **_: totals.__setitem__(msg.node_id, msg.data))

            def write_sum():
                while True:
                    _write(path, sum(totals.values()))
                    gevent.sleep(0.01)

            gevent.spawn(write_sum)
        elif isinstance(runner, WorkerRunner):
            def send():
                while True:
                    runner.send_message(COUNT_MESSAGE, completed[0])
                    gevent.sleep(0.01)

            gevent.spawn(send)
        else:
            def write_own():
                while True:
                    _write(path, completed[0])
                    gevent.sleep(0.01)

            gevent.spawn(write_own)
