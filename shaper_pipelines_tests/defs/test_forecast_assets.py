"""demand_forecast as Dagster materialises it: from the stored history of one series, with its
checks; a forecast that loses to seasonal naive is replaced by it, and the check says so."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from shaper_pipelines_tests.conftest import REAL_DATA


def _store_history(url: str, target: str, metric: str, series: pd.Series) -> None:
    from shaper_pipelines.store.metric_store import MetricStore, Window

    start, end = series.index[0], series.index[-1] + pd.Timedelta(minutes=5)
    with MetricStore(url) as store:
        store.replace_windows([Window(target, metric, start, end, series, np.zeros(len(series), dtype=bool), "test")])


def _ending_yesterday(values: np.ndarray) -> pd.Series:
    end = pd.Timestamp.now(tz="UTC").floor("D")
    index = pd.date_range(end=end - pd.Timedelta(minutes=5), periods=len(values), freq="5min", tz="UTC")
    return pd.Series(values, index=index, name="value")


def _materialise(url: str, partition: str, models: list[str]):
    from shaper_pipelines.defs.calendar.assets import business_calendar
    from shaper_pipelines.defs.forecast.assets import demand_forecast
    from shaper_pipelines.resources.database import DatabaseResource

    instance = dg.DagsterInstance.ephemeral()
    resources = {"database": DatabaseResource(url=url)}
    assert dg.materialize([business_calendar], instance=instance, resources=resources).success
    return dg.materialize([demand_forecast, business_calendar.to_source_asset()], instance=instance,
                          resources=resources, partition_key=partition, raise_on_error=False,
                          run_config={"ops": {"demand_forecast": {"config": {"models": models, "horizon_hours": 24}}}})


def _checks(result) -> dict:
    return {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_a_real_trace_is_forecast_with_passing_checks(store_url):
    from shaper_pipelines.lib.history import load_history

    series, _ = load_history(REAL_DATA / "crane" / "cpu_2.csv", 300)
    history = _ending_yesterday(series.to_numpy())
    _store_history(store_url, "checkout-api", "cpu", history)
    asked = pd.Timestamp.now(tz="UTC")
    result = _materialise(store_url, "checkout-api:cpu", [])
    done = pd.Timestamp.now(tz="UTC")
    assert result.success
    checks = _checks(result)
    assert checks["beats_seasonal_naive"].passed and checks["forecast_is_sane"].passed
    meta = result.asset_materializations_for_node("demand_forecast")[0].metadata
    assert meta["backtest_mae_vs_seasonal_naive"].value < 1
    # 24 h after the forecast's now (taken between asked and done), from the history's end: the
    # hours between the last sample and now come on top, in whole 5-minute steps.
    end = history.index[-1] + pd.Timedelta(minutes=5)
    steps = [-(-(t + pd.Timedelta(hours=24) - end) // pd.Timedelta(minutes=5)) for t in (asked, done)]
    assert steps[0] <= meta["horizon_steps"].value <= steps[1]
    assert "prophet" in meta["backtest_mae"].value  # Prophet competed
    assert meta["plot"].value.startswith("![forecast of checkout-api/cpu](data:image/png;base64,")


def test_a_forecast_that_loses_to_seasonal_naive_is_replaced_and_flagged(store_url):
    # Steady growth on a daily cycle: yesterday lags the trend by a day, a week's median by half a week.
    days = np.arange(10 * 288) / 288
    growing = 100 + 50 * days + 20 * np.sin(2 * np.pi * days)
    _store_history(store_url, "search-api", "requests", _ending_yesterday(growing))
    asked = pd.Timestamp.now(tz="UTC")  # the forecast's "now" is at or after this
    result = _materialise(store_url, "search-api:requests", ["daily_profile"])
    assert result.success  # a warning: plans go on without the forecast
    check = _checks(result)["beats_seasonal_naive"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    meta = result.asset_materializations_for_node("demand_forecast")[0].metadata
    assert meta["model"].value == "seasonal_naive_day (fallback)"
    value = result.output_for_node("demand_forecast")
    # 24 h after the forecast's now, to within its last 5-minute step
    assert value["beats_naive"] is False and value["frame"]["timestamp"].iloc[-1] >= asked + \
        pd.Timedelta(hours=24) - pd.Timedelta(minutes=5)
    assert value["model"] == "seasonal_naive_day" and value["mase"] == 1.0  # what was published, scored as such
    assert value["rejected"]["mase"] >= 1  # what the candidates managed: no better than yesterday


def test_capacity_model_measures_targets_without_a_configured_capacity(store_url, tmp_path, monkeypatch):
    """An HTTP rehearsal's samples as the agent records them (offered rate, achieved rate per
    second) for an instance that saturates at 240 req/s."""
    import yaml

    from shaper_pipelines.defs.plan.capacity import capacity_model
    from shaper_pipelines.resources.database import DatabaseResource
    from shaper_pipelines.store.simulation_store import Dispatch, SimulationStore

    targets = [
        {"name": "measured", "kind": "ecs", "resource": "service/prod/search-api",
         "history": {"target": "search-api", "metric": "requests"}, "min_capacity": 1, "max_capacity": 10},
        {"name": "configured", "kind": "asg", "resource": "checkout-api-asg", "capacity_per_instance": 25,
         "history": {"target": "checkout-api", "metric": "requests"}, "min_capacity": 1, "max_capacity": 10},
    ]
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump({"targets": targets}))
    monkeypatch.setenv("SHAPER_SCALING_CONFIG", str(path))
    rng = np.random.default_rng(2)
    offered = np.linspace(5, 400, 300)
    achieved = np.minimum(offered, 240) * (1 + 0.03 * rng.standard_normal(len(offered)))
    with SimulationStore(store_url) as sims:
        sims.record_dispatches([Dispatch("run-1", "http-ramp", 1, "http://127.0.0.1:1", "network_io", 1.0)], "test")
        sims.record_result("run-1", "finished", "", [{"t": i, "target": o, "achieved": a}
                                                     for i, (o, a) in enumerate(zip(offered, achieved))])
    result = dg.materialize([capacity_model], resources={"database": DatabaseResource(url=store_url)},
                            selection=[capacity_model.key])
    assert result.success
    frame = result.output_for_node("capacity_model").set_index("target")
    assert frame.loc["measured", "capacity_per_instance"] == pytest.approx(240, rel=0.06)
    assert frame.loc["measured", "source"].startswith("HTTP rehearsals: saturates at")
    assert frame.loc["configured", "capacity_per_instance"] == 25
    assert frame.loc["configured", "source"] == "configured in scaling.yaml"


def _judge(store_url, day: pd.Timestamp, forecast_values: np.ndarray, actual: np.ndarray, yesterday: np.ndarray):
    """History for the day before and the day, one forecast issued for the day, and
    forecast_accuracy materialised for it."""
    from shaper_pipelines.defs.forecast.accuracy import forecast_accuracy
    from shaper_pipelines.resources.database import DatabaseResource
    from shaper_pipelines.store.forecast_store import ForecastStore

    index = pd.date_range(day - pd.Timedelta(days=1), periods=2 * 288, freq="5min", tz="UTC")
    _store_history(store_url, "checkout-api", "requests",
                   pd.Series(np.concatenate([yesterday, actual]), index=index, name="value"))
    frame = pd.DataFrame({"timestamp": index[288:], "yhat": forecast_values, "yhat_lower": forecast_values - 5,
                          "yhat_upper": forecast_values + 5, "p90": forecast_values + 4})
    with ForecastStore(store_url) as forecasts:
        fid = forecasts.save("checkout-api", "requests", frame, model="daily_profile", version="abc123",
                             backtest_mase=0.6, beats_naive=True, produced_by="test")
    result = dg.materialize([forecast_accuracy], resources={"database": DatabaseResource(url=store_url)},
                            partition_key=f"{day:%Y-%m-%d}", raise_on_error=False)
    return result, fid


def test_forecast_accuracy_judges_the_forecast_issued_for_the_day(store_url):
    day = pd.Timestamp("2026-11-20", tz="UTC")
    rng = np.random.default_rng(1)
    shape = 100 + 50 * np.sin(np.linspace(0, 2 * np.pi, 288))
    actual = shape + rng.normal(0, 2, 288)
    yesterday = shape + rng.normal(0, 8, 288)
    result, fid = _judge(store_url, day, shape, actual, yesterday)
    assert result.success
    meta = result.asset_materializations_for_node("forecast_accuracy")[0].metadata
    assert meta["judged"].value == 1 and "| checkout-api:requests | daily_profile | abc123 |" in meta["scores"].value
    checks = _checks(result)
    assert checks["accuracy_not_degraded"].passed and checks["no_worse_than_seasonal_naive"].passed


def test_a_forecast_worse_than_yesterday_fails_the_check_and_asks_for_a_refit(store_url):
    from shaper_pipelines.defs.forecast.accuracy import refit_requests

    day = pd.Timestamp("2026-11-21", tz="UTC")
    shape = 100 + 50 * np.sin(np.linspace(0, 2 * np.pi, 288))
    result, _ = _judge(store_url, day, shape[::-1].copy(), shape, shape)  # the day mirrored: far off
    checks = _checks(result)
    assert not checks["no_worse_than_seasonal_naive"].passed
    assert checks["no_worse_than_seasonal_naive"].severity == dg.AssetCheckSeverity.ERROR
    assert not checks["accuracy_not_degraded"].passed
    assert result.success  # a day judged badly is a finding, not a failed run
    # degraded_accuracy_sensor turns the degraded series into a re-fit of its forecast partition.
    mat = result.asset_materializations_for_node("forecast_accuracy")[0]
    requests = refit_requests(mat)
    assert [r.partition_key for r in requests] == ["checkout-api:requests"]
