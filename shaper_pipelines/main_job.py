"""``shaper run``: the main job, end to end, against the project's Dagster instance so that every
run and materialisation shows up in the UI afterwards.

It is a sequence of Dagster runs rather than one job because its stages are partitioned
differently (profiles are not partitioned, history is per day); each stage is the job a user
would launch from the UI or a schedule.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

HISTORY_DAYS = 14
GENTLE = "gentle-cpu-rehearsal"
# The run's own event log is in the UI; the terminal gets warnings and the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Stage:
    title: str
    job: str
    tags: dict
    config: dict | None = None


def stages(today) -> list[Stage]:
    import pandas as pd

    last = (pd.Timestamp(today).floor("D") - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    first = (pd.Timestamp(today).floor("D") - pd.Timedelta(days=HISTORY_DAYS)).strftime("%Y-%m-%d")
    return [
        Stage("predefined load profiles", "predefined_profiles_job", {}),
        Stage(f"history {first} .. {last} (a {HISTORY_DAYS}-day backfill in one run)", "history_job",
              {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}),
        Stage("business calendar and derived profiles", "derived_profiles_job", {}),
        Stage(f"a gentle local simulation of {GENTLE} on the local agent", "load_simulation_job", {},
              {"ops": {"select_profiles": {"config": {"profile_ids": [GENTLE], "intensity": 1.0}}}}),
        # The feedback loop on a day that has happened: forecast it from the days before, then judge.
        *[Stage(f"demand forecast of {key} as of {last}", "forecast_job", {"dagster/partition": key},
                {"ops": {"demand_forecast": {"config": {"as_of": last}}}}) for key in _series()],
        Stage(f"forecast accuracy on {last}", "accuracy_job", {"dagster/partition": last}),
        *[Stage(f"demand forecast of {key}", "forecast_job", {"dagster/partition": key}) for key in _series()],
        Stage("capacity model, utilisation forecast and scaling plan", "plan_job", {}),
        Stage("apply the scaling plans (dry run: records what would be done, changes nothing)",
              "apply_scaling_job", {}, {"ops": {"apply_scaling_plans": {"config": {"dry_run": True}}}}),
        Stage("export predictions for Prometheus", "prometheus_export_job", {}),
    ]


def _series() -> list[str]:
    from shaper_pipelines.defs.forecast.assets import SERIES

    return SERIES


def run_main_job() -> bool:
    from shaper_pipelines.settings import dagster_env

    # The instance is read from DAGSTER_HOME; prepare it before Dagster is imported.
    os.environ.update({k: v for k, v in dagster_env().items() if k in ("DAGSTER_HOME", "SHAPER_DATABASE_PASSWORD")})

    import dagster as dg
    import pandas as pd

    from shaper_pipelines.definitions import defs

    definitions = defs()
    ok = True
    with dg.DagsterInstance.get() as instance:
        for stage in stages(pd.Timestamp.now(tz="UTC")):
            print(f"==> {stage.title}", file=sys.stderr)
            job = definitions.resolve_job_def(stage.job)
            result = job.execute_in_process(instance=instance, tags=stage.tags, raise_on_error=False,
                                            run_config={**QUIET, **(stage.config or {})})
            print(_summary(stage, result))
            if not result.success:
                ok = False
                break
            if stage.job == "load_simulation_job":
                ok = _collect_simulations(definitions, instance)
                if not ok:
                    break
        print(f"DAGSTER_HOME={instance.root_directory}; `shaper ui` opens the UI on it")
    print(f"shaper main job: {'SUCCESS' if ok else 'FAILURE'}")
    return ok


def _collect_simulations(definitions, instance, timeout: float = 120.0) -> bool:
    """Wait for the dispatched rehearsals to end, then do what the agent sensor does on its next
    tick (here, without a running daemon): materialise simulation_results for each."""
    import time

    import dagster as dg

    sensor = definitions.resolve_sensor_def("agent_sensor")
    job = definitions.resolve_implicit_global_asset_job_def()
    deadline = time.monotonic() + timeout
    print("==> collecting simulation results (the agent sensor's work)", file=sys.stderr)
    while True:
        context = dg.build_sensor_context(instance=instance, definitions=definitions,
                                          resources=definitions.resources)
        result = sensor(context)
        if isinstance(result, dg.SensorResult) and result.run_requests:
            break
        if time.monotonic() > deadline:
            print(f"  simulations did not end within {timeout:.0f}s: {result.skip_message}")
            return False
        time.sleep(1.0)
    instance.add_dynamic_partitions("simulation_runs", [r.partition_key for r in result.run_requests])
    ok = True
    for request in result.run_requests:
        run = job.execute_in_process(instance=instance, partition_key=request.partition_key, raise_on_error=False,
                                     asset_selection=[dg.AssetKey("simulation_results")], run_config=QUIET,
                                     tags={"dagster/run_key": request.run_key})
        mat = run.get_asset_materialization_events()
        meta = mat[0].event_specific_data.materialization.metadata if mat else {}
        print(f"simulation {request.partition_key}: {meta.get('status').value if meta else 'FAILED'}"
              + (f", mean |target - achieved| {meta['mean_abs_error'].value:.3f} over {meta['seconds'].value}s"
                 if "mean_abs_error" in meta else ""))
        ok = ok and run.success
    return ok


def _rows(markdown: str, drop: tuple[str, ...] = ("|---", "![")) -> list[str]:
    """A metadata markdown block for the terminal: indented, without the rows starting with ``drop``
    (table rules and inline images, by default)."""
    return ["  " + row for row in markdown.splitlines() if not (drop and row.startswith(drop))]


def _summary(stage: Stage, result) -> str:
    lines = [f"{stage.title}: {'ok' if result.success else 'FAILED'} (run {result.run_id})"]
    materialised: dict[str, int] = {}
    details: list[str] = []  # after the counts and checks: what each materialisation says
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        name = mat.asset_key.to_user_string()
        materialised[name] = materialised.get(name, 0) + 1
        meta = mat.metadata
        for key in ("profiles", "versions_created", "series_rows"):
            if key in meta:
                lines.append(f"  {key}: {meta[key].value}")
        if "table" in meta:  # the profiles' table, printed whole
            details.extend(_rows(meta["table"].value, drop=()))
        for key in ("scores", "plan"):
            if key in meta:
                details.extend(_rows(meta[key].value))
        if "destination" in meta and "where" in meta:
            details.append(f"  exported to {meta['destination'].value}: {meta['where'].value}")
        if "model" in meta and "backtest_mae_vs_seasonal_naive" in meta:
            details.append(f"  model: {meta['model'].value}; backtest MAE "
                           f"{meta['backtest_mae_vs_seasonal_naive'].value:.3f}x seasonal naive's")
    for name, partitions in materialised.items():
        lines.append(f"  materialised {name}" + (f" ({partitions} partitions)" if partitions > 1 else ""))
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    if checks:
        failed = [c for c in checks if not c.passed]
        lines.append(f"  checks: {len(checks) - len(failed)} passed, {len(failed)} failed")
        lines.extend(f"    failed: {c.asset_key.to_user_string()} {c.check_name}" for c in failed)
    lines.extend(details)
    for event in result.all_events:
        data = getattr(event.event_specific_data, "metadata", None) or {}
        if event.event_type_value == "STEP_OUTPUT" and "what" in data:  # apply_scaling_job's actions
            lines.extend(_rows(data["what"].value))
        if event.is_failure:
            error = getattr(event.event_specific_data, "error", None)
            lines.append(f"  failed: {event.step_key}: {error.message.strip() if error else event.message}")
    return "\n".join(lines)
