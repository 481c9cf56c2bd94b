"""The feedback loop: once a day of realised metrics lands, judge the forecasts that were issued
for it, and re-fit the series whose forecasts have degraded."""

import dagster as dg
import pandas as pd

from shaper_pipelines.defs.automation import JUDGE
from shaper_pipelines.defs.forecast.assets import forecast_job
from shaper_pipelines.defs.history.assets import CONFIG as METRICS, history_key
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.settings import get_settings

days = dg.DailyPartitionsDefinition(start_date=METRICS.start_date, timezone="UTC")


@dg.asset(
    partitions_def=days,
    group_name="forecast",
    kinds={"python", "sql"},
    owners=["team:platform"],
    deps=[*[history_key(t, m) for t, m in METRICS.series()],
          dg.AssetDep("demand_forecast", partition_mapping=dg.AllPartitionMapping())],
    automation_condition=JUDGE,
    check_specs=[
        dg.AssetCheckSpec("accuracy_not_degraded", asset="forecast_accuracy",
                          description="Every judged forecast kept MASE under 0.9 and its 90 % interval covered at "
                                      "least 70 % of the day (a warning; the series is re-fitted)."),
        # Not blocking: nothing runs downstream of a judgement, and a day judged badly is a finding
        # (red in the UI, a re-fit by degraded_accuracy_sensor), not a failed run.
        dg.AssetCheckSpec("no_worse_than_seasonal_naive", asset="forecast_accuracy",
                          description="No forecast did worse than yesterday repeated would have (MASE >= 1)."),
    ],
)
def forecast_accuracy(context: dg.AssetExecutionContext, database: DatabaseResource):
    """For the day of the partition, per series: the newest forecast issued before the day began,
    scored against what happened - MASE against seasonal naive, interval coverage, bias - with the
    model and version that made it. Its lineage runs from historical_metrics (what happened) and
    demand_forecast (what was said), so the UI shows which forecast each score judged."""
    from shaper_pipelines.lib.accuracy import score

    day = pd.Timestamp(context.partition_key, tz="UTC")
    rows, skipped = [], []
    with database.metric_store() as metrics, database.forecast_store() as forecasts:
        for target, metric in METRICS.series():
            issued = forecasts.issued_before(target, metric, day, day + pd.Timedelta(days=1))
            if issued is None:
                skipped.append(f"{target}/{metric}: no forecast was issued before {day:%Y-%m-%d}")
                continue
            header, frame = issued
            seen = metrics.read(target, metric, day - pd.Timedelta(days=1), day + pd.Timedelta(days=1))["value"]
            actual = seen[seen.index >= day]
            yesterday = seen[seen.index < day]
            yesterday.index = yesterday.index + pd.Timedelta(days=1)
            try:
                a = score(frame, actual, yesterday)
            except ValueError as exc:
                skipped.append(f"{target}/{metric}: {exc}")
                continue
            rows.append({"series": f"{target}:{metric}", "model": header["model"], "version": header["version"],
                         "forecast_id": header["forecast_id"], "mase": a.mase, "coverage": a.coverage,
                         "bias": a.bias, "points": a.points, "degraded": a.degraded,
                         "worse_than_naive": a.worse_than_naive})
    frame = pd.DataFrame(rows, columns=["series", "model", "version", "forecast_id", "mase", "coverage", "bias",
                                        "points", "degraded", "worse_than_naive"])
    for note in skipped:
        context.log.info(note)
    degraded = frame.loc[frame["degraded"], "series"].tolist()
    worse = frame.loc[frame["worse_than_naive"], "series"].tolist()
    table = "\n".join(["| series | model | version | MASE | coverage | bias |", "|---|---|---|---:|---:|---:|",
                       *[f"| {r.series} | {r.model} | {r.version} | {r.mase:.3f} | {r.coverage:.2f} | {r.bias:+.3f} |"
                         for r in frame.itertuples()]])
    yield dg.MaterializeResult(
        metadata={"judged": dg.MetadataValue.int(len(frame)), "skipped": dg.MetadataValue.json(skipped),
                  "degraded_series": dg.MetadataValue.json(degraded), "scores": dg.MetadataValue.md(table)},
        check_results=[
            dg.AssetCheckResult(check_name="accuracy_not_degraded", passed=not degraded,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"degraded": dg.MetadataValue.json(degraded)}),
            dg.AssetCheckResult(check_name="no_worse_than_seasonal_naive", passed=not worse,
                                severity=dg.AssetCheckSeverity.ERROR,
                                metadata={"worse_than_naive": dg.MetadataValue.json(worse)}),
        ],
    )


@dg.asset_sensor(asset_key=dg.AssetKey("forecast_accuracy"), job=forecast_job,
                 minimum_interval_seconds=get_settings().sensor_interval_seconds,
                 default_status=dg.DefaultSensorStatus.RUNNING,
                 description="Re-fits a series whose forecast degraded on the day just judged, unless its forecast "
                             "has already been re-fitted (or is being re-fitted) on history that includes that day.")
def degraded_accuracy_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """A series whose forecast degraded is re-fitted at once, one forecast_job run per series,
    rather than waiting for tomorrow's history. Under automation the forecasts usually re-fit on
    the day's history already (the same history that lets the day be judged): then nothing more is
    asked."""
    mat = asset_event.asset_materialization
    requests = refit_requests(mat)
    fresh = [r for r in requests if _refitted_since_day(context.instance, r.partition_key, mat.partition)]
    for r in fresh:
        context.log.info(f"{r.partition_key}: already re-fitted on history that includes {mat.partition}")
    wanted = [r for r in requests if r not in fresh]
    if not wanted:
        return dg.SkipReason(f"no degraded series left to re-fit for {mat.partition}" if mat else "no materialisation")
    return wanted


def refit_requests(mat) -> list[dg.RunRequest]:
    """One forecast_job run per degraded series of a forecast_accuracy materialisation."""
    degraded = mat.metadata.get("degraded_series") if mat else None
    return [dg.RunRequest(run_key=f"refit:{series}:{mat.partition}", partition_key=series,
                          tags={"shaper/reason": f"forecast accuracy degraded on {mat.partition}"})
            for series in (degraded.value if degraded else [])]


def _refitted_since_day(instance: dg.DagsterInstance, series: str, day: str) -> bool:
    """Whether ``series``' forecast was materialised, or is running, after the judged day's history
    landed: that forecast has seen the day it got wrong."""
    target, metric = series.split(":", 1)
    landed = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=history_key(target, metric), asset_partitions=[day]), limit=1).records
    if not landed:
        return False
    fitted = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("demand_forecast"), asset_partitions=[series]), limit=1).records
    if fitted and fitted[0].timestamp > landed[0].timestamp:
        return True
    running = instance.get_run_ids(dg.RunsFilter(
        job_name=None, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                 dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
        tags={"dagster/partition": series}), limit=1)
    return bool(running)


accuracy_job = dg.define_asset_job(
    "accuracy_job", selection=dg.AssetSelection.assets(forecast_accuracy),
    description="Judge the forecasts issued for one day (a partition) against what happened.")
