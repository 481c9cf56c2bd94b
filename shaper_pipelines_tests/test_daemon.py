"""The daily loop under the real ``dagster-daemon``, on PostgreSQL: one new day of history and the
daemon alone does the rest.

The instance is prepared in-process the way ``shaper run`` would leave it (14 days of history, the
business calendar, one forecast per series, one plan and export), then the daemon is started on the
project's ``workspace.yaml``, with Dagster's storage and shaper's store in one fresh PostgreSQL
database. Once every sensor of the loop has evaluated once (the first evaluation of a declarative
condition only records where it stands), yesterday's history partition lands, and the test watches
what the daemon launches: one forecast per series and the day's accuracy (shaper_automation, as
separate runs), one run of the utilisation forecast, the plan and the export once the forecasts are
done (shaper_automation again), one dry-run apply of that plan (plan_apply_sensor), and no re-fit
from degraded_accuracy_sensor for a series already re-fitted on that day. On start, before the new
day, the daemon may apply the prepared plan once (an asset sensor's first tick takes the newest
materialisation) and must do nothing else.

About three minutes on two cores: the runs are subprocesses that each load the code location, the
sensors tick every 5 s here (SHAPER_SENSOR_INTERVAL_SECONDS; 30 by default), and the test waits
15 s of quiet at the end.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from shaper_pipelines_tests.services.processes import end_process

PROJECT = Path(__file__).resolve().parents[1]
DAEMON = Path(sys.executable).parent / "dagster-daemon"
FAST_MODELS = "seasonal_naive_day,seasonal_naive_week,daily_profile"
HISTORY_DAYS = 14
SENSOR_INTERVAL = 5  # SHAPER_SENSOR_INTERVAL_SECONDS: the loop's sensors every 5 s, not 30, to keep the test short
QUIET_SECONDS = 15  # no new run for this long after the last one ended (three intervals): the daemon is done
LOOP_DEADLINE = 420  # seconds from the new partition to the end of the quiet period, at most (a loaded CI)
STARTUP_DEADLINE = 90  # seconds for the daemon to load the code location and tick every sensor once
# The daemon's clock-driven work: business_calendar's on_cron (05:00 UTC), history_job_schedule
# (06:15 UTC), and midnight (a new day). The test keeps clear of them, so that only the day it lands
# sets the daemon going.
CLOCK_EVENTS = ((0, 0), (5, 0), (6, 15))
CLEAR_OF_CLOCK = pd.Timedelta(minutes=6)  # longer than the test takes
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
SENSORS = ("shaper_automation", "plan_apply_sensor", "degraded_accuracy_sensor")


def _keep_clear_of_the_clock() -> None:
    now = pd.Timestamp.now(tz="UTC")
    for hour, minute in CLOCK_EVENTS:
        for day in (now.floor("D"), now.floor("D") + pd.Timedelta(days=1)):
            at = day + pd.Timedelta(hours=hour, minutes=minute)
            if now - pd.Timedelta(minutes=1) <= at <= now + CLEAR_OF_CLOCK:
                wait = (at + pd.Timedelta(seconds=90) - now).total_seconds()
                print(f"waiting {wait:.0f}s for {at:%H:%M} UTC to pass (the daemon acts on its own then)", flush=True)
                time.sleep(wait)
                return


def _template_run_coordinator() -> str:
    """The run queue of the project's dagster.yaml (the SQLite template), as YAML."""
    import yaml

    template = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    return yaml.safe_dump({"run_coordinator": template["run_coordinator"]}, sort_keys=False)


@pytest.fixture
def loop_env(postgres, tmp_path, monkeypatch):
    """SHAPER_* and the DAGSTER_HOME that settings derives from them: one fresh PostgreSQL
    database for Dagster's storage and shaper's store, fast forecast candidates, and no AWS (the
    apply is an offline dry run)."""
    for name in list(os.environ):
        if name.startswith(("SHAPER_", "DAGSTER_", "AWS_")):
            monkeypatch.delenv(name)
    url = postgres.create_database()
    monkeypatch.setenv("SHAPER_DATABASE_URL", url)
    monkeypatch.setenv("SHAPER_HOME", str(tmp_path / "shaper_home"))
    monkeypatch.setenv("SHAPER_FORECAST_MODELS", FAST_MODELS)
    monkeypatch.setenv("SHAPER_SENSOR_INTERVAL_SECONDS", str(SENSOR_INTERVAL))
    # search-api takes its capacity from capacity rehearsals (tests/defs/test_capacity_rehearsal.py,
    # and `shaper run`); this loop has none, so its copy of scaling.yaml pins the demo's figure.
    import yaml

    scaling = yaml.safe_load((PROJECT / "profiles_data" / "scaling.yaml").read_text())
    for target in scaling["targets"]:
        target.setdefault("capacity_per_instance", 60)
    (tmp_path / "scaling.yaml").write_text(yaml.safe_dump(scaling))
    monkeypatch.setenv("SHAPER_SCALING_CONFIG", str(tmp_path / "scaling.yaml"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return url


def _run_in_process(definitions, instance, job: str, title: str, **kwargs):
    started = time.monotonic()
    result = definitions.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=False, run_config={**QUIET_LOGS, **kwargs.pop("run_config", {})}, **kwargs)
    print(f"  prepared {title}: {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:.1f}s",
          flush=True)
    assert result.success, f"{title} failed"
    return result


def _sensor_ticks(instance) -> dict[str, int]:
    """Finished evaluations so far, per sensor of interest (the daemon stores a state for each
    sensor it runs, default-running ones included)."""
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    done = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name in SENSORS:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20,
                                       statuses=[TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE])
            done[state.instigator_name] = len(ticks)
    return done


def _failed_ticks(instance) -> list[str]:
    """Every failed sensor tick, except a code server that did not answer in time when the same
    sensor ticked successfully afterwards. With six runs in their own processes on two cores, the
    gRPC code server can miss a tick's deadline; the daemon says so and resumes by itself. That is
    Dagster's transport on a busy machine, not a shaper sensor failing, and a later good tick proves
    it recovered."""
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    out = []
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=200)  # newest first
        for i, tick in enumerate(ticks):
            if tick.status != TickStatus.FAILURE:
                continue
            message = tick.error.message.strip() if tick.error else "failed"
            recovered = any(t.status in (TickStatus.SUCCESS, TickStatus.SKIPPED) for t in ticks[:i])
            if "DagsterUserCodeUnreachableError" in message and recovered:
                print(f"tolerated (recovered on a later tick): {state.instigator_name}: {message[:160]}", flush=True)
                continue
            out.append(f"{state.instigator_name}: {message}")
    return out


def _records(instance, exclude: set[str] = frozenset(), only: set[str] | None = None) -> list:
    return sorted((r for r in instance.get_run_records() if r.dagster_run.run_id not in exclude
                   and (only is None or r.dagster_run.run_id in only)), key=lambda r: r.create_timestamp)


def _backfills(instance) -> list[str]:
    """The automation sensor asks for several partitions at once as a backfill, whose runs the
    backfill daemon launches: "id status" of each."""
    return [f"{b.backfill_id} {b.status.value}" for b in instance.get_backfills()]


def _skips(instance, sensor: str) -> list[str]:
    from dagster._core.scheduler.instigation import InstigatorType

    out = []
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == sensor:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20)
            out.extend(f"{t.status.value}: {t.skip_reason or ', '.join(t.run_keys) or '-'}" for t in reversed(ticks))
    return out


def _kind(run) -> str:
    assets = {k.to_user_string() for k in run.asset_selection or ()}
    if run.job_name == "apply_scaling_job":
        return "apply"
    if "scaling_plan" in assets:
        return "plan"
    if assets == {"demand_forecast"}:
        return "refit" if run.tags.get("dagster/sensor_name") == "degraded_accuracy_sensor" else "forecast"
    if assets == {"forecast_accuracy"}:
        return "accuracy"
    return "other"


def _table(records, t0: float) -> str:
    rows = [("kind", "job", "assets", "partition", "launched by", "status", "created", "seconds")]
    for r in records:
        run = r.dagster_run
        assets = ",".join(sorted(k.to_user_string() for k in run.asset_selection or ())) or "-"
        seconds = f"{r.end_time - r.start_time:.1f}" if r.start_time and r.end_time else "-"
        by = run.tags.get("dagster/sensor_name", "-") + (" (backfill)" if "dagster/backfill" in run.tags else "")
        rows.append((_kind(run), run.job_name, assets, run.tags.get("dagster/partition", "-"), by, run.status.value,
                     f"+{r.create_timestamp.timestamp() - t0:.0f}s", seconds))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)


def _materialisation(instance, run_id: str) -> dict:
    event = next(e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_step_materialization)
    return event.asset_materialization.metadata


def _materialised_at(instance, run_id: str) -> float:
    return next(e.timestamp for e in instance.all_logs(run_id)
                if e.dagster_event and e.dagster_event.is_step_materialization)


def _leftover_processes(token: str) -> list[str]:
    """Processes that inherited the daemon's marker variable (the daemon, its code server and the
    runs they launch), wherever they were re-parented to."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("SHAPER_TEST_DAEMON_TOKEN") == token:
                found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.timeout(1500)  # about 6 minutes; up to 10 more to keep clear of the clock
def test_the_daemon_runs_the_daily_loop_for_a_new_day(loop_env, tmp_path):
    import dagster as dg
    import yaml

    from shaper_pipelines.config import load_scaling
    from shaper_pipelines.definitions import defs
    from shaper_pipelines.defs.forecast.assets import SERIES
    from shaper_pipelines.resources.database import DatabaseResource
    from shaper_pipelines.settings import dagster_env

    _keep_clear_of_the_clock()
    began = time.monotonic()
    env = dagster_env()  # writes SHAPER_HOME/dagster_home/dagster.yaml from SHAPER_DATABASE_URL
    config = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    written = config.read_text()
    assert "postgres_db:" in written and loop_env.rsplit("/", 1)[1] in written
    # The run queue's limit is the template's on PostgreSQL too (Dagster's default would be 10).
    queue = _template_run_coordinator()

    today = pd.Timestamp.now(tz="UTC").floor("D")
    yesterday = (today - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    first = (today - pd.Timedelta(days=HISTORY_DAYS + 1)).strftime("%Y-%m-%d")
    before = (today - pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    definitions = defs()
    daemon = None
    token = uuid.uuid4().hex
    log = tmp_path / "daemon.log"
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
        assert (type(instance.run_coordinator).__name__, limit) == (
            "QueuedRunCoordinator", yaml.safe_load(queue)["run_coordinator"]["config"]["max_concurrent_runs"])
        # -- the instance as yesterday's morning found it ----------------------------------------
        print(f"\npreparing the instance (DAGSTER_HOME={env['DAGSTER_HOME']})", flush=True)
        _run_in_process(definitions, instance, "history_job", f"history {first} .. {before}",
                        tags={"dagster/asset_partition_range_start": first,
                              "dagster/asset_partition_range_end": before})
        _run_in_process(definitions, instance, "__ASSET_JOB", "business calendar",
                        asset_selection=[dg.AssetKey("business_calendar")])
        for series in SERIES:
            _run_in_process(definitions, instance, "forecast_job", f"forecast {series}", partition_key=series)
        _run_in_process(definitions, instance, "plan_job", "capacity model, utilisation forecast, plan")
        _run_in_process(definitions, instance, "prometheus_export_job", "Prometheus export")
        prepared = {r.dagster_run.run_id for r in instance.get_run_records()}
        print(f"prepared in {time.monotonic() - began:.0f}s", flush=True)

        try:
            # -- the daemon, on the project's workspace ------------------------------------------
            with log.open("w") as out:
                daemon = subprocess.Popen([str(DAEMON), "run", "-w", str(PROJECT / "workspace.yaml")], cwd=PROJECT,
                                          env={**env, "SHAPER_TEST_DAEMON_TOKEN": token}, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            started = time.monotonic()
            # A declarative condition's first evaluation only records the cursor: the new day
            # must land after it, or shaper_automation would never see it as new.
            ticks: dict[str, int] = {}
            while set(ticks) != set(SENSORS) or min(ticks.values()) < 1:
                assert daemon.poll() is None, f"dagster-daemon exited:\n{log.read_text()[-4000:]}"
                assert time.monotonic() - started < STARTUP_DEADLINE, (
                    f"sensors not evaluated in {STARTUP_DEADLINE}s: {ticks}\n{log.read_text()[-4000:]}")
                time.sleep(1.0)
                ticks = _sensor_ticks(instance)
            startup = _records(instance, prepared)
            print(f"daemon up, every sensor evaluated once, after {time.monotonic() - started:.0f}s; "
                  f"runs it launched on start: {len(startup)}", flush=True)
            if startup:
                print(_table(startup, time.time()), flush=True)

            # -- the new day: yesterday's history partition ------------------------------------
            # history_job_schedule would materialise it at 06:15 UTC; the test cannot wait for
            # that, so it runs the schedule's run (the same job and partition) itself.
            t0 = time.time()
            landed = _run_in_process(definitions, instance, "history_job", f"history {yesterday} (the new day)",
                                     partition_key=yesterday)
            seen = prepared | {landed.run_id} | {r.dagster_run.run_id for r in startup}
            print(f"history {yesterday} landed; watching the daemon", flush=True)

            # -- what the daemon does about it ---------------------------------------------------
            deadline = time.monotonic() + LOOP_DEADLINE
            last_activity, last_report = time.monotonic(), None
            while True:
                assert daemon.poll() is None, f"dagster-daemon exited:\n{log.read_text()[-4000:]}"
                records = _records(instance, seen)
                unfinished = [r for r in records if r.dagster_run.status.value not in TERMINAL]
                backfilling = [b for b in _backfills(instance) if b.endswith(" REQUESTED")]
                report = tuple((_kind(r.dagster_run), r.dagster_run.status.value) for r in records)
                if report != last_report:
                    counts: dict[str, int] = {}
                    for kind, status in report:
                        counts[f"{kind} {status}"] = counts.get(f"{kind} {status}", 0) + 1
                    print(f"  +{time.time() - t0:5.0f}s  " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                                                            or "no run yet")
                          + (f" ({len(backfilling)} backfill in progress)" if backfilling else ""), flush=True)
                    last_report, last_activity = report, time.monotonic()
                if records and not unfinished and not backfilling and time.monotonic() - last_activity >= QUIET_SECONDS:
                    break
                assert time.monotonic() < deadline, (
                    f"the daemon did not settle within {LOOP_DEADLINE}s:\n{_table(records, t0)}\n"
                    f"{log.read_text()[-4000:]}")
                time.sleep(2.0)
        finally:
            if daemon is not None:
                end_process(daemon, timeout=20, group=True)
                # The code server and any run worker got the same SIGTERM; give them time to go.
                gone_by = time.monotonic() + 30
                while (left := _leftover_processes(token)) and time.monotonic() < gone_by:
                    time.sleep(1.0)
                for line in left:  # ours: they carry the token this test gave the daemon
                    try:
                        os.kill(int(line.split(":", 1)[0]), 9)
                    except ProcessLookupError:
                        pass
                assert not left, f"processes left after stopping the daemon: {left}"

        records = _records(instance, seen)
        startup = _records(instance, only={r.dagster_run.run_id for r in startup})
        print(f"\nruns the daemon launched on start (before the new day):\n{_table(startup, t0)}"
              f"\n\nruns the daemon launched for {yesterday}:\n{_table(records, t0)}", flush=True)
        print(f"sensor ticks: {_sensor_ticks(instance)}; failed ticks: {_failed_ticks(instance)}; "
              f"backfills: {_backfills(instance)}", flush=True)
        print("degraded_accuracy_sensor said: " + " | ".join(_skips(instance, "degraded_accuracy_sensor")[-3:]),
              flush=True)
        by_kind: dict[str, list] = {}
        for r in records:
            by_kind.setdefault(_kind(r.dagster_run), []).append(r.dagster_run)

        assert not _failed_ticks(instance)
        assert all(b.endswith(("COMPLETED", "COMPLETED_SUCCESS")) for b in _backfills(instance)), _backfills(instance)
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in startup + records), \
            _table(startup + records, t0)
        # On start, at most the apply of the prepared plan (an asset sensor's first tick takes the
        # newest materialisation): nothing else, since nothing had changed yet.
        assert all(_kind(r.dagster_run) == "apply" for r in startup), _table(startup, t0)
        assert len(startup) <= 1
        assert all(r.dagster_run.tags.get("dagster/run_key", "").removeprefix("apply:") in prepared for r in startup)

        for run in by_kind.get("accuracy", []):
            meta = _materialisation(instance, run.run_id)
            print(f"accuracy of {run.tags.get('dagster/partition')}: judged {meta['judged'].value}, degraded "
                  f"{meta['degraded_series'].value}, skipped {meta['skipped'].value}", flush=True)
        forecasts = by_kind.get("forecast", [])
        assert sorted(r.tags.get("dagster/partition") for r in forecasts) == sorted(SERIES)
        assert [r.tags.get("dagster/partition") for r in by_kind.get("accuracy", [])] == [yesterday]
        assert len(by_kind.get("plan", [])) == 1
        plan_run = by_kind["plan"][0]
        assert {k.to_user_string() for k in plan_run.asset_selection} == {
            "utilisation_forecast", "scaling_plan", "prometheus_export"}
        assert len(by_kind.get("apply", [])) == 1
        apply_run = by_kind["apply"][0]
        assert apply_run.tags.get("dagster/run_key") == f"apply:{plan_run.run_id}"
        assert not by_kind.get("other"), _table(records, t0)
        # A re-fit only for a degraded series that had not been re-fitted on the day: under
        # automation every series was, so none.
        assert not by_kind.get("refit"), _table(records, t0)
        # Every forecast was stored before the plan's run was created. That is what REPLAN's
        # ~any_deps_in_progress() promises: Dagster counts a partition in progress while a run has
        # planned it and not yet materialised it (partition_status_cache's in-progress subset), so
        # a forecast run may still be recording its checks and exiting - a second, seen once in
        # four runs - when the plan is requested. The plan reads stored forecasts, so this is the
        # order that matters; the check below proves it used each series' forecast from these runs.
        plan_record = next(r for r in records if r.dagster_run.run_id == plan_run.run_id)
        created = plan_record.create_timestamp.timestamp()
        stored = {r.dagster_run.run_id: _materialised_at(instance, r.dagster_run.run_id)
                  for r in records if _kind(r.dagster_run) == "forecast"}
        assert all(t <= created for t in stored.values()), (created, stored)

        # The plan records the forecast the daemon's forecast run published for its series.
        published = {}
        for run in forecasts:
            meta = _materialisation(instance, run.run_id)
            published[run.tags["dagster/partition"]] = (meta["version"].value, meta["forecast_id"].value)
        database = DatabaseResource(url=loop_env)
        with database.scaling_store() as plans:
            for target in load_scaling().targets:
                header, _ = plans.latest_plan(target.name)
                version, forecast_id = published[f"{target.history.target}:{target.history.metric}"]
                print(f"plan {header['plan_id']} of {target.name}: {header['model']}", flush=True)
                assert header["produced_by"] == f"dagster run {plan_run.run_id}"
                assert f"version {version}, forecast_id {forecast_id}" in header["model"]
    print(f"whole test: {time.monotonic() - began:.0f}s", flush=True)
