"""A capacity rehearsal as the operator runs it: load_simulation_job with a scaling target, a real
agent process driving real Locust at a real HTTP service (the demo service, 3 workers holding each
request 50 ms: 60 requests per second at most), a real Prometheus scraping that service every
second, the agent sensor's collection into simulation_results, and capacity_model.

One rehearsal serves every test of the module (about 25 s of load at most, 84 requests per second
at the peak): it must stop itself on the p95 objective; the service's per-second utilisation and
latency read by the agent from /metrics must match what the target's PromQL says over the same
seconds; simulation_results reads the PromQL path when scaling.yaml says so; and capacity_model
turns the rehearsal into the capacity at the objective, flagging it stale for another version."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from shaper_pipelines.defs.plan.capacity import capacity_model
from shaper_pipelines.defs.simulation.assets import simulation_results
from shaper_pipelines.defs.simulation.jobs import load_simulation_job
from shaper_pipelines.defs.simulation.sensors import agent_sensor
from shaper_pipelines.demo_service import start_demo_service
from shaper_pipelines.lib.profile import load_profiles_file
from shaper_pipelines.lib.prometheus import PrometheusSettings
from shaper_pipelines.lib.rehearsal_watch import prometheus_observations
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.fleet import AgentFleetResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.store.profile_store import ProfileStore
from shaper_pipelines.store.simulation_store import SimulationStore
from shaper_pipelines_tests.agent.test_agent_safety import TOKEN, AgentProcess, wait_for

PROJECT = Path(__file__).resolve().parents[2]
PROFILE = PROJECT / "profiles_data" / "profiles" / "capacity_step_rehearsal.yaml"
OBJECTIVE_MS = 125.0
# The demo's own scaling.yaml section (its PromQL's rate window: 3 s, three 1 s scrapes).
REHEARSAL = yaml.safe_load((PROJECT / "profiles_data" / "scaling.yaml").read_text())["targets"][1]["rehearsal"]


def scaling_file(path: Path, url: str, **rehearsal) -> Path:
    target = {"name": "search-api", "kind": "ecs", "resource": "service/prod/search-api",
              "history": {"target": "search-api", "metric": "requests"}, "min_capacity": 1, "max_capacity": 10,
              "rehearsal": {**REHEARSAL, "url": f"{url}/work", **rehearsal}}
    path.write_text(yaml.safe_dump({"targets": [target]}))
    return path


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    """The rehearsal, run and collected once with the agent watching the service's /metrics while
    Prometheus scrapes it too: (definitions, instance, database url, run key, service, prometheus, dir)."""
    from shaper_pipelines_tests.services.prometheus import start_prometheus

    home = tmp_path_factory.mktemp("rehearsal")
    url = f"sqlite:///{home / 'db.sqlite'}"
    with ProfileStore(url) as store:
        store.put_many(load_profiles_file(PROFILE))
    mp = pytest.MonkeyPatch()
    service = start_demo_service("pool", workers=3, work_ms=50, queue=16)
    agent = AgentProcess(home, "--dead-man", "60s", "--max-rps", "500")
    prometheus = None
    try:
        prometheus = start_prometheus(scrape_interval="1s", scrape_configs=[{
            "job_name": "demo-service", "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": [service.url.removeprefix("http://")]}]}])
        # Prometheus starts scraping a few seconds after it is ready: wait for a steady 1 s scrape.
        wait_for(lambda: (r := prometheus.query("count_over_time(demo_workers[5s])")) and float(r[0]["value"][1]) >= 4,
                 30, "Prometheus scraping the service every second")
        mp.setenv("SHAPER_SCALING_CONFIG", str(scaling_file(home / "scaling.yaml", service.url)))
        defs = dg.Definitions(
            assets=[simulation_results, capacity_model], jobs=[load_simulation_job], sensors=[agent_sensor],
            resources={"database": DatabaseResource(url=url),
                       "fleet": AgentFleetResource(agents=[f"http://127.0.0.1:{agent.port}"], token=TOKEN),
                       "metrics_source": MetricsSourceResource(prometheus_url=prometheus.url, retries=1)})
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("load_simulation_job").execute_in_process(
                instance=instance, run_config={"ops": {"select_profiles": {"config": {"scaling_target": "search-api"}}}})
            assert result.success
            [key] = result.output_for_node("simulate")
            wait_for(lambda: agent.call("GET", f"/runs/{key}")[1]["status"] != "running", 60, "the rehearsal ended")
            # The agent sensor, as the daemon ticks it, requests the collection.
            context = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
            sensed = agent_sensor(context)
            assert [r.partition_key for r in sensed.run_requests] == [key]
            instance.add_dynamic_partitions("simulation_runs", [key])
            yield defs, instance, url, key, service, prometheus, home, mp
    finally:
        mp.undo()
        agent.stop()
        if prometheus is not None:
            prometheus.stop()
        service.stop()


def collect(defs, instance, key) -> dict:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=key, asset_selection=[dg.AssetKey("simulation_results")])
    meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    return {k: v.value for k, v in meta.items()}


def agent_port(defs) -> int:
    return int(defs.resources["fleet"].agents[0].rsplit(":", 1)[1])


def capacity(defs, instance):
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("capacity_model")])
    return result.output_for_node("capacity_model").set_index("target").loc["search-api"]


def test_the_rehearsal_stops_itself_when_the_objective_breaks_and_is_stored_per_second(rehearsed):
    defs, instance, url, key, *_ = rehearsed
    meta = collect(defs, instance, key)
    assert meta["status"] == "stopped" and meta["ended_by"] == "latency", meta
    assert meta["reason"].startswith("stopped itself: p95 latency") and "125 ms" in meta["reason"]
    assert meta["scaling_target"] == "search-api"
    assert meta["service_watched_by"].startswith("the agent")
    # It stopped well before the profile's 27 s.
    assert meta["seconds"] < 27
    assert meta["plot"].startswith("![rehearsal")
    with SimulationStore(url) as sims:
        frame = sims.samples(key)
        run = sims.run(key)
    assert run["ended_by"] == "latency" and run["started_at"] > 0
    steady = frame[frame["target"] <= 45].iloc[2:]
    assert steady["service_utilisation"].notna().all() and steady["latency_p95_ms"].notna().all()
    # At 36 req/s, 3 workers x 50 ms are 60 % busy, and a request takes its 50 ms.
    at36 = frame[frame["target"] == 36]["service_utilisation"].median()
    assert 0.45 < at36 < 0.75, frame
    # At 24 req/s (40 % busy) most requests take their 50 ms; with Poisson arrivals some wait:
    # the p95 sits between the work time and the objective.
    assert 45 < frame[frame["target"] == 24]["service_p95_ms"].median() < OBJECTIVE_MS, frame
    assert frame["service_p95_ms"].max() > OBJECTIVE_MS


def test_prometheus_and_the_agents_scrape_give_the_same_per_second_series(rehearsed):
    defs, instance, url, key, service, prometheus, home, mp = rehearsed
    collect(defs, instance, key)
    with SimulationStore(url) as sims:
        scraped = sims.samples(key)
        started = sims.run(key)["started_at"]
    queries = {"service_utilisation": REHEARSAL["prometheus"]["utilisation"].replace("$window", "3s"),
               "service_p95_ms": REHEARSAL["prometheus"]["latency"].replace("$window", "3s").replace("$quantile", "0.95")}
    seen = prometheus_observations(PrometheusSettings(prometheus.url, retries=1), queries, started, len(scraped))
    both = scraped.merge(seen, on="t", suffixes=("_scraped", "_promql"))
    u = both[["service_utilisation_scraped", "service_utilisation_promql"]].dropna()
    assert len(u) >= len(scraped) - 4, both
    # rate() over a 3 s window at 1 s scrapes spans the last two scrape intervals before its
    # evaluation, wherever Prometheus' scrape phase put them: the same per-second series as the
    # agent's, averaged over two seconds and up to a second behind. Compared that way, they agree.
    promql = both["service_utilisation_promql"]
    errors = []
    for lag in (0, 1):
        trailing = both["service_utilisation_scraped"].rolling(2).mean().shift(lag)
        pair = pd.concat([trailing, promql], axis=1).dropna()
        errors.append((np.median(np.abs(pair.iloc[:, 0] - pair.iloc[:, 1])), lag, pair))
    error, lag, pair = min(errors, key=lambda e: e[0])
    assert error < 0.05 and np.corrcoef(pair.iloc[:, 0], pair.iloc[:, 1])[0, 1] > 0.95, (lag, pair)
    p = both[["service_p95_ms_scraped", "service_p95_ms_promql"]].dropna()
    p = p[p.iloc[:, 0] < OBJECTIVE_MS]  # below the objective: before the queue took over
    ratio = p.iloc[:, 1] / p.iloc[:, 0]
    assert len(p) >= 5 and 0.8 < ratio.median() < 1.25, p

    # And simulation_results reads that path itself when scaling.yaml says watch: prometheus.
    mp.setenv("SHAPER_SCALING_CONFIG", str(scaling_file(home / "scaling-promql.yaml", service.url,
                                                        watch="prometheus")))
    meta = collect(defs, instance, key)
    assert meta["service_watched_by"] == f"Prometheus at {prometheus.url}"
    with SimulationStore(url) as sims:
        from_promql = sims.samples(key)
    stored = from_promql.merge(seen, on="t", suffixes=("_stored", "_seen"))
    assert np.allclose(stored["service_utilisation_stored"], stored["service_utilisation_seen"], equal_nan=True,
                       atol=0.05)
    mp.setenv("SHAPER_SCALING_CONFIG", str(home / "scaling.yaml"))


def test_an_unreachable_prometheus_loses_nothing_the_agent_measured(rehearsed):
    defs, instance, url, key, service, prometheus, home, mp = rehearsed
    mp.setenv("SHAPER_SCALING_CONFIG", str(scaling_file(home / "scaling-promql.yaml", service.url,
                                                        watch="prometheus")))
    try:
        unreachable = dg.Definitions(assets=[simulation_results], resources={
            **defs.resources, "metrics_source": MetricsSourceResource(prometheus_url="http://127.0.0.1:9",
                                                                      retries=0, timeout_seconds=2)})
        meta = collect(unreachable, instance, key)
    finally:
        mp.setenv("SHAPER_SCALING_CONFIG", str(home / "scaling.yaml"))
    assert meta["status"] == "stopped" and meta["service_watched_by"].startswith("nothing: Prometheus at")
    with SimulationStore(url) as sims:
        frame = sims.samples(key)
    # Nothing is lost: every second, Locust's side, and what the agent itself read of the service
    # (this rehearsal was watched by the agent too) are stored as the agent reported them.
    view = defs.resources["fleet"].client_for(f"http://127.0.0.1:{agent_port(defs)}").get(key)
    assert len(frame) == meta["seconds"] == len(view["samples"]) and frame["achieved"].notna().all()
    assert frame["latency_p95_ms"].notna().sum() > 5
    assert np.allclose(frame["service_utilisation"], [x["service_utilisation"] for x in view["samples"]],
                       equal_nan=True)


def test_capacity_model_takes_the_load_at_the_objective_and_flags_another_version(rehearsed):
    defs, instance, url, key, service, prometheus, home, mp = rehearsed
    collect(defs, instance, key)
    row = capacity(defs, instance)
    # 60 req/s at most, but the rehearsal's arrivals are Poisson: 3 workers x 50 ms queue like
    # M/D/3, whose p95 crosses 125 ms near 44 req/s (40: 104 ms, 45: 131 ms, 50: 174 ms).
    assert row["bound"] == "objective" and 34 < row["capacity_per_instance"] < 58, row
    assert row["rehearsals"] == [key] and row["stale"] is None
    assert row["source"].startswith(f"rehearsals {key}: p95 under 125 ms up to")
    assert isinstance(row["response"], dict)
    from shaper_pipelines.lib.response_model import ResponseModel
    model = ResponseModel.from_dict(row["response"])
    assert 0.45 < float(model.utilisation_at(np.array([36.0]))[0]) < 0.75

    mp.setenv("SHAPER_SCALING_CONFIG", str(scaling_file(home / "scaling-v2.yaml", service.url,
                                                        service_version="2")))
    try:
        stale = capacity(defs, instance)
    finally:
        mp.setenv("SHAPER_SCALING_CONFIG", str(home / "scaling.yaml"))
    assert stale["stale"] and "version" in stale["stale"] and "(stale:" in stale["source"], stale
    assert stale["capacity_per_instance"] == row["capacity_per_instance"]
