"""capacity_rehearsal_sensor, evaluated as the daemon evaluates it, on a real simulation store: it
asks for a rehearsal of each target whose service has none, or whose newest is older than its
max_age or of another service_version, once per such state, and never while one is running.
(It only requests runs: no load is made here.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import sqlalchemy as sa
import yaml

from shaper_pipelines.defs.simulation.sensors import capacity_rehearsal_sensor
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.store.schema import simulation_runs
from shaper_pipelines.store.simulation_store import Dispatch, SimulationStore

OBJECTIVE = {"quantile": 0.95, "latency": "100ms"}


def target(name: str, resource: str, **rehearsal) -> dict:
    out = {"name": name, "kind": "asg", "resource": resource, "history": {"target": "search-api", "metric": "requests"},
           "min_capacity": 1, "max_capacity": 4}
    if rehearsal:
        out["rehearsal"] = {"objective": OBJECTIVE, **rehearsal}
    return out


def configure(tmp_path, monkeypatch, version=None) -> None:
    web = {"url": "http://web.internal/", "max_age": "7d", **({"service_version": version} if version else {})}
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump({"targets": [
        target("web", "web-asg", **web),
        target("no-url", "no-url-asg", profile="capacity-step-rehearsal"),  # rehearsed by hand only
        target("plain", "plain-asg")]}))
    monkeypatch.setenv("SHAPER_SCALING_CONFIG", str(path))


def evaluate(url: str):
    context = dg.build_sensor_context(resources={"database": DatabaseResource(url=url)})
    result = capacity_rehearsal_sensor(context)
    return result if isinstance(result, dg.SkipReason) else list(result)


def test_a_target_is_rehearsed_when_it_has_none_when_it_is_stale_and_not_while_one_runs(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    configure(tmp_path, monkeypatch)
    with SimulationStore(url):
        pass  # the schema
    [request] = evaluate(url)
    assert request.run_key == "capacity-web-after-never" and request.tags["shaper/why"] == "never rehearsed"
    assert request.run_config == {"ops": {"select_profiles": {"config": {"scaling_target": "web"}}}}

    with SimulationStore(url) as sims:
        sims.record_dispatches([Dispatch("r1", "capacity-step-rehearsal", 1, "http://agent", "network_io", 1.0,
                                         "web", None)], "test")
    assert isinstance(evaluate(url), dg.SkipReason)  # running: wait for it
    with SimulationStore(url) as sims:
        sims.record_result("r1", "stopped", "stopped itself", [])
    skip = evaluate(url)
    assert isinstance(skip, dg.SkipReason) and "web" in skip.skip_message  # fresh

    with SimulationStore(url) as sims, sims.engine.begin() as conn:
        conn.execute(sa.update(simulation_runs).values(
            dispatched_at=datetime.now(timezone.utc) - timedelta(days=8)))
    [request] = evaluate(url)
    assert request.run_key == "capacity-web-after-r1" and "older than 7 days" in request.tags["shaper/why"]

    # Fresh again, but the service is now version 2: the rehearsal of an unknown version is stale.
    with SimulationStore(url) as sims, sims.engine.begin() as conn:
        conn.execute(sa.update(simulation_runs).values(dispatched_at=datetime.now(timezone.utc)))
    configure(tmp_path, monkeypatch, version="2")
    [request] = evaluate(url)
    assert request.run_key == "capacity-web-after-r1" and "now 2" in request.tags["shaper/why"]
