"""business_calendar and load_profiles on the embedded default's demo history."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from shaper_pipelines.defs.calendar.assets import business_calendar
from shaper_pipelines.defs.history.assets import build_history_assets
from shaper_pipelines.defs.profiles.derived import load_profiles
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.store.profile_store import ProfileStore
from shaper_pipelines_tests.defs.test_history_demo import CONFIG, run_range


def test_profiles_come_from_every_source_and_re_deriving_adds_no_version(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    today = pd.Timestamp.now(tz="UTC").floor("D")
    history = build_history_assets(CONFIG)
    first, last = today - pd.Timedelta(days=14), today - pd.Timedelta(days=1)
    assert run_range(history, url, f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}").success

    resources = {"database": DatabaseResource(url=url), "metrics_source": MetricsSourceResource()}
    result = dg.materialize([business_calendar, load_profiles], resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("load_profiles")[0].metadata
    by_source = meta["by_source"].value
    assert by_source["historical"] == 5 and by_source["user_behaviour"] == 4
    assert by_source["ab_test"] == 1 and by_source["release"] == 1 and by_source["calendar"] >= 5
    assert meta["plot"].value.startswith("![derived](data:image/png;base64,")
    calendar = result.output_for_node("business_calendar")
    assert {"holiday", "month_end", "custom"} <= set(calendar["kind"])

    again = dg.materialize([business_calendar, load_profiles], resources=resources)
    assert again.asset_materializations_for_node("load_profiles")[0].metadata["versions_created"].value == 0

    with ProfileStore(url) as store:
        hist = store.get("hist-checkout-api-cpu")
        assert hist.profile.lineage["history_window"].startswith(f"{today - pd.Timedelta(days=28):%Y-%m-%d}")
        assert hist.profile.load_pattern.kind == "peak_valley"
        calendar_profiles = store.list(source="calendar")
        assert all(p.profile.trigger_kinds == ["event"] for p in calendar_profiles)
