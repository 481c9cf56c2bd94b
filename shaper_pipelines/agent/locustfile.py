"""HTTP load for the agent, run by Locust in its own process (gevent must not patch the agent).

Arrivals follow a target **rate**, an open model: every 200 ms each user starts its share of the
target's requests without waiting for earlier ones to answer. A slow server therefore sees the
load the profile asks for, not a politely reduced one, which is what a user-count shape would
give. ``SHAPER_LOCUST_ARRIVALS`` says how they are spaced: ``even`` (the default) spreads the
slice's requests evenly, which follows the profile closely second by second; ``poisson`` makes
them a Poisson process (a Poisson count per slice at uniform instants), as independent users
arrive: what a capacity rehearsal needs, because evenly spaced requests hardly queue until the
service saturates, and would place its latency objective's capacity too high.

The agent writes the target rate to ``SHAPER_LOCUST_CONTROL`` every second. Run alone, Locust's
users read it there; distributed, the master reads it and broadcasts it to its workers (forked
here or started elsewhere with ``shaper locust-worker``), which need no shared disk. Completed
requests, failures and response times flow back the same way (see ``locust_counts``).
"""

import math
import os
import random
import time
from pathlib import Path

import gevent
from locust import LoadTestShape, constant, events, task
from locust.contrib.fasthttp import FastHttpUser

from shaper_pipelines.agent.lifeline import die_with_parent
from shaper_pipelines.agent.locust_counts import publish_completed_requests

# Locust imports this file before forking its ``--processes`` workers: each worker asks, right
# after the fork, to die with the master that forked it (which itself dies with the agent), so a
# worker is never orphaned to keep sending requests.
_forking = [os.getpid()]  # the pid of whoever forks, taken at each fork
os.register_at_fork(before=lambda: _forking.__setitem__(0, os.getpid()),
                    after_in_child=lambda: die_with_parent(_forking[0]))

CONTROL = Path(os.environ.get("SHAPER_LOCUST_CONTROL", "/nonexistent"))
COUNTS = Path(os.environ.get("SHAPER_LOCUST_COUNTS", "/tmp"))
USERS = int(os.environ.get("SHAPER_LOCUST_USERS", "1"))
PATH = os.environ.get("SHAPER_LOCUST_PATH", "/")

SLICE = 0.2  # seconds: how often a user re-reads the target and starts its next arrivals
# Remote workers (`shaper locust-worker`) have their own environment: the master sends its
# arrivals mode with the rate (below), and this list holds what a worker was told.
POISSON_ARRIVALS = [os.environ.get("SHAPER_LOCUST_ARRIVALS", "even") == "poisson"]
_rng = random.Random()


RATE_MESSAGE = "shaper_rate"
# On workers: each user's share of the rate, from the master's messages (only the master knows
# how many workers share the load).
_broadcast_rate: list[float | None] = [None]


def _file_rate() -> float:
    try:
        return max(0.0, float(CONTROL.read_text() or 0))
    except (OSError, ValueError):
        return 0.0


def _user_rate() -> float:
    """Requests per second this user owes."""
    return _file_rate() / USERS if _broadcast_rate[0] is None else _broadcast_rate[0]


@events.init.add_listener
def _share_the_rate(environment, **_kwargs):
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        def broadcast():
            while True:
                runner.send_message(RATE_MESSAGE, {"rate": _file_rate() / USERS, "poisson": POISSON_ARRIVALS[0]})
                gevent.sleep(0.05)

        gevent.spawn(broadcast)
    elif isinstance(runner, WorkerRunner):
        _broadcast_rate[0] = 0.0

        def told(msg, **_):
            _broadcast_rate[0] = float(msg.data["rate"])
            POISSON_ARRIVALS[0] = bool(msg.data["poisson"])

        runner.register_message(RATE_MESSAGE, told)


publish_completed_requests(COUNTS)


class ArrivalUser(FastHttpUser):
    wait_time = constant(0)
    concurrency = 200

    def on_start(self):
        self._carry = 0.0
        self._last = time.time()

    @task
    def arrive(self):
        # Arrivals owed for the time that really passed since the last slice, not for SLICE: a
        # loop that runs a little late must not lose requests, or the rate drifts low.
        now = time.time()
        if POISSON_ARRIVALS[0]:
            expected = _user_rate() * (now - self._last)
            self._last = now
            for at in sorted(_rng.uniform(0, SLICE) for _ in range(_poisson(expected))):
                gevent.spawn_later(at, self._one)
            gevent.sleep(max(0.0, SLICE - (time.time() - now)))
            return
        due = _user_rate() * (now - self._last) + self._carry
        self._last = now
        n = int(due)
        self._carry = due - n
        for i in range(n):
            gevent.spawn_later(SLICE * i / n, self._one)
        gevent.sleep(max(0.0, SLICE - (time.time() - now)))

    def _one(self):
        with self.client.get(PATH, name="shaper", catch_response=True) as response:
            if response.status_code >= 500:
                response.failure(f"status {response.status_code}")


def _poisson(mean: float) -> int:
    """A Poisson count (Knuth's product of uniforms; a normal approximation above 500, where the
    product would underflow and a slice of 2,500 req/s would cost that many draws anyway)."""
    if mean <= 0:
        return 0
    if mean > 500:
        return max(0, round(_rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, _rng.random()
    while p > limit:
        k += 1
        p *= _rng.random()
    return k


class FixedUsers(LoadTestShape):
    """One user per worker for as long as the agent keeps Locust running: the rate, not the
    user count, carries the profile."""

    def tick(self):
        return (USERS, USERS)
