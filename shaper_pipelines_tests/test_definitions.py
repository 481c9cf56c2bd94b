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
    assert meta["profiles"].value == 7 and meta["versions_created"].value == 7
    assert meta["series_rows"].value > 0
    assert meta["plot"].value.startswith("![rendered profiles](data:image/png;base64,")
    again = dg.materialize([predefined_load_profiles], resources=resources)
    assert again.asset_materializations_for_node("predefined_load_profiles")[0].metadata["versions_created"].value == 0
    with ProfileStore(store_url) as store:
        assert len(store.list()) == 7
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
        simulations = instance.get_dynamic_partitions("simulation_runs")
        assert len(simulations) == 1
        result = instance.get_latest_materialization_event(dg.AssetKey("simulation_results"))
        assert result.asset_materialization.metadata["status"].value == "finished"


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
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 21
        assert conn.execute(sa.text("SELECT status FROM simulation_runs")).scalar() == "finished"
        assert conn.execute(sa.text("SELECT count(DISTINCT target) FROM metric_samples")).scalar() == 2
        by_source = dict(conn.execute(sa.text(
            "SELECT source, count(DISTINCT profile_id) FROM profile_versions GROUP BY source")).all())
        assert by_source["predefined"] == 6 and by_source["ab_test"] == 2 and by_source["historical"] == 5
    engine.dispose()
