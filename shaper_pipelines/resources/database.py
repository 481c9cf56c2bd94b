"""The shaper database (profile store and metric history) as a Dagster resource."""

from __future__ import annotations

import dagster as dg

from shaper_pipelines.store.control_store import ControlStore
from shaper_pipelines.store.forecast_store import ForecastStore
from shaper_pipelines.store.metric_store import MetricStore
from shaper_pipelines.store.profile_store import ProfileStore
from shaper_pipelines.store.scaling_store import ScalingStore
from shaper_pipelines.store.simulation_store import SimulationStore


class DatabaseResource(dg.ConfigurableResource):
    """Empty ``url`` means the embedded default (SQLite under .shaper/) or SHAPER_DATABASE_URL when
    set, the same rule the command line follows.

    Each ``*_store()`` call is cheap: every store on a URL shares the process's one engine, built
    and migrated at the first call (``shaper_pipelines.store.database``), so opening one per target
    inside a loop costs no new connection pool and no Alembic upgrade."""

    url: str = ""

    def _url(self) -> str:
        from shaper_pipelines.settings import database_url, normalise_url

        return normalise_url(self.url) if self.url else database_url()

    def profile_store(self) -> ProfileStore:
        return ProfileStore(self._url())

    def metric_store(self) -> MetricStore:
        return MetricStore(self._url())

    def simulation_store(self) -> SimulationStore:
        return SimulationStore(self._url())

    def scaling_store(self) -> ScalingStore:
        return ScalingStore(self._url())

    def forecast_store(self) -> ForecastStore:
        return ForecastStore(self._url())

    def control_store(self) -> ControlStore:
        return ControlStore(self._url())
