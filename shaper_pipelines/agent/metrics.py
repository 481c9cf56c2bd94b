"""The agent's ``/metrics``, in Prometheus' text format through ``prometheus_client``.

Labels are bounded: the resource (four values), the profile (the store's profiles) and the unit.
There is no per-run label: an agent runs at most one run per resource, so (resource, profile)
names the series, and a run id would make a new series on every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from shaper_pipelines.agent.core import Agent

CONTENT_TYPE = CONTENT_TYPE_LATEST
LABELS = ["resource", "profile", "unit"]


class _AgentCollector:
    """Reads the agent's runs at scrape time: nothing to keep in step between scrapes."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def collect(self):
        target = GaugeMetricFamily("shaper_agent_target_load", "Target load of the active run, in its unit.",
                                   labels=LABELS)
        achieved = GaugeMetricFamily("shaper_agent_achieved_load",
                                     "Load achieved in the last second, in the same unit.", labels=LABELS)
        p95 = GaugeMetricFamily("shaper_agent_client_latency_p95_milliseconds",
                                "p95 response time of the active network run's successful requests in the "
                                "last second, as its load generator measured it.", labels=LABELS)
        errors = GaugeMetricFamily("shaper_agent_client_errors_per_second",
                                   "Failed requests per second of the active network run, in the last second.",
                                   labels=LABELS)
        active = self.agent.active()
        for run in active:
            if run.samples:
                last = run.samples[-1]
                labels = [run.resource, run.profile_id, run.unit]
                target.add_metric(labels, last["target"])
                achieved.add_metric(labels, last["achieved"])
                if last.get("latency_p95_ms") is not None:
                    p95.add_metric(labels, last["latency_p95_ms"])
                if last.get("errors") is not None:
                    errors.add_metric(labels, last["errors"])
        yield target
        yield achieved
        yield p95
        yield errors
        yield GaugeMetricFamily("shaper_agent_active_runs", "Runs generating load now.", value=len(active))


def exposition(agent: Agent) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AgentCollector(agent))
    return generate_latest(registry)
