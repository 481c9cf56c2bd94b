"""simulation_results: what each rehearsal really did, one dynamic partition per agent run."""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource

simulation_runs = dg.DynamicPartitionsDefinition(name="simulation_runs")


@dg.asset(partitions_def=simulation_runs, group_name="simulation", kinds={"python", "sql"},
          owners=["team:platform"])
def simulation_results(context: dg.AssetExecutionContext, database: DatabaseResource,
                       fleet: AgentFleetResource, metrics_source: MetricsSourceResource) -> dg.MaterializeResult:
    """Per agent run, second by second: the load aimed for and achieved, what Locust saw (failures,
    latency quantiles) and, for a capacity rehearsal, what the service under test reported (its
    utilisation, latency and errors: scraped by the agent, or read from Prometheus with the
    target's PromQL), and how the run ended, including a run that stopped itself on its latency
    objective. An agent that stopped answering is a failed run, explained: its workers die with
    it, so its load is gone too."""
    from shaper_pipelines.agent.client import AgentError, AgentUnreachable

    run_key = context.partition_key
    with database.simulation_store() as sims:
        dispatched = sims.run(run_key)
    started_at, ended_by = None, None
    try:
        view = fleet.client_for(dispatched["agent_url"]).get(run_key)
        status, reason, samples = view["status"], view["reason"], view["samples"]
        if status == "running":
            raise dg.Failure(f"run {run_key} is still running on {dispatched['agent_url']}; the sensor "
                             "requests this partition only when it has ended")
        started_at = view.get("load_started", view.get("started"))
        ended_by = (view.get("ended_by") or {}).get("kind")
    except AgentUnreachable as exc:
        status, reason, samples = "failed", f"{exc}; the agent died or was cut off mid-run", []
    except AgentError as exc:
        status, reason, samples = "failed", str(exc), []
    watched = _from_prometheus(context, dispatched, metrics_source, started_at, samples)
    # Everything read before anything is written: the run's record is replaced in one transaction.
    with database.simulation_store() as sims:
        sims.record_result(run_key, status, reason, samples, started_at=started_at, ended_by=ended_by)
        frame = sims.samples(run_key)

    metadata = {
        "status": status,
        "reason": reason or "-",
        "profile": f"{dispatched['profile_id']} v{dispatched['profile_version']}",
        "agent": dispatched["agent_url"],
        "resource": dispatched["resource"],
        "seconds": dg.MetadataValue.int(len(samples)),
    }
    if dispatched.get("scaling_target"):
        metadata["scaling_target"] = dispatched["scaling_target"]
        metadata["service_watched_by"] = watched
    if ended_by:
        metadata["ended_by"] = ended_by
    if len(frame):
        metadata.update(_figures(frame))
        metadata["plot"] = _plot(frame, dispatched, status, started_at)
    if status == "failed":
        context.log.warning(f"simulation {run_key} failed: {reason}")
    return dg.MaterializeResult(metadata=metadata)


def _from_prometheus(context, dispatched: dict, metrics_source: MetricsSourceResource, started_at,
                     samples: list[dict]) -> str:
    """For a capacity rehearsal watched through Prometheus: fill each sample's service columns
    from the target's PromQL over the run's seconds. An unreachable Prometheus costs only those
    columns (said in the log and the metadata); the agent's own samples are stored all the same."""
    name = dispatched.get("scaling_target")
    if not name or not samples:
        return "-"
    from shaper_pipelines.config import load_scaling
    from shaper_pipelines.lib.prometheus import PrometheusQueryError, PrometheusSettings, PrometheusUnavailable
    from shaper_pipelines.lib.rehearsal_watch import prometheus_observations

    try:
        rehearsal = load_scaling().target(name).rehearsal
    except LookupError:
        rehearsal = None
    if rehearsal is None or rehearsal.watch != "prometheus":
        return "the agent, scraping the service's /metrics" if any(
            s.get("service_utilisation") is not None for s in samples) else "nothing (no monitor)"
    if not metrics_source.prometheus_url or started_at is None:
        context.log.warning(f"{name}: watched through Prometheus, but SHAPER_PROMETHEUS_URL is not set or the run "
                            "has no start time; the service's side of this rehearsal is missing")
        return "nothing: no Prometheus"
    settings = PrometheusSettings(metrics_source.prometheus_url, metrics_source.timeout_seconds,
                                  metrics_source.retries, metrics_source.backoff_seconds)
    try:
        seen = prometheus_observations(settings, rehearsal.prometheus.queries(rehearsal.objective.quantile),
                                       float(started_at), len(samples))
    except (PrometheusUnavailable, PrometheusQueryError) as exc:
        context.log.warning(f"{name}: {exc}; the rehearsal is stored without the service's side")
        return f"nothing: {str(exc)[:200]}"
    by_t = seen.set_index("t")
    for s in samples:
        if int(s["t"]) in by_t.index:
            for column in by_t.columns:
                value = by_t.at[int(s["t"]), column]
                s[column] = None if not np.isfinite(value) else float(value)
    return f"Prometheus at {metrics_source.prometheus_url}"


def _figures(frame: pd.DataFrame) -> dict:
    out = {}
    if len(frame) > 1:  # the first second holds the generator's ramp-up; fidelity is judged after it
        err = (frame["target"] - frame["achieved"]).abs().iloc[1:]
    else:
        err = (frame["target"] - frame["achieved"]).abs()
    out["mean_abs_error"] = dg.MetadataValue.float(float(err.mean()))
    for column, label in (("service_utilisation", "peak_service_utilisation"), ("service_p95_ms", "peak_service_p95_ms"),
                          ("latency_p95_ms", "peak_client_p95_ms")):
        values = frame[column].dropna()
        if len(values):
            out[label] = dg.MetadataValue.float(float(values.max()))
    if frame["errors"].notna().any():
        out["errors"] = dg.MetadataValue.float(float(frame["errors"].fillna(0).sum()))
    return out


def _plot(frame: pd.DataFrame, dispatched: dict, status: str, started_at) -> dg.MetadataValue:
    from shaper_pipelines.lib.plots import overlay_plot_png, png_markdown

    origin = float(started_at) if started_at is not None else dispatched["dispatched_at"].timestamp()
    ts = frame["t"].to_numpy(dtype=float) + origin
    panels = [(f"{dispatched['profile_id']} on {dispatched['agent_url']} ({status})",
               [("target", ts, frame["target"].to_numpy()), ("achieved", ts, frame["achieved"].to_numpy())])]
    latency = [(label, ts, frame[c].to_numpy()) for c, label in
               (("latency_p95_ms", "client p95 ms"), ("latency_p99_ms", "client p99 ms"),
                ("service_p95_ms", "service p95 ms"), ("service_p99_ms", "service p99 ms")) if frame[c].notna().any()]
    if latency:
        panels.append(("latency (ms)", latency))
    if frame["service_utilisation"].notna().any():
        panels.append(("service utilisation", [("utilisation", ts, frame["service_utilisation"].to_numpy())]))
    return dg.MetadataValue.md(png_markdown(overlay_plot_png(panels), "rehearsal: load, latency, utilisation"))
