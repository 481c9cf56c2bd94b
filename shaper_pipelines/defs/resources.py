"""The one place that binds resources for every asset and job in the code location: embedded
defaults unless the documented variables point at real services."""

import os

import dagster as dg

from shaper_pipelines.resources.autoscaling import AutoScalingResource
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.resources.pushgateway import PushgatewayResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "database": DatabaseResource(),
            "autoscaling": AutoScalingResource(endpoint_url=os.environ.get("SHAPER_AWS_ENDPOINT_URL", "")),
            # Read when the code location loads, so a UI restart picks up a changed variable.
            "metrics_source": MetricsSourceResource(prometheus_url=os.environ.get("SHAPER_PROMETHEUS_URL", "")),
            # Empty: write the node_exporter textfile under SHAPER_HOME instead of pushing.
            "pushgateway": PushgatewayResource(url=os.environ.get("SHAPER_PUSHGATEWAY_URL", "")),
            "fleet": AgentFleetResource(
                agents=[a.strip() for a in os.environ.get("SHAPER_AGENTS", "").split(",") if a.strip()],
                token=os.environ.get("SHAPER_AGENT_TOKEN", ""),
            ),
        }
    )
