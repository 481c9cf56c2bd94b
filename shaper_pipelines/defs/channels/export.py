"""``prometheus_export``: the utilisation forecast, the scaling plan and the forecasts' accuracy as
Prometheus metrics (see shaper_pipelines.lib.export for the families), pushed to a Pushgateway or,
on the embedded default, written as a node_exporter textfile under SHAPER_HOME."""

import dagster as dg
import pandas as pd

from shaper_pipelines.resources.pushgateway import PushgatewayResource

SAMPLE_LINES = 40


@dg.asset(group_name="channels", kinds={"python", "prometheus"}, owners=["team:platform"])
def prometheus_export(context: dg.AssetExecutionContext, pushgateway: PushgatewayResource,
                      utilisation_forecast: pd.DataFrame, scaling_plan: pd.DataFrame,
                      demand_forecast: dict) -> dg.MaterializeResult:
    """Predicted utilisation (p50, p90: now, and the peak over the next hour and day), the planned
    capacity (now, and the peak over the next day) and each forecast's accuracy against seasonal
    naive, in Prometheus's text format, for dashboards and alert rules
    (profiles_data/alerts/shaper.rules.yml). Pushed to SHAPER_PUSHGATEWAY_URL, replacing the
    previous push; without one, written atomically to $SHAPER_HOME/export/shaper.prom for
    node_exporter's textfile collector."""
    from shaper_pipelines.defs.forecast.assets import load_scaling
    from shaper_pipelines.lib.export import PushError, prediction_samples, render

    now = pd.Timestamp.now(tz="UTC")
    targets = load_scaling().targets
    samples = prediction_samples(utilisation=utilisation_forecast, plan=scaling_plan, forecasts=demand_forecast,
                                 targets=targets, now=now)
    body = render(samples)
    current = {dict(s.labels)["target"] for s in samples
               if s.name == "shaper_predicted_utilization_ratio" and dict(s.labels)["window"] == "now"}
    for t in targets:
        if t.name not in current:
            context.log.warning(f"{t.name}: no predicted utilisation in force at {now:%Y-%m-%d %H:%M} UTC (no "
                                "forecast, or it has run out): its window=\"now\" series is left out")
    try:
        published = pushgateway.publish(body)
    except PushError as exc:
        raise dg.Failure(description=str(exc)) from None
    if published.kind == "pushgateway":
        where = dg.MetadataValue.url(published.where)
        note = f"pushed to the Pushgateway group {published.where} (replacing its previous metrics)"
    else:
        where = dg.MetadataValue.path(published.where)
        note = (f"SHAPER_PUSHGATEWAY_URL is not set: written to {published.where}, the node_exporter "
                "textfile-collector convention (point --collector.textfile.directory at its folder)")
    context.log.info(f"{len(samples)} series {note}")
    lines = body.splitlines()
    shown = "\n".join(lines[:SAMPLE_LINES]) + (f"\n# ... {len(lines) - SAMPLE_LINES} more lines" if len(lines) > SAMPLE_LINES else "")
    return dg.MaterializeResult(metadata={
        "series": dg.MetadataValue.int(len(samples)),
        "destination": dg.MetadataValue.text(published.kind),
        "where": where,
        "note": dg.MetadataValue.text(note),
        "exported_at": dg.MetadataValue.timestamp(now.timestamp()),
        "sample": dg.MetadataValue.md(f"```\n{shown}\n```"),
    })


prometheus_export_job = dg.define_asset_job(
    "prometheus_export_job", selection=dg.AssetSelection.assets(prometheus_export),
    description="Export the latest utilisation forecast, scaling plan and forecast accuracy to Prometheus.")
