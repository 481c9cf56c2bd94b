"""The daemon's work, in this process: evaluate the code location's schedules, sensors and
automation conditions at a given time with Dagster's own evaluation APIs, and execute what they
request.

``shaper run`` (the quick demo) and ``benchmarks/daily_loop.py`` (14 simulated days) use it so
that they exercise the same conditions and sensors as ``dagster-daemon``, not a hand-written
sequence beside them. Runs are executed one after another, grouped as the daemon groups its
run requests: one run per partition, and the unpartitioned assets requested on a tick together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

# The sensors that belong to the daily loop and the rehearsal collection. The alert sensors post
# to a webhook and the rehearsal triggers make real load: neither is the loop's business here.
LOOP_SENSORS = ("agent_sensor", "degraded_accuracy_sensor", "plan_apply_sensor")


@dataclass
class Run:
    label: str
    run_id: str
    success: bool
    seconds: float
    result: object = field(repr=False, default=None)


class Ticks:
    """Ticks of one code location on one instance; ``runs`` is everything executed, in order."""

    def __init__(self, definitions, instance, sensors: tuple[str, ...] = LOOP_SENSORS,
                 on_run: Callable[[Run], None] | None = None, run_config: dict | None = None):
        import dagster as dg

        self.dg = dg
        self.defs = definitions
        self.instance = instance
        self.sensors = sensors
        self.cursor = None
        self.sensor_cursors: dict[str, str | None] = {name: None for name in sensors}
        self.on_run = on_run or (lambda run: None)
        self.run_config = run_config or {}  # merged into every run's config (e.g. quieter loggers)
        self.runs: list[Run] = []

    def execute(self, label: str, fn) -> Run:
        started = time.perf_counter()
        result = fn()
        run = Run(label, result.run_id, bool(result.success), round(time.perf_counter() - started, 2), result)
        self.runs.append(run)
        self.on_run(run)
        return run

    def schedule(self, name: str, when) -> int:
        """Evaluate schedule ``name`` as its tick at ``when``; execute its run requests."""
        schedule = self.defs.resolve_schedule_def(name)
        data = schedule.evaluate_tick(self.dg.build_schedule_context(instance=self.instance,
                                                                     scheduled_execution_time=when))
        job = self.defs.resolve_job_def(schedule.job_name)
        for request in data.run_requests or []:
            self.execute(f"{job.name} [{request.partition_key}]" if request.partition_key else job.name,
                         lambda r=request: job.execute_in_process(
                             instance=self.instance, partition_key=r.partition_key, raise_on_error=False,
                             run_config={**self.run_config, **(r.run_config or {})},
                             tags={**r.tags, "dagster/schedule_name": name}))
        return len(data.run_requests or [])

    def automation(self, when) -> int:
        """Evaluate every automation condition at ``when``; execute what is requested."""
        dg = self.dg
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, evaluation_time=when,
                                                   cursor=self.cursor)
        self.cursor = result.cursor
        by_partition: dict[str | None, list] = {}
        for r in result.results:
            if not isinstance(r.key, dg.AssetKey) or r.true_subset.is_empty:
                continue
            keys = r.true_subset.expensively_compute_partition_keys() if r.true_subset.is_partitioned else [None]
            for key in keys:
                by_partition.setdefault(key, []).append(r.key)
        job = self.defs.resolve_implicit_global_asset_job_def()
        for partition, assets in sorted(by_partition.items(), key=lambda kv: str(kv[0])):
            label = ",".join(sorted(a.to_user_string() for a in assets)) + (f" [{partition}]" if partition else "")
            self.execute(label, lambda p=partition, a=assets: job.execute_in_process(
                instance=self.instance, partition_key=p, asset_selection=a, raise_on_error=False,
                run_config=self.run_config, tags={"dagster/from_automation_condition": "true"}))
        return len(by_partition)

    def sensor_tick(self) -> int:
        """Tick each loop sensor once with its cursor; execute its run requests."""
        dg = self.dg
        launched = 0
        for name in self.sensors:
            sensor = self.defs.resolve_sensor_def(name)
            # With the instance's ref, as the daemon builds it: run requests for dynamic partitions
            # the sensor adds in the same result are checked against the instance after the adds.
            context = dg.build_sensor_context(instance=self.instance, instance_ref=self.instance.get_ref(),
                                              cursor=self.sensor_cursors[name], definitions=self.defs,
                                              resources=self.defs.resources, sensor_name=name)
            data = sensor.evaluate_tick(context)
            if data.cursor is not None:
                self.sensor_cursors[name] = data.cursor
            for added in data.dynamic_partitions_requests or []:  # the daemon adds them with the requests
                self.instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
            for request in data.run_requests or []:
                if request.asset_selection or sensor.asset_selection is not None:
                    job = self.defs.resolve_implicit_global_asset_job_def()
                    selection = list(request.asset_selection or sensor.asset_selection.resolve(
                        self.defs.resolve_asset_graph()))
                else:
                    job, selection = self.defs.resolve_job_def(request.job_name or sensor.job_name), None
                label = (",".join(sorted(k.to_user_string() for k in selection)) if selection else job.name) + (
                    f" [{request.partition_key}]" if request.partition_key else "")
                tags = {**request.tags, "dagster/sensor_name": name,
                        **({"dagster/run_key": request.run_key} if request.run_key else {})}
                self.execute(label, lambda j=job, r=request, s=selection, t=tags: j.execute_in_process(
                    instance=self.instance, partition_key=r.partition_key, asset_selection=s,
                    run_config={**self.run_config, **(r.run_config or {})}, raise_on_error=False, tags=t))
                launched += 1
        return launched

    def settle(self, when, *, step_seconds: float = 30, max_ticks: int = 20, clock=None) -> int:
        """Tick (automation, then the sensors) every ``step_seconds`` from ``when`` until a tick asks
        for nothing; returns how many ticks that took. ``clock`` is set to each tick's time."""
        import pandas as pd

        for tick in range(1, max_ticks + 1):
            at = pd.Timestamp(when) + pd.Timedelta(seconds=step_seconds * tick)
            if clock is not None:
                clock(at)
            if self.automation(at) + self.sensor_tick() == 0:
                return tick
        raise RuntimeError(f"still requesting runs after {max_ticks} ticks from {when}")
