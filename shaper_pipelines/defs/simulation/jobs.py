"""load_simulation_job: choose the profiles relevant now and rehearse them on the agent fleet."""

from datetime import datetime, timezone

import dagster as dg

from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource


class SelectionConfig(dg.Config):
    profile_ids: list[str] = []  # rehearse these, and only these, whatever their triggers say
    events: list[str] = []  # external events that have arrived (the event sensor fills this)
    window_minutes: float = 60.0  # a cron trigger is due if it fired this recently
    intensity: float = 1.0  # scales every chosen profile
    http_target: str = ""  # the URL network_io rehearsals send requests to; none: they are not run
    # A capacity rehearsal of this scaling target's service: its rehearsal profile (unless
    # profile_ids names others) against its rehearsal url (unless http_target overrides it), on one
    # agent, watched and stopped as its scaling.yaml rehearsal section says.
    scaling_target: str = ""


@dg.op(out=dg.Out(list))
def select_profiles(context: dg.OpExecutionContext, config: SelectionConfig, database: DatabaseResource,
                    fleet: AgentFleetResource, metrics_source: MetricsSourceResource) -> list:
    """Every stored profile gets a decision: due by a trigger (a cron that fired, an event that
    arrived, a metric condition that held in Prometheus) or requested by id, then by priority
    within what the fleet can run at once."""
    from shaper_pipelines.lib.selection import select

    requested, http_target = set(config.profile_ids), config.http_target
    if config.scaling_target:
        rehearsal = _rehearsal(config.scaling_target)
        requested = requested or {rehearsal.profile}
        http_target = http_target or rehearsal.url or ""
        if not http_target:
            raise dg.Failure(f"scaling target {config.scaling_target!r} has no rehearsal url in scaling.yaml; "
                             "set it or pass http_target")
    with database.profile_store() as store:
        stored = store.list()
    missing = requested - {s.profile_id for s in stored}
    if missing:
        raise dg.Failure(f"requested profiles are not in the store: {', '.join(sorted(missing))}")

    def evaluate(query: str):
        if not metrics_source.prometheus_url:
            return None
        from shaper_pipelines.lib.prometheus import PrometheusSettings, instant_value

        value = instant_value(PrometheusSettings(metrics_source.prometheus_url, retries=1), query)
        return None if value is None else value >= 1

    slots = fleet.slots()
    if http_target:
        slots["network_io"] = slots.get("network_io", max(slots.values(), default=1))
    decisions = select([(s.profile, s.version) for s in stored], now=datetime.now(timezone.utc),
                       window_s=config.window_minutes * 60, events=set(config.events), evaluate_metric=evaluate,
                       slots=slots, requested=requested)
    chosen = [d for d in decisions if d.chosen]
    table = "\n".join(["| profile | version | resource | priority | chosen | why |", "|---|---:|---|---:|---|---|"]
                      + [f"| {d.profile_id} | {d.version} | {d.resource} | {d.priority} | {'yes' if d.chosen else 'no'} "
                         f"| {d.why} |" for d in decisions])
    context.add_output_metadata({"chosen": len(chosen), "considered": len(decisions),
                                 "decisions": dg.MetadataValue.md(table)})
    for d in chosen:
        context.log.info(f"chosen {d.profile_id} v{d.version}: {d.why}")
    target = http_target or "localhost"
    return [(d.profile_id, d.version, config.intensity, target if d.resource == "network_io" else "localhost",
             config.scaling_target if d.resource == "network_io" else "") for d in chosen]


def _rehearsal(name: str):
    from shaper_pipelines.config import load_scaling

    try:
        target = load_scaling().target(name)
    except LookupError as exc:
        raise dg.Failure(str(exc)) from None
    if target.rehearsal is None:
        raise dg.Failure(f"scaling target {name!r} has no rehearsal section in scaling.yaml")
    return target.rehearsal


@dg.op
def simulate(context: dg.OpExecutionContext, chosen: list, database: DatabaseResource,
             fleet: AgentFleetResource) -> list:
    """Start each chosen profile on every agent of the fleet with the intensity split between
    them; records each dispatch so the agent sensor can collect the result. A capacity rehearsal
    runs on one agent (Locust spreads it over its own workers): its self-stop and its reading of
    the service are one agent's view of one instance."""
    from shaper_pipelines.agent.client import AgentError
    from shaper_pipelines.store.simulation_store import Dispatch

    clients = fleet.clients() if chosen else []
    dispatches = []
    with database.profile_store() as store:
        for profile_id, version, intensity, target, scaling_target in chosen:
            profile = store.get(profile_id, version).profile
            watch, version_of_service, agents = {}, None, clients
            if scaling_target:
                rehearsal = _rehearsal(scaling_target)
                watch = {"stop_when": rehearsal.stop_when(), "arrivals": rehearsal.arrivals}
                if rehearsal.watch == "scrape":
                    watch["monitor"] = rehearsal.scrape.monitor(target)
                version_of_service, agents = rehearsal.service_version, clients[:1]
            share = intensity / len(agents)
            for client in agents:
                try:
                    run = client.start(profile.canonical(), intensity=share, target_resource=target, **watch)
                except AgentError as exc:
                    # Stop what this simulation already started: half a rehearsal measures nothing.
                    for d in dispatches:
                        fleet.client_for(d.agent_url).stop(d.run_key)
                    raise dg.Failure(f"{profile_id}: {exc}") from None
                dispatches.append(Dispatch(run["id"], profile_id, version, client.url, run["resource"], share,
                                           scaling_target or None, version_of_service))
                context.log.info(f"{profile_id} v{version} -> {client.url} run {run['id']} at intensity {share:g}")
    with database.simulation_store() as sims:
        sims.record_dispatches(dispatches, f"dagster run {context.run.run_id[:8]}")
    return [d.run_key for d in dispatches]


@dg.job(description="Rehearse the profiles relevant now on the load-agent fleet.")
def load_simulation_job():
    simulate(select_profiles())


load_simulation_schedule = dg.ScheduleDefinition(
    job=load_simulation_job, cron_schedule="5 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every hour: rehearse profiles whose cron fired in the last hour (stopped by default: "
                "it generates real load).",
)
