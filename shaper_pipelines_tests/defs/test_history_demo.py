"""The history assets on the embedded default (the generated demo history), and `shaper history`."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pandas as pd
import yaml

from shaper_pipelines.defs.history.assets import build_history_assets, history_key
from shaper_pipelines.lib.metrics_config import MetricsConfig
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.store.metric_store import MetricStore
from shaper_pipelines_tests.conftest import PROJECT, REAL_DATA

CONFIG = MetricsConfig.model_validate(yaml.safe_load((PROJECT / "profiles_data" / "metrics.yaml").read_text()))


def run_range(asset, url: str, first: str, last: str, source=None) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("h", selection=dg.AssetSelection.assets(asset))
    defs = dg.Definitions(assets=[asset], jobs=[job], resources={
        "database": DatabaseResource(url=url), "metrics_source": source or MetricsSourceResource()})
    return defs.resolve_job_def("h").execute_in_process(
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})


def test_a_range_backfill_is_one_run_that_stores_every_series(store_url):
    asset = build_history_assets(CONFIG)
    result = run_range(asset, store_url, "2026-11-10", "2026-11-16")
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 5 * 7  # every series, every day
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 5 * 4 and all(c.passed for c in checks)
    with MetricStore(store_url) as store:
        frame = store.read("checkout-api", "cpu")
    assert len(frame) == 7 * 288 and frame.index[0] == pd.Timestamp("2026-11-10", tz="UTC")
    meta = events[0].event_specific_data.materialization.metadata
    assert meta["source"].value == "demo" and meta["plot"].value.startswith("![")
    # Re-running a day replaces it rather than adding to it.
    assert run_range(asset, store_url, "2026-11-12", "2026-11-12").success
    with MetricStore(store_url) as store:
        assert len(store.read("checkout-api", "cpu")) == 7 * 288


def test_definitions_expose_partitions_checks_and_the_morning_schedule():
    from shaper_pipelines.definitions import defs

    d = defs()
    graph = d.resolve_asset_graph()
    key = history_key("checkout-api", "cpu")
    assert isinstance(graph.get(key).partitions_def, dg.DailyPartitionsDefinition)
    assert {c.name for c in graph.get_check_keys_for_assets([key])} >= {"gap_share_under_limit", "no_long_flat_line"}
    schedule = d.resolve_schedule_def("history_job_schedule")
    assert schedule.cron_schedule == "15 6 * * *"


def test_history_import_cli_round_trips_a_real_trace(shaper_home, tmp_path):
    trace = REAL_DATA / "nab" / "ec2_cpu_utilization_53ea38.csv"
    shaper = [sys.executable, "-m", "shaper_pipelines.cli", "history"]
    result = subprocess.run([*shaper, "import", trace, "--target", "ec2-53ea38", "--metric", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported 4,032 points" in result.stdout
    listed = subprocess.run([*shaper, "list"], capture_output=True, text=True, timeout=120)
    assert "ec2-53ea38" in listed.stdout
    with MetricStore(f"sqlite:///{shaper_home / 'profiles.db'}") as store:
        stored = store.read("ec2-53ea38", "cpu")
    source = pd.read_csv(trace)
    assert len(stored) == len(source)
    assert abs(stored["value"].sum() - source["value"].sum()) < 1e-6 * source["value"].abs().sum()
    bad = subprocess.run([*shaper, "import", trace, "--target", "bad target!", "--metric", "cpu"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--target" in bad.stderr
