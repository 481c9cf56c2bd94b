"""The daily loop as the daemon runs it, over 14 simulated days of real traces.

Three real traces (Twitter mention volumes of AAPL, GOOG and AMZN from the NAB corpus, 5-minute
steps) are loaded into a real Prometheus, shifted to end at midnight. Every simulated morning
(06:15 UTC on each of the last 14 days):

1. ``history_job_schedule`` is evaluated at that time, and the run it asks for (yesterday's
   history, read from Prometheus) is executed;
2. then, tick after tick 30 s apart, the automation conditions of every asset are evaluated at
   that simulated time (``dg.evaluate_automation_conditions`` with an explicit ``evaluation_time``,
   the daemon's own evaluation), and the loop's sensors (``degraded_accuracy_sensor``,
   ``plan_apply_sensor``) are ticked with their cursors; whatever they request is executed, one run
   per partition and one run for the unpartitioned assets requested together, as the daemon's
   run requests group them; until a tick asks for nothing.

The assets read the time from ``shaper_pipelines.lib.clock``, set to the simulated tick. Before the
first morning, 14 days of history, the business calendar and one forecast per series are made
(the state a deployment has after its first backfill); they are not counted.

Prints, and with ``--publish`` writes to the README, the runs launched per day by kind, the wall
time, and checks: no run failed; every day's accuracy judged the forecasts made the morning
before; every day's plan used that day's forecasts. ``--json PATH`` writes the raw figures
(the test reads them). Run in its own process: the settings are read when shaper is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import REAL_DATA, publish

TRACES = {"aapl": "nab/Twitter_volume_AAPL.csv", "goog": "nab/Twitter_volume_GOOG.csv",
          "amzn": "nab/Twitter_volume_AMZN.csv"}
TARGETS = {"aapl-asg": ("asg", "aapl-asg", "aapl"), "goog-svc": ("ecs", "service/prod/goog", "goog")}
# Fast candidates: the loop is what is measured here, not Prophet (benchmarks/fleet.py times that).
MODELS = "seasonal_naive_day,seasonal_naive_week,daily_profile,leveled_profile,business_profile,recent_level"
TICK_SECONDS = 30
MAX_TICKS = 20  # per day: a loop that never settles is a failure, not a hang


def _configs(home: Path, today, values: dict) -> None:
    import numpy as np
    import yaml

    start = (today - __import__("pandas").Timedelta(days=40)).strftime("%Y-%m-%d")
    (home / "metrics.yaml").write_text(yaml.safe_dump({
        "start_date": start, "step": "5m",
        "quality": {"max_gap_share": 0.1, "max_flat_steps": 36},
        "metrics": {"volume": {"query": 'shaper_sim_volume{series="$target"}', "bounds": [0, 1.0e9]}},
        "targets": {name: ["volume"] for name in TRACES},
    }))
    targets = []
    for name, (kind, resource, series) in TARGETS.items():
        # Sized so the busiest 5 minutes of the trace need about 12 instances at 0.7.
        capacity = float(np.nanpercentile(values[series], 99.9)) / (0.7 * 12)
        targets.append({"name": name, "kind": kind, "resource": resource, "region": "us-east-1",
                        "history": {"target": series, "metric": "volume"},
                        "capacity_per_instance": round(capacity, 3), "target_utilization": 0.7, "warmup": "5m",
                        "min_capacity": 1, "max_capacity": 200})
    (home / "scaling.yaml").write_text(yaml.safe_dump({"targets": targets}))


def _environment(home: Path, prometheus_url: str) -> None:
    os.environ.update({
        "SHAPER_HOME": str(home), "SHAPER_METRICS_CONFIG": str(home / "metrics.yaml"),
        "SHAPER_SCALING_CONFIG": str(home / "scaling.yaml"), "SHAPER_PROMETHEUS_URL": prometheus_url,
        "SHAPER_FORECAST_MODELS": MODELS,
    })
    for name in ("SHAPER_DATABASE_URL", "SHAPER_PUSHGATEWAY_URL", "SHAPER_AWS_ENDPOINT_URL", "SHAPER_AGENTS"):
        os.environ.pop(name, None)


def play(days: int = 14) -> dict:
    import pandas as pd

    from shaper_pipelines_tests.services.prometheus import load_trace, start_prometheus

    today = pd.Timestamp.now(tz="UTC").floor("D")
    end_at = (today - pd.Timedelta(minutes=5)).timestamp()
    loaded = [load_trace(REAL_DATA / path, metric="shaper_sim_volume", labels={"series": name}, end_at=end_at,
                         step=300) for name, path in TRACES.items()]
    with tempfile.TemporaryDirectory(prefix="shaper-loop-") as tmp:
        home = Path(tmp)
        _configs(home, today, {s.labels["series"]: s.values for s in loaded})
        server = start_prometheus(loaded)
        try:
            _environment(home, server.url)
            return _play(home, today, days)
        finally:
            server.stop()


def _play(home: Path, today, days: int) -> dict:
    import dagster as dg
    import pandas as pd

    from shaper_pipelines.definitions import defs
    from shaper_pipelines.lib import clock
    from shaper_pipelines.resources.database import DatabaseResource
    from shaper_pipelines.ticks import Ticks

    def at(when) -> None:
        clock.now = lambda: when  # every asset asks the loop's clock

    started = time.perf_counter()
    definitions = defs()
    day = "setup"
    labels: list[tuple[str, str, bool]] = []  # (day, run label, success) of every run

    def record(run) -> None:
        labels.append((day, run.label, run.success))
        print(f"  {day} {run.label:<60} {'ok' if run.success else 'FAILED'} {run.seconds:6.1f}s", file=sys.stderr)

    (home / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        ticks = Ticks(definitions, instance, sensors=("degraded_accuracy_sensor", "plan_apply_sensor"), on_run=record)
        first = today - pd.Timedelta(days=days)  # the first simulated morning loads the day before it
        # The state after a deployment's first backfill: 14 days of history and a forecast of each
        # series, made the morning before the first simulated day; then the daemon is turned on and
        # makes what is still missing (the calendar, the capacity model, a first plan). Not counted.
        setup_at = first - pd.Timedelta(days=1) + pd.Timedelta(hours=6, minutes=15)
        at(setup_at)
        history = definitions.resolve_job_def("history_job")
        backfill = {"dagster/asset_partition_range_start": (first - pd.Timedelta(days=16)).strftime("%Y-%m-%d"),
                    "dagster/asset_partition_range_end": (first - pd.Timedelta(days=2)).strftime("%Y-%m-%d")}
        ticks.execute("history backfill", lambda: history.execute_in_process(
            instance=instance, tags=backfill, raise_on_error=False))
        ticks.settle(setup_at, step_seconds=TICK_SECONDS, max_ticks=MAX_TICKS, clock=at)
        counted_from = len(labels)

        per_day = []
        for k in range(days):
            morning = first + pd.Timedelta(days=k, hours=6, minutes=15)
            day = f"{morning:%Y-%m-%d}"
            day_started = time.perf_counter()
            at(morning)
            ticks.schedule("history_job_schedule", morning)
            ticks.settle(morning, step_seconds=TICK_SECONDS, max_ticks=MAX_TICKS, clock=at)
            per_day.append({"day": day, "seconds": round(time.perf_counter() - day_started, 1),
                            **_judged_and_planned(instance, definitions, morning)})
        runs = labels[counted_from:]
        series = len(definitions.resolve_assets_def("demand_forecast").partitions_def.get_partition_keys())
        with DatabaseResource().scaling_store() as store:
            plans = {t: store.latest_plan(t)[0]["plan_id"] for t in TARGETS}
    counts = Counter(d for d, _, _ in runs)
    kinds = Counter(_kind(label) for _, label, _ in runs)
    return {
        "days": days, "series": series, "targets": len(TARGETS), "budget_per_day": series + len(TARGETS) + 4,
        "runs_per_day": [counts[d["day"]] for d in per_day], "kinds": dict(kinds),
        "failed": [(d, label) for d, label, ok in runs if not ok], "per_day": per_day,
        "wall_seconds": round(time.perf_counter() - started, 1), "latest_plans": plans,
    }


def _kind(label: str) -> str:
    if label.startswith("forecast_job"):
        return "re-fit of a degraded series"
    return label.split(" [")[0]


def _judged_and_planned(instance, definitions, morning) -> dict:
    """What the day's accuracy judged and which forecasts its plan used."""
    import dagster as dg
    import pandas as pd

    from shaper_pipelines.resources.database import DatabaseResource

    judged_day = f"{morning - pd.Timedelta(days=1):%Y-%m-%d}"
    accuracy = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("forecast_accuracy"), asset_partitions=[judged_day]), limit=1).records
    judged = accuracy[0].asset_materialization.metadata["judged"].value if accuracy else 0
    # The forecasts made this morning, by series, and the forecast ids the day's plans name.
    made = {}
    for series in definitions.resolve_assets_def("demand_forecast").partitions_def.get_partition_keys():
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("demand_forecast"), asset_partitions=[series]), limit=1).records
        if records:
            made[series] = records[0].asset_materialization.metadata["forecast_id"].value
    used = {}
    with DatabaseResource().scaling_store() as store:
        for name, (_kind_, _resource, series) in TARGETS.items():
            header, _ = store.latest_plan(name)
            used[name] = header["model"]
    from_today = all(f"forecast_id {made.get(f'{series}:volume')})" in used[name]
                     for name, (_k, _r, series) in TARGETS.items())
    return {"judged_day": judged_day, "series_judged": judged, "plans_use_todays_forecasts": from_today}


def render(result: dict) -> str:
    days = result["per_day"]
    rows = [f"| {d['day']} | {n} | {d['series_judged']} of {result['series']} | "
            f"{'yes' if d['plans_use_todays_forecasts'] else 'no'} | {d['seconds']:.0f} |"
            for d, n in zip(days, result["runs_per_day"])]
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(result["kinds"].items()))
    per_day = result["runs_per_day"]
    return "\n".join([
        f"{result['days']} simulated days of three real traces ({result['series']} series, {result['targets']} "
        "scaling targets), each morning's schedule, automation conditions and sensors evaluated at that "
        "simulated time and what they asked for executed:",
        "",
        "| morning | runs launched | accuracy of the day before | plans from this morning's forecasts | seconds |",
        "|---|---:|---|---|---:|",
        *rows,
        "",
        f"Runs per day: at most {max(per_day)} (goal: series + targets + 4 = {result['budget_per_day']}); "
        f"{len(result['failed'])} failed; runs by kind over the {result['days']} days: {kinds}. "
        f"Wall time {result['wall_seconds']:.0f} s in all, with fast forecast candidates ({MODELS}).",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--publish", action="store_true", help="write the table into the README")
    args = parser.parse_args(argv)
    result = play(args.days)
    text = render(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    if args.publish:
        publish("daily_loop", text)
    return result


if __name__ == "__main__":
    main()
