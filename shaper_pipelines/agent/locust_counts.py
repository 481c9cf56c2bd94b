"""Counting completed requests inside a Locust process, for whoever measures the rate outside it.

Each worker keeps its cumulative count in its own file (``counts-<pid>.txt`` in ``directory``),
rewritten every 10 ms: the reader takes differences at its own instants, so a stale count would
read as a wrong rate. Imported only by locustfiles: it needs gevent, which Locust has patched in.
"""

import os
from pathlib import Path

import gevent
from locust import events


def publish_completed_requests(directory: Path) -> None:
    completed = [0]

    @events.request.add_listener
    def _count(**_kwargs):
        completed[0] += 1

    def _publish():
        path = directory / f"counts-{os.getpid()}.txt"
        while True:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(completed[0]))
            tmp.replace(path)
            gevent.sleep(0.01)

    @events.init.add_listener
    def _start(environment, **_kwargs):
        from locust.runners import MasterRunner

        if not isinstance(environment.runner, MasterRunner):  # a master sends no requests itself
            gevent.spawn(_publish)
