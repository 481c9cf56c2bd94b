"""The one place that binds resources for every asset and job in the code location: embedded
defaults unless the documented variables (shaper_pipelines.settings.Settings) point at real
services.

Secrets are bound by variable name (``dg.EnvVar``): Dagster resolves them when a resource starts,
in the process that uses it, and the UI and GraphQL show only the name. A variable that is unset
binds nothing, so the field keeps its default instead of failing at resource start."""

from urllib.parse import urlsplit

import dagster as dg

from shaper_pipelines.resources.autoscaling import AutoScalingResource
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.resources.pushgateway import PushgatewayResource
from shaper_pipelines.settings import Settings, get_settings


def _secret(s: Settings, setting: str, field: str) -> dict:
    """``{field: EnvVar}`` when the secret's variable is set, else nothing (the default applies)."""
    return {field: dg.EnvVar(s.variable(setting))} if getattr(s, setting).get_secret_value() else {}


def _url(s: Settings, field: str) -> str | dg.EnvVar:
    """A URL as its value, which the UI shows; one carrying credentials (``https://user:pw@host``)
    by its variable's name instead."""
    value = getattr(s, field)
    return dg.EnvVar(s.variable(field)) if value and urlsplit(value).password else value


@dg.definitions
def resources() -> dg.Definitions:
    # Read when the code location loads, so a UI restart picks up a changed variable.
    s = get_settings()
    return dg.Definitions(
        resources={
            "database": DatabaseResource(),
            "autoscaling": AutoScalingResource(endpoint_url=_url(s, "aws_endpoint_url")),
            "metrics_source": MetricsSourceResource(prometheus_url=_url(s, "prometheus_url")),
            # Empty: write the node_exporter textfile under SHAPER_HOME instead of pushing.
            "pushgateway": PushgatewayResource(url=_url(s, "pushgateway_url")),
            # No SHAPER_AGENTS: one local agent, whose token lives in SHAPER_HOME/agent.json.
            "fleet": AgentFleetResource(agents=list(s.agents), **_secret(s, "agent_token", "token")),
        }
    )
