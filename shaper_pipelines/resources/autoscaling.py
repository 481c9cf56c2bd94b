"""AWS Auto Scaling as a Dagster resource: boto3 clients for Auto Scaling groups and Application
Auto Scaling (ECS), optionally pointed at another endpoint (moto_server in tests, a VPC endpoint
in production)."""

from __future__ import annotations

import dagster as dg


class AutoScalingResource(dg.ConfigurableResource):
    """``endpoint_url`` empty means AWS itself, with boto3's usual credential chain. Without an
    endpoint and without credentials there is no AWS to ask: dry runs then work offline, from the
    bounds in scaling.yaml, and say so; real runs refuse."""

    endpoint_url: str = ""

    def client(self, target):
        from shaper_pipelines.lib.aws_scaling import make_client

        return make_client(target, endpoint_url=self.endpoint_url or None)

    def reachable(self) -> bool:
        if self.endpoint_url:
            return True
        import boto3

        return boto3.session.Session().get_credentials() is not None
