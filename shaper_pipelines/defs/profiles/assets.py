"""Load profiles as Dagster assets. (No `from __future__ import annotations`: Dagster reads the
config and resource annotations at definition time.)"""


import time

import dagster as dg

from shaper_pipelines.resources.database import DatabaseResource


class PredefinedProfilesConfig(dg.Config):
    # Empty means the project's profiles_data/profiles.
    profiles_dir: str = ""
    render_step_seconds: float = 60.0


@dg.asset(
    group_name="profiles",
    kinds={"python", "sql"},
    owners=["team:platform"],
)
def predefined_load_profiles(
    context: dg.AssetExecutionContext, config: PredefinedProfilesConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """The predefined synthetic load profiles in ``profiles_data/profiles``, validated, stored as
    versions in the profile store, and rendered from today (UTC) into stored series.

    A changed file becomes a new version; an unchanged one is not stored again. One invalid
    profile fails the materialisation and stores nothing."""
    from shaper_pipelines.lib.durations import format_duration
    from shaper_pipelines.lib.plots import png_markdown, profile_plot_png
    from shaper_pipelines.settings import profiles_dir
    from shaper_pipelines.store.loading import load_into_store

    folder = config.profiles_dir or str(profiles_dir())
    today = float(int(time.time()) // 86400 * 86400)
    with database.profile_store() as store:
        report = load_into_store([folder], store, created_by=f"dagster run {context.run.run_id[:8]}",
                                 render_start=today, render_step=config.render_step_seconds)
    context.log.info(f"{len(report.profiles)} profiles from {len(report.files)} files; "
                     f"{len(report.created)} new versions; {report.series_rows:,} series rows")

    by_id = {r.profile_id: r for r in report.results}
    rows = [
        {
            "profile_id": p.profile_id,
            "version": by_id[p.profile_id].version,
            "new": by_id[p.profile_id].created,
            "resource": p.resource_type.value,
            "pattern": p.load_pattern.kind,
            "duration": format_duration(p.duration),
            "priority": p.priority,
            "triggers": ",".join(p.trigger_kinds),
            "peak": round(float(report.rendered[p.profile_id].values.max()), 4),
            "unit": p.unit,
        }
        for p in report.profiles
    ]
    plot = profile_plot_png(
        [(f"{p.profile_id} ({p.resource_type.value})", report.rendered[p.profile_id].timestamps,
          report.rendered[p.profile_id].values, p.unit) for p in report.profiles],
        title="Predefined load profiles, rendered from today 00:00 UTC",
    )
    return dg.MaterializeResult(
        metadata={
            "profiles": dg.MetadataValue.int(len(report.profiles)),
            "versions_created": dg.MetadataValue.int(len(report.created)),
            "series_rows": dg.MetadataValue.int(report.series_rows),
            "files": dg.MetadataValue.json([str(f) for f in report.files]),
            "table": dg.MetadataValue.md(_markdown_table(rows)),
            "plot": dg.MetadataValue.md(png_markdown(plot, "rendered profiles")),
        }
    )


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no profiles)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


predefined_profiles_job = dg.define_asset_job(
    "predefined_profiles_job",
    selection=dg.AssetSelection.assets(predefined_load_profiles),
    description="Load, validate, render and store the predefined profiles of profiles_data/profiles.",
)
