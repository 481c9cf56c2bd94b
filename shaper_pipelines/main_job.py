"""``shaper run``: the main job, executed against the project's Dagster instance so that the run
and its materialisations show up in the UI afterwards."""

from __future__ import annotations

import os
import sys


def run_main_job() -> bool:
    from shaper_pipelines.settings import dagster_env

    # The instance is read from DAGSTER_HOME; prepare it before Dagster is imported.
    os.environ.update({k: v for k, v in dagster_env().items() if k in ("DAGSTER_HOME", "SHAPER_DATABASE_PASSWORD")})

    import dagster as dg

    from shaper_pipelines.definitions import defs

    job = defs().resolve_job_def("shaper_main_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        print(_summary(result, instance), file=sys.stdout)
    return result.success


def _summary(result, instance) -> str:
    lines = [f"shaper main job: {'SUCCESS' if result.success else 'FAILURE'} (run {result.run_id})"]
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        meta = mat.metadata
        lines.append(f"  materialised {mat.asset_key.to_user_string()}")
        for key in ("profiles", "versions_created", "series_rows"):
            if key in meta:
                lines.append(f"    {key}: {meta[key].value}")
        if "table" in meta:
            lines.extend("    " + row for row in meta["table"].value.splitlines())
    for event in result.all_events:
        if event.is_failure:
            lines.append(f"  failed: {event.step_key}: {event.message}")
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                lines.append(f"    {error.message.strip()}")
    lines.append(f"  DAGSTER_HOME={instance.root_directory}; `shaper ui` opens the UI on it")
    return "\n".join(lines)
