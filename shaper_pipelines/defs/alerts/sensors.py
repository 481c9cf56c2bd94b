"""Dagster's own alerts, to the webhook in SHAPER_ALERT_WEBHOOK: a run that failed, and a plan that
predicts a critical threshold (the forecast needs more than the group may ever have)."""

import dagster as dg


def _webhook() -> str:
    from shaper_pipelines.settings import get_settings

    return get_settings().alert_webhook.get_secret_value()


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                       description="Posts every failed run to SHAPER_ALERT_WEBHOOK (nothing when unset).")
def run_failure_notice(context: dg.RunFailureSensorContext):
    from shaper_pipelines.lib.notify import post

    url = _webhook()
    if not url:
        return dg.SkipReason("SHAPER_ALERT_WEBHOOK is not set")
    run = context.dagster_run
    message = context.failure_event.message or "failed"
    post(url, f"shaper: run of {run.job_name} failed: {message[:300]}",
         {"kind": "run_failure", "job": run.job_name, "run_id": run.run_id, "tags": dict(run.tags)})


@dg.asset_sensor(asset_key=dg.AssetKey("scaling_plan"), default_status=dg.DefaultSensorStatus.RUNNING,
                 minimum_interval_seconds=30,
                 description="Posts a notice when a new scaling plan finds a target whose forecast would run it "
                             "above the critical utilisation even at its maximum capacity; for a rehearsed "
                             "service, above that share of the load at which it broke its latency objective.")
def critical_plan_notice(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    from shaper_pipelines.lib.notify import post

    mat = asset_event.asset_materialization
    critical = mat.metadata.get("critical") if mat else None
    if not critical or not critical.value:
        return dg.SkipReason("the newest plan predicts nothing critical")
    url = _webhook()
    if not url:
        return dg.SkipReason(f"{len(critical.value)} critical target(s), but SHAPER_ALERT_WEBHOOK is not set")
    for c in critical.value:
        what = (f"{c['utilization']:.0%} of the load that keeps {c['objective']}" if c.get("objective")
                else f"{c['utilization']:.0%} utilisation")
        post(url, f"shaper: {c['target']} is forecast at {what} at {c['at']} even at its maximum of "
                  f"{c['max_capacity']} instances",
             {"kind": "critical_plan", **c, "run_id": asset_event.run_id})
