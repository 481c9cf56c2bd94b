"""The fleet of load agents a simulation is dispatched to."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from shaper_pipelines.agent.client import AgentClient

LOCAL = "local"


class AgentFleetResource(dg.ConfigurableResource):
    """``agents`` are agent URLs sharing one ``token``. Empty means the embedded default: one
    local agent on this machine, started on first use (see shaper_pipelines.agent.local)."""

    agents: list[str] = []
    # Bound with dg.EnvVar("SHAPER_AGENT_TOKEN") (defs/resources.py); marked secret too, so a value
    # set directly is masked in the UI and GraphQL rather than shown.
    token: str = Field("", description="Bearer token of the agents (SHAPER_AGENT_TOKEN)",
                       json_schema_extra={"dagster__is_secret": True})
    # What each agent can run at once: one run per resource type (load of one kind would fight).
    resources: list[str] = ["cpu", "memory", "disk_io"]

    def clients(self) -> list[AgentClient]:
        if not self.agents:
            from shaper_pipelines.agent.local import local_agent
            from shaper_pipelines.settings import shaper_home

            return [local_agent(shaper_home())]
        if not self.token:
            raise ValueError("SHAPER_AGENT_TOKEN must be set when SHAPER_AGENTS names agents")
        return [AgentClient(url, self.token) for url in self.agents]

    def client_for(self, url: str) -> AgentClient:
        """A client for an agent a run was dispatched to; it need not answer any more."""
        if not self.agents:
            from shaper_pipelines.agent.local import known_local_agent
            from shaper_pipelines.settings import shaper_home

            known = known_local_agent(shaper_home())
            return AgentClient(url, known.token if known else "", timeout=5)
        if url.rstrip("/") not in {a.rstrip("/") for a in self.agents}:
            raise LookupError(f"agent {url} is not in the fleet")
        return AgentClient(url, self.token)

    def slots(self) -> dict[str, int]:
        count = max(1, len(self.agents))
        return {resource: count for resource in self.resources}
