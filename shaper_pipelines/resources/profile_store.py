"""The profile store as a Dagster resource."""

from __future__ import annotations

import dagster as dg

from shaper_pipelines.store.profile_store import ProfileStore


class ProfileStoreResource(dg.ConfigurableResource):
    """The profile store database. Empty ``database_url`` means the embedded default (SQLite under
    .shaper/) or SHAPER_DATABASE_URL when set, the same rule the command line follows."""

    database_url: str = ""

    def open(self) -> ProfileStore:
        from shaper_pipelines.settings import database_url, normalise_url

        return ProfileStore(normalise_url(self.database_url) if self.database_url else database_url())
