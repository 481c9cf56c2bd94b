"""The agent sensor: notices finished rehearsals and materialises their results."""

import json

import dagster as dg

from shaper_pipelines.defs.simulation.assets import simulation_results, simulation_runs
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource

_REMEMBER = 500  # run keys kept in the cursor


@dg.sensor(asset_selection=[simulation_results], minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Collects each rehearsal once it has ended (or its agent stopped answering) into "
                       "simulation_results, and keeps running ones alive (the agents' dead-man timer). "
                       "On by default: it starts no load.")
def agent_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource, fleet: AgentFleetResource):
    """Polls the agents for every dispatched run; one run request (run_key = the agent's run id)
    per run that has ended or whose agent stopped answering."""
    from shaper_pipelines.agent.client import AgentError, AgentUnreachable

    seen = json.loads(context.cursor) if context.cursor else []
    with database.simulation_store() as sims:
        pending = [r for r in sims.runs(status="dispatched") if r["run_key"] not in seen]
    if not pending:
        return dg.SkipReason("no dispatched simulation is waiting to be collected")
    ended, still_running = [], 0
    for run in pending:
        try:
            client = fleet.client_for(run["agent_url"])
            status = client.get(run["run_key"])["status"]
            if status == "running":
                # The controller is alive and still wants this run: renew the agent's dead-man
                # timer (reads alone no longer do, so a dead daemon's rehearsals stop by themselves).
                client.heartbeat()
        except (AgentUnreachable, AgentError):
            status = "unreachable"
        if status == "running":
            still_running += 1
        else:
            ended.append(run["run_key"])
    if not ended:
        return dg.SkipReason(f"{still_running} simulation(s) still running")
    context.update_cursor(json.dumps((seen + ended)[-_REMEMBER:]))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=key, partition_key=key) for key in ended],
        dynamic_partitions_requests=[simulation_runs.build_add_request(ended)],
    )


def event_feed_path():
    from shaper_pipelines.settings import get_settings, shaper_home

    return get_settings().event_feed or shaper_home() / "events.jsonl"


@dg.sensor(job_name="load_simulation_job", minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Launches a rehearsal for each batch of new events in the event feed. Stopped by default: "
                       "it makes real load; turn it on once the agents' allow-lists and caps are set.")
def event_feed_sensor(context: dg.SensorEvaluationContext):
    """Reads the event feed (JSON lines: {"event": "release_rollout_started"}, appended by
    `shaper events emit` or any other system) from where it last stopped, and launches one
    simulation run per batch of new events, with those events as arrived."""
    path = event_feed_path()
    offset = int(context.cursor or 0)
    if not path.exists() or path.stat().st_size <= offset:
        return dg.SkipReason(f"no new events in {path}")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next tick
    events, bad = [], 0
    for line in complete.decode(errors="replace").splitlines():
        try:
            name = json.loads(line)["event"]
            if isinstance(name, str) and name:
                events.append(name)
            else:
                bad += 1
        except (ValueError, KeyError, TypeError):
            bad += 1
    if bad:
        context.log.warning(f"{bad} malformed line(s) in {path} skipped")
    context.update_cursor(str(offset + len(complete)))
    if not events:
        return dg.SkipReason("new lines held no event")
    return dg.RunRequest(run_key=f"events-{offset}", tags={"shaper/events": ",".join(sorted(set(events)))[:200]},
                         run_config={"ops": {"select_profiles": {"config": {"events": sorted(set(events))}}}})


@dg.sensor(job_name="load_simulation_job", minimum_interval_seconds=600,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Rehearses a scaling target's service again when its newest capacity rehearsal is stale "
                       "(older than its rehearsal.max_age, or of another service_version) or it has none, for "
                       "targets whose scaling.yaml rehearsal names a url. Stopped by default: it makes real load.")
def capacity_rehearsal_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """One load_simulation_job run per target due, with scaling_target set; keyed on the newest
    rehearsal it replaces, so a failed rehearsal is not retried on every tick."""
    from shaper_pipelines.config import load_scaling
    from shaper_pipelines.lib.clock import now
    from shaper_pipelines.lib.rehearsal_capacity import rehearsal_due

    with database.simulation_store() as sims:
        runs = sims.runs()
    requests, fresh = [], []
    for t in load_scaling().targets:
        if t.rehearsal is None or not t.rehearsal.url:
            continue
        due = rehearsal_due(t.rehearsal, [r for r in runs if r.get("scaling_target") == t.name],
                            now().to_pydatetime())
        if due is None:
            fresh.append(t.name)
            continue
        why, after = due
        requests.append(dg.RunRequest(run_key=f"capacity-{t.name}-after-{after}",
                                      tags={"shaper/scaling_target": t.name, "shaper/why": why[:200]},
                                      run_config={"ops": {"select_profiles": {"config": {"scaling_target": t.name}}}}))
    if not requests:
        return dg.SkipReason(f"capacity rehearsals fresh or running: {', '.join(fresh) or 'no target has a rehearsal url'}")
    return requests
