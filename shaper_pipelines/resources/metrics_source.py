"""Where history comes from: a real Prometheus, or the generated demo history when none is set."""

from __future__ import annotations

import dagster as dg
import pandas as pd


class MetricsSourceResource(dg.ConfigurableResource):
    """``prometheus_url`` empty means the embedded default: the seeded demo history in
    profiles_data/demo_history.yaml. Set SHAPER_PROMETHEUS_URL (read in defs/resources.py) to use
    a real Prometheus."""

    prometheus_url: str = ""
    timeout_seconds: float = 30.0
    retries: int = 3
    backoff_seconds: float = 1.0
    demo_spec_path: str = ""

    @property
    def kind(self) -> str:
        return "prometheus" if self.prometheus_url else "demo"

    def fetch(self, query: str, target: str, metric: str, start: pd.Timestamp, end: pd.Timestamp,
              step: pd.Timedelta, log=None) -> pd.Series:
        if self.prometheus_url:
            from shaper_pipelines.lib.prometheus import PrometheusSettings, fetch_range

            settings = PrometheusSettings(self.prometheus_url, self.timeout_seconds, self.retries, self.backoff_seconds)
            progress = (lambda done, total: log.info(f"{target}/{metric}: day {done} of {total}")) if log else None
            return fetch_range(settings, query, start, end, step, on_chunk=progress)
        from shaper_pipelines.lib.demo_history import generate, load_demo_spec
        from shaper_pipelines.settings import project_root

        spec = load_demo_spec(self.demo_spec_path or project_root() / "profiles_data" / "demo_history.yaml")
        return generate(spec, target, metric, start, end)
