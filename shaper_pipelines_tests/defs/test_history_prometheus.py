"""historical_metrics against a real Prometheus holding real traces: a 14-day backfill matches the
source, an outage mid-backfill stores nothing and a retry succeeds, and bad data fails exactly
the checks it should."""

from __future__ import annotations

import math
import time

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.defs.history.assets import build_history_assets
from shaper_pipelines.lib.metrics_config import MetricsConfig
from shaper_pipelines.lib.prometheus import PrometheusSettings, PrometheusUnavailable, fetch_range
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource
from shaper_pipelines.store.metric_store import MetricStore
from shaper_pipelines_tests.conftest import REAL_DATA
from shaper_pipelines_tests.services.prometheus import LoadedSeries, load_trace, series_frame, start_prometheus

TODAY = pd.Timestamp.now(tz="UTC").floor("D")
END_AT = (TODAY - pd.Timedelta(minutes=5)).timestamp()  # the last sample closes yesterday
FIRST, LAST = TODAY - pd.Timedelta(days=14), TODAY - pd.Timedelta(days=1)
TRACES = {"crane-cpu_1": "crane/cpu_1.csv", "crane-cpu_2": "crane/cpu_2.csv",
          "rds-e47b3b": "nab/rds_cpu_utilization_e47b3b.csv"}


def config(targets: list[str], **quality) -> MetricsConfig:
    return MetricsConfig.model_validate({
        "start_date": (TODAY - pd.Timedelta(days=60)).strftime("%Y-%m-%d"), "step": "5m",
        "quality": {"max_gap_share": 0.1, "max_flat_steps": 36, **quality},
        "metrics": {"cpu": {"query": 'shaper_test_cpu{instance="$target"}', "bounds": [0, 1000]}},
        "targets": {t: ["cpu"] for t in targets},
    })


def loaded() -> list[LoadedSeries]:
    return [load_trace(REAL_DATA / path, metric="shaper_test_cpu", labels={"instance": name, "job": "traces"},
                       end_at=END_AT, step=300) for name, path in TRACES.items()]


@pytest.fixture(scope="module")
def real_prometheus():
    series = loaded()
    server = start_prometheus(series)
    yield server, series
    server.stop()


def backfill(cfg: MetricsConfig, url: str, prometheus_url: str, first=FIRST, last=LAST, loggers=None):
    asset = build_history_assets(cfg)
    job = dg.define_asset_job("backfill", selection=dg.AssetSelection.assets(asset),
                              partitions_def=asset.partitions_def)
    source = MetricsSourceResource(prometheus_url=prometheus_url, retries=1, backoff_seconds=0.1, timeout_seconds=5)
    defs = dg.Definitions(assets=[asset], jobs=[job], loggers=loggers or {},
                          resources={"database": DatabaseResource(url=url), "metrics_source": source})
    run_config = {"loggers": {name: {} for name in (loggers or {})}}
    return defs.resolve_job_def("backfill").execute_in_process(
        raise_on_error=False, run_config=run_config,
        tags={"dagster/asset_partition_range_start": f"{first:%Y-%m-%d}",
              "dagster/asset_partition_range_end": f"{last:%Y-%m-%d}"})


def failure_message(result) -> str:
    return "\n".join(str(e.event_specific_data.error.cause or e.event_specific_data.error.message)
                     for e in result.all_events if e.event_type_value == "STEP_FAILURE")


def test_a_14_day_backfill_matches_the_source_samples(real_prometheus, tmp_path):
    server, series = real_prometheus
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = backfill(config(list(TRACES)), url, server.url)
    assert result.success, failure_message(result)
    assert len(result.get_asset_materialization_events()) == 3 * 14
    with MetricStore(url) as store:
        for s in series:
            stored = store.read(s.labels["instance"], "cpu")
            source = series_frame(s)
            source = source[(source.index >= FIRST) & (source.index < TODAY)]
            assert len(stored) == 14 * 288
            observed = stored[~stored["filled"]]
            assert len(observed) == len(source)  # no duplicated day boundaries, nothing lost
            assert np.allclose(observed["value"].to_numpy(), source.reindex(observed.index).to_numpy(), rtol=1e-12)


def test_prometheus_dying_mid_backfill_stores_nothing_and_a_retry_succeeds(tmp_path):
    series = loaded()[:2]
    server = start_prometheus(series)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    @dg.logger
    def outage(_init_context):
        """Kills Prometheus once the backfill reports its fifth day: a real outage, mid-run."""
        import logging

        class Kill(logging.Handler):
            def emit(self, record):
                if "day 5 of 14" in record.getMessage():
                    server.kill()

        log = logging.getLogger("shaper-test-outage")
        log.setLevel(logging.INFO)
        log.addHandler(Kill())
        return log

    try:
        started = time.monotonic()
        failed = backfill(config(list(TRACES)[:2]), url, server.url, loggers={"outage": outage})
        assert not failed.success
        message = failure_message(failed)
        assert "did not answer" in message and "nothing was stored" in message and server.url in message
        assert time.monotonic() - started < 60
        with MetricStore(url) as store:
            assert store.series() == []  # not even the series fetched before the outage

        restarted = start_prometheus(series, directory=server.directory)
        try:
            retried = backfill(config(list(TRACES)[:2]), url, restarted.url)
            assert retried.success, failure_message(retried)
            with MetricStore(url) as store:
                assert [(s.target, s.points) for s in store.series()] == [
                    ("crane-cpu_1", 14 * 288), ("crane-cpu_2", 14 * 288)]
        finally:
            restarted.stop()
    finally:
        server.stop()


def test_fetch_range_names_the_day_it_lost_the_server():
    series = loaded()[:1]
    server = start_prometheus(series)
    try:
        def kill_after_third_day(done, total):
            if done == 3:
                server.kill()

        with pytest.raises(PrometheusUnavailable) as err:
            fetch_range(PrometheusSettings(server.url, timeout_seconds=5, retries=2, backoff_seconds=0.05),
                        'shaper_test_cpu{instance="crane-cpu_1"}', FIRST, TODAY, pd.Timedelta(minutes=5),
                        on_chunk=kill_after_third_day)
        assert f"{FIRST + pd.Timedelta(days=3):%Y-%m-%d}" in str(err.value) and "3 tries" in str(err.value)
    finally:
        server.stop()


def test_nans_a_six_hour_gap_and_a_flat_line_fail_the_right_checks(tmp_path):
    day = TODAY - pd.Timedelta(days=1)
    ts = (day + pd.timedelta_range(0, periods=288, freq="5min")).as_unit("s").asi8.astype(float)
    rng = np.random.default_rng(3)
    good = 40 + 10 * np.sin(np.arange(288) / 288 * 2 * math.pi) + rng.normal(0, 1, 288)
    with_nans = good.copy()
    with_nans[::4] = np.nan
    keep = np.ones(288, dtype=bool)
    keep[100:172] = False  # six hours without a sample
    flat = good.copy()
    flat[120:200] = 37.5  # an exporter stuck on one value for almost seven hours
    cases = {"good": (ts, good), "nans": (ts, with_nans), "gap": (ts[keep], good[keep]), "flat": (ts, flat)}
    series = [LoadedSeries("shaper_test_cpu", {"instance": name, "job": "bad"}, t, v) for name, (t, v) in cases.items()]
    server = start_prometheus(series)
    try:
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        result = backfill(config(list(cases)), url, server.url, first=day, last=day)
        # Blocking checks fail the run, so nothing downstream runs on this day.
        assert not result.success
        assert "3 blocking asset checks failed" in failure_message(result)
        outcome = {(c.asset_key.path[1], c.check_name): c.passed
                   for c in (e.event_specific_data for e in result.all_events
                             if e.event_type_value == "ASSET_CHECK_EVALUATION")}
        failed = sorted(k for k, passed in outcome.items() if not passed)
        assert failed == [("flat", "no_long_flat_line"), ("gap", "gap_share_under_limit"),
                          ("nans", "gap_share_under_limit")]
        assert len(outcome) == 16
        with MetricStore(url) as store:  # stored all the same, for people to look at
            assert {s.target for s in store.series()} == set(cases)
    finally:
        server.stop()
