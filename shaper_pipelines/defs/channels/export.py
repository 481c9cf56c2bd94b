"""``prometheus_export``: the utilisation forecast, the latest observed utilisation, the scaling plan
and the forecasts' accuracy as Prometheus metrics (see shaper_pipelines.lib.export for the
families), pushed to a Pushgateway or, on the embedded default, written as a node_exporter textfile
under SHAPER_HOME. The dashboards in deploy/grafana read them."""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.defs.automation import REPLAN
from shaper_pipelines.lib import clock
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.pushgateway import PushgatewayResource

SAMPLE_LINES = 40
# An observation older than this is still exported (it is the latest there is), with a warning.
STALE_OBSERVATION = pd.Timedelta(hours=2)
# How far back from a series' last stored point to look for a measured (not interpolated) one.
MEASURED_LOOKBACK = pd.Timedelta(days=1)


def latest_observed(database: DatabaseResource, targets, capacity_model: pd.DataFrame) -> pd.DataFrame:
    """Per scaling target, the latest stored value of its history series (the newest measured
    point, or the newest point at all when the last day holds only interpolated ones) with the
    capacity it is divided by: columns target, series, timestamp, demand, min_capacity,
    capacity_per_instance (NaN where ``capacity_model`` has none). A target whose series holds no
    point is left out."""
    capacity = capacity_model.set_index("target")["capacity_per_instance"] if len(capacity_model) else pd.Series(
        dtype=float)
    rows = []
    with database.metric_store() as store:
        last = {(s.target, s.metric): s.last for s in store.series()}
        for t in targets:
            key = (t.history.target, t.history.metric)
            if key not in last:
                continue
            end = last[key]
            frame = store.read(*key, end - MEASURED_LOOKBACK, end + pd.Timedelta(milliseconds=1))
            measured = frame[~frame["filled"]]
            point = measured.iloc[-1:] if len(measured) else frame.iloc[-1:]
            if not len(point):
                continue
            rows.append({"target": t.name, "series": f"{key[0]}:{key[1]}", "timestamp": point.index[0],
                         "demand": float(point["value"].iloc[0]), "min_capacity": t.min_capacity,
                         "capacity_per_instance": float(capacity.get(t.name, np.nan))})
    return pd.DataFrame(rows, columns=["target", "series", "timestamp", "demand", "min_capacity",
                                       "capacity_per_instance"])


@dg.asset(group_name="channels", kinds={"python", "prometheus"}, owners=["team:platform"],
          automation_condition=REPLAN)
def prometheus_export(context: dg.AssetExecutionContext, pushgateway: PushgatewayResource,
                      database: DatabaseResource, utilisation_forecast: pd.DataFrame, scaling_plan: pd.DataFrame,
                      demand_forecast: dict, capacity_model: pd.DataFrame) -> dg.MaterializeResult:
    """Predicted utilisation (p50, p90: now, and the peak over the next hour and day) both at the
    capacity the scaling plan will have serving (capacity="planned": utilisation_forecast rescaled to
    scaling_plan's floor at each step, what the alerts watch) and at the configured minimum
    (capacity="minimum"), the actual utilisation (the latest stored value of each target's history
    series, on the minimum basis), the planned capacity (now, and the peak over the next day) and
    each forecast's accuracy against seasonal naive (by model family), and for a rehearsed service
    the predicted demand per planned instance over its latency objective's load
    (shaper_predicted_objective_load_ratio), through prometheus_client,
    for dashboards (deploy/grafana) and alert rules (profiles_data/alerts/shaper.rules.yml). Pushed
    to SHAPER_PUSHGATEWAY_URL, replacing the previous push; without one, written atomically to
    $SHAPER_HOME/export/shaper.prom for node_exporter's textfile collector."""
    from shaper_pipelines.config import load_scaling
    from shaper_pipelines.lib.export import PushError, prediction_samples, registry, render

    now = clock.now()
    targets = load_scaling().targets
    observed = latest_observed(database, targets, capacity_model)
    samples = prediction_samples(utilisation=utilisation_forecast, plan=scaling_plan, forecasts=demand_forecast,
                                 targets=targets, now=now, observed=observed, response=rehearsed(capacity_model))
    exported = registry(samples)
    body = render(exported)
    actual = {dict(s.labels)["target"]: s.value for s in samples if s.name == "shaper_actual_utilization_ratio"}
    seen = dict(zip(observed["target"], observed["timestamp"]))
    for t in targets:
        if t.name not in seen:
            context.log.warning(f"{t.name}: no stored history of {t.history.target}/{t.history.metric}: no actual "
                                "utilisation exported (materialise historical_metrics for it)")
        elif t.name not in actual:
            context.log.warning(f"{t.name}: no capacity per instance in capacity_model: no actual utilisation "
                                "exported")
        elif now - seen[t.name] > STALE_OBSERVATION:
            context.log.warning(f"{t.name}: the latest stored demand is from {seen[t.name]:%Y-%m-%d %H:%M} UTC, "
                                f"{(now - seen[t.name]) / pd.Timedelta(hours=1):.1f} h ago: the exported actual "
                                "utilisation is that old")
    observed_table = "\n".join(
        ["| target | series | observed at (UTC) | demand | utilisation |", "|---|---|---|---:|---:|",
         *[f"| {r.target} | {r.series} | {r.timestamp:%Y-%m-%d %H:%M} | {r.demand:.4g} | "
           f"{format(actual[r.target], '.3f') if r.target in actual else '-'} |"
           for r in observed.itertuples(index=False)]])
    predicted = {(d["target"], d["capacity"], d["window"]): s.value for s in samples
                 if s.name == "shaper_predicted_utilization_ratio" and (d := dict(s.labels))["percentile"] == "p90"}
    for t in targets:
        if (t.name, "minimum", "now") not in predicted:
            context.log.warning(f"{t.name}: no predicted utilisation in force at {now:%Y-%m-%d %H:%M} UTC (no "
                                "forecast, or it has run out): its window=\"now\" series is left out")
        elif (t.name, "planned", "next_24h") not in predicted:
            context.log.warning(f"{t.name}: no scaling plan covers its forecast: no utilisation at the planned "
                                "capacity exported (the alerts cannot see it)")
    peaks_table = "\n".join(
        ["| target | p90 peak, next 24 h, at the planned capacity | at the minimum capacity |", "|---|---:|---:|",
         *[f"| {t.name} | {_fmt(predicted.get((t.name, 'planned', 'next_24h')))} | "
           f"{_fmt(predicted.get((t.name, 'minimum', 'next_24h')))} |" for t in targets]])
    try:
        published = pushgateway.publish(exported)
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
        "actual_utilisation": dg.MetadataValue.md(observed_table),
        "predicted_peaks": dg.MetadataValue.md(peaks_table),
        "sample": dg.MetadataValue.md(f"```\n{shown}\n```"),
    })


def rehearsed(capacity_model: pd.DataFrame) -> dict:
    """Per target whose capacity_model row has a fitted response: its utilisation curve, and, when
    a rehearsal broke the objective (not a lower bound, which would alarm on what is unknown),
    the objective's load per instance, for shaper_predicted_objective_load_ratio."""
    from shaper_pipelines.lib.response_model import ResponseModel

    out = {}
    if "response" not in capacity_model.columns:
        return out
    for row in capacity_model.itertuples(index=False):
        if not isinstance(row.response, dict):
            continue
        model = ResponseModel.from_dict(row.response)
        out[row.target] = {"curve": model.utilisation_at, "objective": row.objective or "",
                           # "upper": broken at the lowest load offered, so the ratio is at least this
                           "capacity": model.capacity if model.bound in ("objective", "upper") else float("nan")}
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


prometheus_export_job = dg.define_asset_job(
    "prometheus_export_job", selection=dg.AssetSelection.assets(prometheus_export),
    description="Export the latest utilisation forecast, scaling plan and forecast accuracy to Prometheus.")
