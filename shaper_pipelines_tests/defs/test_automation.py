"""Declarative automation, evaluated as the daemon would: new history re-fits the forecasts and
judges the day; new forecasts re-plan; new rehearsals re-fit the capacity model."""

from __future__ import annotations

import dagster as dg


def _requested(result) -> dict[str, int]:
    return {r.key.to_user_string(): r.true_subset.size for r in result.results if r.true_subset.size}


def test_new_inputs_request_the_refits_they_should(shaper_home):
    from shaper_pipelines.definitions import defs

    d = defs()
    with dg.DagsterInstance.ephemeral() as instance:
        quiet = dg.evaluate_automation_conditions(defs=d, instance=instance)
        assert quiet.total_requested == 0  # nothing changed, nothing to do

        instance.report_runless_asset_event(dg.AssetMaterialization(
            dg.AssetKey(["historical_metrics", "checkout-api", "requests"]), partition="2026-11-27"))
        landed = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=quiet.cursor)
        requested = _requested(landed)
        assert requested["demand_forecast"] == 5  # every series' forecast re-fits
        assert requested["forecast_accuracy"] == 1  # the day that landed gets judged
        assert "capacity_model" not in requested

        for series in ("checkout-api:requests", "search-api:requests"):
            instance.report_runless_asset_event(dg.AssetMaterialization("demand_forecast", partition=series))
        forecasts = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=landed.cursor)
        assert {"utilisation_forecast", "scaling_plan"} <= set(_requested(forecasts))

        instance.add_dynamic_partitions("simulation_runs", ["run-1"])
        instance.report_runless_asset_event(dg.AssetMaterialization("simulation_results", partition="run-1"))
        rehearsed = dg.evaluate_automation_conditions(defs=d, instance=instance, cursor=forecasts.cursor)
        assert "capacity_model" in _requested(rehearsed)
