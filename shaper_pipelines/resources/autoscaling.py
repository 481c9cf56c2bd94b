"""AWS Auto Scaling as a Dagster resource: boto3 clients for Auto Scaling groups and Application
Auto Scaling (ECS), optionally pointed at another endpoint (moto_server in tests, a VPC endpoint
in production), with botocore's retries and the pace of write calls configured in one place."""

from __future__ import annotations

import time
from typing import Callable

import dagster as dg

from shaper_pipelines.lib.aws_calls import DEFAULT_CALLS_PER_SECOND, DEFAULT_MAX_ATTEMPTS


class AutoScalingResource(dg.ConfigurableResource):
    """``endpoint_url`` empty means AWS itself, with boto3's usual credential chain. Without an
    endpoint and without credentials there is no AWS to ask: dry runs then work offline, from the
    bounds in scaling.yaml, and say so; real runs refuse."""

    endpoint_url: str = ""
    # Attempts per call in all, the first included; botocore's standard retry mode spaces them
    # with jittered exponential backoff.
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # Write calls per second at most (Application Auto Scaling takes one scheduled action per call).
    calls_per_second: float = DEFAULT_CALLS_PER_SECOND

    def client(self, target):
        from shaper_pipelines.lib.aws_calls import make_client

        return make_client(target, endpoint_url=self.endpoint_url or None, max_attempts=self.max_attempts)

    def pacing(self, sleep: Callable[[float], None] = time.sleep):
        from shaper_pipelines.lib.aws_calls import Pacing

        return Pacing(calls_per_second=self.calls_per_second, sleep=sleep)

    def reachable(self) -> bool:
        if self.endpoint_url:
            return True
        import boto3

        return boto3.session.Session().get_credentials() is not None
