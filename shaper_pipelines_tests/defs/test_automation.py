"""Declarative automation, evaluated as the daemon would: new history re-fits the forecasts and
judges the day; new forecasts re-plan; new rehearsals re-fit the capacity model."""

from __future__ import annotations

import dagster as dg


def _requested(result) -> dict[str, int]:
    return {r.key.to_user_string(): r.true_subset.size for r in result.results if r.true_subset.size}


def _materialise_everything(instance, d) -> None:
    """Every asset of the loop exists, as after a deployment's first backfill and ticks."""
    for key in ("business_calendar", "capacity_model", "utilisation_forecast", "scaling_plan", "prometheus_export"):
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    for series in d.resolve_assets_def("demand_forecast").partitions_def.get_partition_keys():
        instance.report_runless_asset_event(dg.AssetMaterialization("demand_forecast", partition=series))


def test_a_new_deployment_makes_what_is_missing_once(shaper_home):
    from shaper_pipelines.definitions import defs

    d = defs()
    with dg.DagsterInstance.ephemeral() as instance:
        first = _requested(dg.evaluate_automation_conditions(defs=d, instance=instance))
        # The calendar and the capacity model have no missing inputs; forecasts wait for the
        # calendar; nothing judges days that were never forecast.
        assert set(first) == {"business_calendar", "capacity_model"}


def test_new_inputs_request_the_refits_they_should(shaper_home):
    from shaper_pipelines.definitions import defs

    d = defs()
    with dg.DagsterInstance.ephemeral() as instance:
        _materialise_everything(instance, d)
        quiet = dg.evaluate_automation_conditions(defs=d, instance=instance)
        quiet = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=quiet.cursor)
        assert quiet.total_requested == 0  # nothing changed, nothing to do

        for t, m in (("checkout-api", "requests"), ("checkout-api", "cpu")):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                dg.AssetKey(["historical_metrics", t, m]), partition="2026-11-27"))
        landed = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=quiet.cursor)
        requested = _requested(landed)
        assert requested == {"demand_forecast": 5, "forecast_accuracy": 1}  # every series re-fits, the day is judged
        again = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=landed.cursor)
        assert again.total_requested == 0  # requested once, not on every tick

        for series in ("checkout-api:requests", "search-api:requests"):
            instance.report_runless_asset_event(dg.AssetMaterialization("demand_forecast", partition=series))
        forecasts = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=again.cursor)
        assert _requested(forecasts) == {"utilisation_forecast": 1, "scaling_plan": 1, "prometheus_export": 1}

        instance.report_runless_asset_event(dg.AssetMaterialization("forecast_accuracy", partition="2026-11-27"))
        instance.report_runless_asset_event(dg.AssetMaterialization("demand_forecast",
                                                                    partition="checkout-api:requests"))
        judged = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=forecasts.cursor)
        assert "forecast_accuracy" not in _requested(judged)  # a new forecast does not re-judge a day

        instance.add_dynamic_partitions("simulation_runs", ["run-1"])
        instance.report_runless_asset_event(dg.AssetMaterialization("simulation_results", partition="run-1"))
        rehearsed = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=judged.cursor)
        assert "capacity_model" in _requested(rehearsed)
