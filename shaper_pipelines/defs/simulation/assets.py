"""simulation_results: what each rehearsal really did, one dynamic partition per agent run."""

import dagster as dg
import numpy as np

from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource

simulation_runs = dg.DynamicPartitionsDefinition(name="simulation_runs")


@dg.asset(partitions_def=simulation_runs, group_name="simulation", kinds={"python", "sql"},
          owners=["team:platform"])
def simulation_results(context: dg.AssetExecutionContext, database: DatabaseResource,
                       fleet: AgentFleetResource) -> dg.MaterializeResult:
    """Per agent run: the target and the achieved load second by second, and how the run ended.
    An agent that stopped answering is a failed run, explained: its workers die with it, so its
    load is gone too."""
    from shaper_pipelines.agent.client import AgentError, AgentUnreachable
    from shaper_pipelines.lib.plots import overlay_plot_png, png_markdown

    run_key = context.partition_key
    with database.simulation_store() as sims:
        dispatched = sims.run(run_key)
        try:
            view = fleet.client_for(dispatched["agent_url"]).get(run_key)
            status, reason, samples = view["status"], view["reason"], view["samples"]
            if status == "running":
                raise dg.Failure(f"run {run_key} is still running on {dispatched['agent_url']}; the sensor "
                                 "requests this partition only when it has ended")
        except AgentUnreachable as exc:
            status, reason, samples = "failed", f"{exc}; the agent died or was cut off mid-run", []
        except AgentError as exc:
            status, reason, samples = "failed", str(exc), []
        sims.record_result(run_key, status, reason, samples)

    target = np.array([s["target"] for s in samples])
    achieved = np.array([s["achieved"] for s in samples])
    metadata = {
        "status": status,
        "reason": reason or "-",
        "profile": f"{dispatched['profile_id']} v{dispatched['profile_version']}",
        "agent": dispatched["agent_url"],
        "resource": dispatched["resource"],
        "seconds": dg.MetadataValue.int(len(samples)),
    }
    if len(samples):
        # The first second holds the generator's ramp-up; fidelity is judged after it.
        err = np.abs(target[1:] - achieved[1:]) if len(samples) > 1 else np.abs(target - achieved)
        metadata["mean_abs_error"] = dg.MetadataValue.float(float(err.mean()))
        ts = np.array([s["t"] for s in samples], dtype=float) + dispatched["dispatched_at"].timestamp()
        png = overlay_plot_png([(f"{dispatched['profile_id']} on {dispatched['agent_url']} ({status})",
                                 [("target", ts, target), ("achieved", ts, achieved)])])
        metadata["plot"] = dg.MetadataValue.md(png_markdown(png, "target vs achieved"))
    if status == "failed":
        context.log.warning(f"simulation {run_key} failed: {reason}")
    return dg.MaterializeResult(metadata=metadata)

