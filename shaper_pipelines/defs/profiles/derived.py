"""Load profiles derived from history, the business calendar, user behaviour and scenarios."""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.defs.history.assets import CONFIG as METRICS, history_key
from shaper_pipelines.resources.database import DatabaseResource


class DerivedProfilesConfig(dg.Config):
    lookback_days: int = 28  # history the shapes and uplifts are fitted on
    horizon_days: int = 14  # calendar events this far ahead get a profile
    timezone: str = "UTC"  # the clock the daily shape is fitted on


@dg.asset(
    group_name="profiles",
    kinds={"python", "sql"},
    owners=["team:platform"],
    deps=[history_key(t, m) for t, m in METRICS.series()],
)
def load_profiles(context: dg.AssetExecutionContext, config: DerivedProfilesConfig, database: DatabaseResource,
                  business_calendar: pd.DataFrame) -> dg.MaterializeResult:
    """Profiles derived from what happened and what is coming, stored in the profile store:
    the daily and weekly cycle of every history series; each upcoming calendar event's load
    (its kind's uplift measured from past occurrences against the same hours of ordinary days);
    user sessions per hour of the week; and the configured A/B and release rollouts. Lineage
    records the history window and parameters, so re-deriving unchanged input adds no version."""
    from shaper_pipelines.lib.derive import (
        Behaviour, Scenario, behaviour_profiles, calendar_profiles, history_profile, scenario_profile,
    )
    from shaper_pipelines.lib.durations import parse_duration
    from shaper_pipelines.lib.plots import overlay_plot_png, png_markdown
    from shaper_pipelines.lib.profile import render
    from shaper_pipelines.settings import project_root
    import yaml

    today = pd.Timestamp.now(tz="UTC").floor("D")
    start = today - pd.Timedelta(days=config.lookback_days)
    window = f"{start:%Y-%m-%d}..{today - pd.Timedelta(days=1):%Y-%m-%d}"
    history: dict[tuple[str, str], pd.Series] = {}
    with database.metric_store() as store:
        for target, metric in METRICS.series():
            frame = store.read(target, metric, start, today)
            if len(frame) >= 288:
                history[(target, metric)] = frame["value"]
            else:
                context.log.warning(f"{target}/{metric}: {len(frame)} points since {start:%Y-%m-%d}; "
                                    "materialise historical_metrics first - no profile derived")

    profiles, origin = [], {}
    for (target, metric), series in history.items():
        lineage = {"history_window": window, "history_points": len(series), "asset": "historical_metrics"}
        p = history_profile(target, metric, series, lineage=lineage, tz=config.timezone)
        profiles.append(p)
        origin[p.profile_id] = series
        upcoming = business_calendar[business_calendar["start"] >= today]
        upcoming = upcoming.drop_duplicates("name")  # the next occurrence of each event
        events = pd.concat([business_calendar[business_calendar["start"] < today], upcoming])
        profiles += calendar_profiles(target, metric, series, events, now=today,
                                      horizon=pd.Timedelta(days=config.horizon_days),
                                      lineage={"history_window": window, "asset": "business_calendar"},
                                      tz=config.timezone)

    root = project_root() / "profiles_data"
    behaviour = yaml.safe_load((root / "behaviour.yaml").read_text()) or {}
    for target, params in behaviour.items():
        if (target, "requests") in history:
            profiles += behaviour_profiles(target, history[(target, "requests")], Behaviour(**params),
                                           lineage={"history_window": window, "model": "profiles_data/behaviour.yaml"},
                                           tz=config.timezone)
    for raw in yaml.safe_load((root / "scenarios.yaml").read_text()) or []:
        rollout = [(float(step["share"]), parse_duration(step["over"])) for step in raw["rollout"]]
        scenario = Scenario(raw["name"], raw["kind"], raw["target"], raw["metric"], float(raw["uplift"]), rollout,
                            raw.get("event"))
        if (scenario.target, scenario.metric) in history:
            profiles.append(scenario_profile(scenario, history[(scenario.target, scenario.metric)],
                                             lineage={"history_window": window, "scenario": "profiles_data/scenarios.yaml"},
                                             tz=config.timezone))

    with database.profile_store() as store:
        results = store.put_many(profiles, created_by=f"dagster run {context.run.run_id[:8]}")
    created = [r for r in results if r.created]
    context.log.info(f"derived {len(profiles)} profiles, {len(created)} new versions")

    panels = []
    for p in profiles:
        if p.profile_id in origin:
            series = origin[p.profile_id]
            ts = series.index.as_unit("s").asi8.astype(np.float64)
            last_week = ts[-7 * 288:] if len(ts) > 7 * 288 else ts
            rendered = render(p, start=float(last_week[0]), step=300.0, duration=len(last_week) * 300.0)
            panels.append((p.profile_id, [("history", ts, series.to_numpy()),
                                          ("derived profile (last week)", rendered.timestamps, rendered.values)]))
    by_id = {r.profile_id: r for r in results}
    table = "\n".join(["| profile | source | resource | version | new |", "|---|---|---|---:|---|"] + [
        f"| {p.profile_id} | {p.source.value} | {p.resource_type.value} | {by_id[p.profile_id].version} | "
        f"{by_id[p.profile_id].created} |" for p in profiles])
    metadata = {
        "profiles": dg.MetadataValue.int(len(profiles)),
        "versions_created": dg.MetadataValue.int(len(created)),
        "by_source": dg.MetadataValue.json(pd.Series([p.source.value for p in profiles]).value_counts().to_dict()
                                           if profiles else {}),
        "history_window": window,
        "table": dg.MetadataValue.md(table),
    }
    if panels:
        metadata["plot"] = dg.MetadataValue.md(png_markdown(overlay_plot_png(panels, title="Derived profiles over their history"), "derived"))
    return dg.MaterializeResult(metadata=metadata)


derived_profiles_job = dg.define_asset_job(
    "derived_profiles_job",
    selection=dg.AssetSelection.assets("business_calendar", "load_profiles"),
    description="The business calendar and the profiles derived from it and from history.",
)
