"""plan_apply_sensor: each new scaling plan is applied once, as the operators' switches say."""

import time

import dagster as dg

from shaper_pipelines.defs.scaling.apply import apply_scaling_job
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.settings import get_settings

MAX_PLAN_AGE_SECONDS = 2 * 3600  # a plan is made every morning; one older than this is not news


@dg.asset_sensor(asset_key=dg.AssetKey("scaling_plan"), job=apply_scaling_job,
                 minimum_interval_seconds=get_settings().sensor_interval_seconds,
                 default_status=dg.DefaultSensorStatus.RUNNING,
                 description="Applies each new scaling plan once. A dry run (records what would be done, changes "
                             "nothing) while the operators' switch says dry run, which is the default; live only "
                             "after `shaper scaling mode --dry-run off` (or PUT /v1/scaling/mode); nothing while "
                             "scaling is paused.")
def plan_apply_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, database: DatabaseResource):
    age = time.time() - asset_event.timestamp
    if age > MAX_PLAN_AGE_SECONDS:
        # A sensor started (or reset) after a plan was made would otherwise apply whatever plan is
        # newest, however old; the next plan is applied as usual.
        return dg.SkipReason(f"the newest plan (run {asset_event.run_id}) is {age / 3600:.1f} h old, older than "
                             f"{MAX_PLAN_AGE_SECONDS / 3600:g} h: not applied")
    with database.control_store() as control:
        mode = control.scaling_mode()
    if mode.paused:
        return dg.SkipReason(f"scaling is paused (set by {mode.changed_by or 'nobody'}): the new plan is not applied")
    how = "dry run" if mode.dry_run else "live"
    return dg.RunRequest(
        run_key=f"apply:{asset_event.run_id}",  # one apply per plan, across restarts
        run_config={"ops": {"apply_scaling_plans": {"config": {"dry_run": mode.dry_run,
                                                               "actor": "plan_apply_sensor"}}}},
        tags={"shaper/reason": f"new scaling plan from run {asset_event.run_id} ({how}: the operators' switch)"})
