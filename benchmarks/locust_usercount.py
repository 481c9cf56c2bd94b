"""The baseline of the HTTP fidelity benchmark: plain Locust shaped by user count (users x one
request per second each, ramped by a LoadTestShape), counting completed requests the same way as
shaper's locustfile so both are measured alike."""

import os
from pathlib import Path

from locust import HttpUser, LoadTestShape, constant_throughput, task

from shaper_pipelines.agent.locust_counts import publish_completed_requests

COUNTS = Path(os.environ["SHAPER_LOCUST_COUNTS"])
PEAK = int(os.environ.get("BASELINE_PEAK_USERS", "1000"))
SECONDS = float(os.environ.get("BASELINE_SECONDS", "30"))


publish_completed_requests(COUNTS)


class PoliteUser(HttpUser):
    wait_time = constant_throughput(1)

    @task
    def get(self):
        self.client.get("/", name="baseline")


class Ramp(LoadTestShape):
    def tick(self):
        elapsed = self.get_run_time()
        if elapsed > SECONDS + 2:
            return None
        return (max(1, int(PEAK * min(1.0, elapsed / SECONDS))), PEAK)
