"""``shaper run``: the main job, end to end, against the project's Dagster instance so that every
run and materialisation shows up in the UI afterwards.

First what an operator does once (stages: jobs launched by hand or as backfills): the predefined
profiles, 13 days of history, the calendar and derived profiles, a gentle rehearsal, a capacity
rehearsal of a small real HTTP service started on loopback for the run (the demo stand-in for one
instance of search-api: a pool of workers doing a known amount of work per request, with its own
/metrics, so its latency rises with load), and the forecasts as they were issued yesterday morning.
The capacity rehearsal stops itself once search-api's latency objective breaks; capacity_model
fits it, and search-api's plan uses that capacity. Then the daemon's part, in this process and
through the same code (``shaper_pipelines.ticks``): the history schedule lands yesterday, and the
automation conditions and sensors do the rest - today's forecasts, yesterday judged, the
rehearsal collected, the capacity model, the plan, a dry-run apply and the export.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

HISTORY_DAYS = 14
GENTLE = "gentle-cpu-rehearsal"
# The run's own event log is in the UI; the terminal gets warnings and the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
REHEARSAL_TIMEOUT = 120.0
# The demo service: 3 workers holding 50 ms per request serve 60 req/s at most, the scale of
# search-api's instances in profiles_data/scaling.yaml; a queue of 16 past that, then 503s.
DEMO_SERVICE = {"mode": "pool", "workers": 3, "work_ms": 50.0, "queue": 16}
REHEARSED = "search-api"


@dataclass(frozen=True)
class Stage:
    title: str
    job: str
    tags: dict
    config: dict | None = None


def stages(today, service_url: str | None = None) -> list[Stage]:
    """The operator's stages; with ``service_url``, a capacity rehearsal of it for search-api."""
    import pandas as pd

    yesterday = pd.Timestamp(today).floor("D") - pd.Timedelta(days=1)
    last = (yesterday - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    first = (pd.Timestamp(today).floor("D") - pd.Timedelta(days=HISTORY_DAYS)).strftime("%Y-%m-%d")
    as_of = yesterday.strftime("%Y-%m-%d")
    return [
        Stage("predefined load profiles", "predefined_profiles_job", {}),
        Stage(f"history {first} .. {last} (a {HISTORY_DAYS - 1}-day backfill in one run)", "history_job",
              {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}),
        Stage("business calendar and derived profiles", "derived_profiles_job", {}),
        Stage(f"a gentle local simulation of {GENTLE} on the local agent", "load_simulation_job", {},
              {"ops": {"select_profiles": {"config": {"profile_ids": [GENTLE], "intensity": 1.0}}}}),
        *([Stage(f"a capacity rehearsal of {REHEARSED}'s demo service at {service_url}", "load_simulation_job", {},
                 {"ops": {"select_profiles": {"config": {"scaling_target": REHEARSED,
                                                         "http_target": f"{service_url}/work"}}}})]
          if service_url else []),
        # What yesterday's accuracy will judge: each series as it was forecast yesterday morning.
        *[Stage(f"demand forecast of {key} as of {as_of}", "forecast_job", {"dagster/partition": key},
                {"ops": {"demand_forecast": {"config": {"as_of": as_of}}}}) for key in _series()],
    ]


def _series() -> list[str]:
    from shaper_pipelines.defs.forecast.assets import SERIES

    return SERIES


def run_main_job() -> bool:
    import os

    from shaper_pipelines.settings import dagster_env

    # The instance is read from DAGSTER_HOME; prepare it before Dagster is imported.
    os.environ.update({k: v for k, v in dagster_env().items() if k in ("DAGSTER_HOME", "SHAPER_DATABASE_PASSWORD")})

    import dagster as dg
    import pandas as pd

    from shaper_pipelines.definitions import defs
    from shaper_pipelines.ticks import Ticks

    from shaper_pipelines.demo_service import start_demo_service

    definitions = defs()
    now = pd.Timestamp.now(tz="UTC")
    ok = True
    print("==> starting the demo HTTP service on loopback", file=sys.stderr)
    with start_demo_service(**DEMO_SERVICE) as service, dg.DagsterInstance.get() as instance:
        print(f"demo service: {service.url} ({DEMO_SERVICE['workers']} workers x {DEMO_SERVICE['work_ms']:g} ms, "
              f"{service.capacity_rps:g} req/s at most)")
        for stage in stages(now, service.url):
            print(f"==> {stage.title}", file=sys.stderr)
            job = definitions.resolve_job_def(stage.job)
            result = job.execute_in_process(instance=instance, tags=stage.tags, raise_on_error=False,
                                            run_config={**QUIET, **(stage.config or {})})
            print(_summary(stage.title, result))
            if not result.success:
                ok = False
                break
        if ok:
            ticks = Ticks(definitions, instance, run_config=QUIET,
                          on_run=lambda run: print(_summary(run.label, run.result)))
            ok = _rehearsals_ended(definitions)
            if ok:
                # The daemon was on before yesterday landed: what is missing is made now (the
                # rehearsals collected, the capacity model from them, and yesterday's plan from
                # yesterday's forecasts).
                print("==> the daemon's first tick: what is still missing", file=sys.stderr)
                ticks.sensor_tick()
                ticks.automation(now)
                morning = now.floor("D") + pd.Timedelta(hours=6, minutes=15)
                print("==> history_job_schedule: yesterday lands; then the automation conditions and sensors",
                      file=sys.stderr)
                ticks.schedule("history_job_schedule", morning)
                ticks.settle(now, step_seconds=30)
                ok = all(run.success for run in ticks.runs)
        print(f"DAGSTER_HOME={instance.root_directory}; `shaper ui` opens the UI on it")
    print(f"shaper main job: {'SUCCESS' if ok else 'FAILURE'}")
    return ok


def _rehearsals_ended(definitions, timeout: float = REHEARSAL_TIMEOUT) -> bool:
    """Wait until no dispatched rehearsal is still running on its agent, so the agent sensor's
    first tick collects it (the daemon would simply collect it on a later tick)."""
    database, fleet = definitions.resources["database"], definitions.resources["fleet"]
    deadline = time.monotonic() + timeout
    print("==> waiting for the rehearsal to end", file=sys.stderr)
    while True:
        with database.simulation_store() as sims:
            pending = sims.runs(status="dispatched")
        running = 0
        for run in pending:
            try:
                running += fleet.client_for(run["agent_url"]).get(run["run_key"])["status"] == "running"
            except Exception:  # unreachable or unknown: the sensor records it as failed
                pass
        if not running:
            return True
        if time.monotonic() > deadline:
            print(f"  {running} rehearsal(s) did not end within {timeout:.0f}s")
            return False
        time.sleep(1.0)


def _rows(markdown: str, drop: tuple[str, ...] = ("|---", "![")) -> list[str]:
    """A metadata markdown block for the terminal: indented, without the rows starting with ``drop``
    (table rules and inline images, by default)."""
    return ["  " + row for row in markdown.splitlines() if not (drop and row.startswith(drop))]


def _summary(title: str, result) -> str:
    lines = [f"{title}: {'ok' if result.success else 'FAILED'} (run {result.run_id})"]
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
        for key in ("scores", "capacity", "plan"):
            if key in meta:
                details.extend(_rows(meta[key].value))
        if "destination" in meta and "where" in meta:
            details.append(f"  exported to {meta['destination'].value}: {meta['where'].value}")
        if "status" in meta and "seconds" in meta:  # a collected rehearsal
            details.append(f"  simulation {mat.partition}: {meta['status'].value}"
                           + (f" ({meta['reason'].value})" if "ended_by" in meta else "")
                           + (f", mean |target - achieved| {meta['mean_abs_error'].value:.3f} over "
                              f"{meta['seconds'].value}s" if "mean_abs_error" in meta else ""))
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
