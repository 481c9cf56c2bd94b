"""The one place that binds resources for every asset and job in the code location."""

import dagster as dg

from shaper_pipelines.resources.profile_store import ProfileStoreResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"profile_store": ProfileStoreResource()})
