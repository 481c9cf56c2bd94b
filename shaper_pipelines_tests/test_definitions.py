"""The code location loads, the profile asset materialises, and ``shaper run`` works on both the
embedded defaults and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.store.profile_store import ProfileStore

PROJECT = Path(__file__).resolve().parents[1]


def test_definitions_load_from_the_defs_folder():
    from shaper_pipelines.definitions import defs

    d = defs()
    assert d.resolve_job_def("predefined_profiles_job") is not None
    keys = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()}
    assert "predefined_load_profiles" in keys


def test_dagster_definitions_validate_passes(shaper_home):
    result = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w",
                             "workspace.yaml"], cwd=PROJECT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ))  # no DAGSTER_HOME: validate uses a temporary instance
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_predefined_profiles_asset_stores_versions_and_plots(store_url, tmp_path):
    from shaper_pipelines.defs.profiles.assets import predefined_load_profiles

    resources = {"database": DatabaseResource(url=store_url)}
    result = dg.materialize([predefined_load_profiles], resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("predefined_load_profiles")[0].metadata
    assert meta["profiles"].value == 8 and meta["versions_created"].value == 8
    assert meta["series_rows"].value > 0
    assert meta["plot"].value.startswith("![rendered profiles](data:image/png;base64,")
    again = dg.materialize([predefined_load_profiles], resources=resources)
    assert again.asset_materializations_for_node("predefined_load_profiles")[0].metadata["versions_created"].value == 0
    with ProfileStore(store_url) as store:
        assert len(store.list()) == 8
        assert len(store.read_series("nightly-backup")) == 90


def test_shaper_run_on_embedded_defaults(shaper_home):
    result = subprocess.run([sys.executable, "-m", "shaper_pipelines.cli", "run"], capture_output=True, text=True,
                            timeout=600, cwd=PROJECT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "shaper main job: SUCCESS" in result.stdout
    assert "materialised predefined_load_profiles" in result.stdout
    assert (shaper_home / "profiles.db").exists()
    instance_dir = shaper_home / "dagster_home"
    with dg.DagsterInstance.from_config(str(instance_dir)) as instance:
        runs = instance.get_runs()
        # The setup jobs by hand; the rest as the daemon launches it: the history schedule, asset
        # runs of the automation conditions and the agent sensor (__ASSET_JOB), plan_apply_sensor.
        assert sorted(set(r.job_name for r in runs)) == [
            "__ASSET_JOB", "apply_scaling_job", "derived_profiles_job", "forecast_job", "history_job",
            "load_simulation_job", "predefined_profiles_job"]
        assert all(r.is_success for r in runs)
        assert any(r.tags.get("dagster/schedule_name") == "history_job_schedule" for r in runs)
        assert {r.tags.get("dagster/sensor_name") for r in runs} >= {"agent_sensor", "plan_apply_sensor"}
        # The main job ends in a dry-run plan with its reasons, recorded and shown.
        assert len(instance.get_materialized_partitions(dg.AssetKey("demand_forecast"))) == 5
        plan = instance.get_latest_materialization_event(dg.AssetKey("scaling_plan")).asset_materialization
        assert plan.metadata["targets"].value == 2 and "floor rule" in plan.metadata["plan"].value
        apply_run = next(r for r in runs if r.job_name == "apply_scaling_job")
        assert apply_run.run_config["ops"]["apply_scaling_plans"]["config"]["dry_run"] is True
        # The feedback loop ran on yesterday: every series' forecast as of then was judged.
        accuracy = instance.get_latest_materialization_event(dg.AssetKey("forecast_accuracy")).asset_materialization
        assert accuracy.metadata["judged"].value == 5
    assert "# TYPE shaper_planned_capacity gauge" in (shaper_home / "export" / "shaper.prom").read_text()
    assert "apply_scaling_job: ok" in result.stdout and "| serving at (UTC) |" in result.stdout
    from shaper_pipelines.store.scaling_store import ScalingStore
    with ScalingStore(f"sqlite:///{shaper_home / 'profiles.db'}") as store:
        actions = store.actions()
    assert all(a["dry_run"] and a["outcome"].startswith("would-apply") for a in actions)
    with dg.DagsterInstance.from_config(str(instance_dir)) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("predefined_load_profiles")) is not None
        history = dg.AssetKey(["historical_metrics", "checkout-api", "cpu"])
        assert len(instance.get_materialized_partitions(history)) == 14
        # The gentle CPU rehearsal, and the capacity rehearsal of the demo service, which stopped
        # itself once search-api's p95 objective broke; search-api's plan uses what it measured.
        simulations = instance.get_dynamic_partitions("simulation_runs")
        assert len(simulations) == 2
        records = instance.fetch_materializations(dg.AssetKey("simulation_results"), limit=10).records
        collected = [r.asset_materialization.metadata for r in records]
        assert sorted(r.partition_key for r in records) == sorted(simulations)
        assert sorted(m["status"].value for m in collected) == ["finished", "stopped"]
        rehearsal = next(m for m in collected if m["status"].value == "stopped")
        assert rehearsal["ended_by"].value == "latency" and rehearsal["scaling_target"].value == "search-api"
        assert "p95 latency" in rehearsal["reason"].value and rehearsal["peak_service_utilisation"].value > 0.8
        capacity = instance.get_latest_materialization_event(dg.AssetKey("capacity_model")).asset_materialization
        assert "| search-api" in capacity.metadata["capacity"].value and "| objective" in capacity.metadata["capacity"].value
    from shaper_pipelines.store.simulation_store import SimulationStore
    with SimulationStore(f"sqlite:///{shaper_home / 'profiles.db'}") as sims:
        rehearsed = next(r for r in sims.runs() if r["scaling_target"] == "search-api")
    # The demo service serves 60 req/s at most (3 workers x 50 ms); under the rehearsal's Poisson
    # arrivals its p95 breaks 125 ms near 44 req/s.
    row = next(line for line in result.stdout.splitlines() if line.startswith("  | search-api "))
    measured = float(row.split("|")[2])
    assert 34 < measured < 58, row
    assert f"rehearsals {rehearsed['run_key']}" in row
    assert f"capacity per instance: {measured:.4g} (rehearsals {rehearsed['run_key']}" in plan.metadata["plan"].value


def test_shaper_run_on_postgresql_keeps_runs_and_profiles_there(postgres, shaper_home, monkeypatch):
    url = postgres.create_database()
    # The fast forecast candidates: this test is about where runs and profiles are kept, and the
    # embedded test above already runs the default candidates, Prophet included.
    result = subprocess.run([sys.executable, "-m", "shaper_pipelines.cli", "run"], capture_output=True, text=True,
                            timeout=600, cwd=PROJECT, env={**os.environ, "SHAPER_DATABASE_URL": url,
                                                           "SHAPER_FORECAST_MODELS": "daily_profile,seasonal_naive_week"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (shaper_home / "profiles.db").exists()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        # 21 before the capacity rehearsal, which adds its load_simulation_job run and its collection.
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 23
        statuses = dict(conn.execute(sa.text("SELECT profile_id, status FROM simulation_runs")).all())
        assert statuses == {"gentle-cpu-rehearsal": "finished", "capacity-step-rehearsal": "stopped"}
        # The capacity rehearsal's seconds, with what the service said of each, are on PostgreSQL too.
        assert conn.execute(sa.text("SELECT count(*) FROM simulation_samples WHERE service_utilisation IS NOT NULL"
                                    )).scalar() > 5
        assert conn.execute(sa.text("SELECT count(DISTINCT target) FROM metric_samples")).scalar() == 2
        by_source = dict(conn.execute(sa.text(
            "SELECT source, count(DISTINCT profile_id) FROM profile_versions GROUP BY source")).all())
        assert by_source["predefined"] == 7 and by_source["ab_test"] == 2 and by_source["historical"] == 5
    engine.dispose()
