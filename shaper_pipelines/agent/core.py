"""The load agent's rules, apart from how it is served: runs over real load generators, with the
safety a weapon needs.

- a run's target must be on the allow-list (403 outside it);
- hard caps on cores, memory, disk rate, duration: a run or an intensity change that would
  exceed one is refused (422), never silently clipped; every cap computable from the parsed
  profile (its duration) is checked before the profile is rendered, so a 400-day profile costs
  nothing to refuse;
- a dead-man timer stops all load when the controller has not spoken for ``dead_man`` seconds.
  Only the controller's acts renew it (starting, adjusting or stopping a run, ``/heartbeat``):
  reads and ``/metrics`` scrapes do not, or a Prometheus scraping with the token would keep an
  abandoned run alive forever;
- ``stop_all`` and ``close`` stop everything within two seconds, children included; ``close``
  also removes the work directory when the agent made it.

A network run may also read its target's own ``/metrics`` every second (``monitor``; its URL's
host must be on the allow-list too) and end itself once a latency or error objective has been
broken for long enough (``stop_when``): see ``watch``.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from shaper_pipelines.agent.watch import CLIENT_FIELDS, SERVICE_FIELDS, Invalid, Watch, parse_monitor, parse_stop_when
from shaper_pipelines.lib.profile import ProfileError, parse_profile, render


@dataclass(frozen=True)
class Limits:
    max_cores: float = 1.0
    max_memory_mib: float = 512.0
    max_disk_mib_per_s: float = 50.0
    max_disk_quota_mib: float = 256.0
    max_rps: float = 2000.0
    locust_processes: int = 1
    locust_remote_workers: int = 0
    locust_master_bind: str = "127.0.0.1"
    locust_master_port: int = 5557
    max_duration_s: float = 3600.0
    dead_man_s: float = 60.0
    idle_exit_s: float | None = None  # exit after this long with no run and no controller act


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Run:
    id: str
    profile_id: str
    resource: str
    target: str
    intensity: float
    values: np.ndarray  # per second, before intensity
    unit: str
    started: float = field(default_factory=time.time)
    # Epoch seconds the load clock started (second t covers [load_started + t, +1)), once the
    # generator is up; Locust takes a second or two to start, so it is later than ``started``. What
    # a reader of Prometheus needs to query exactly the run's seconds.
    load_started: float | None = None
    status: str = "running"
    reason: str = ""
    samples: list = field(default_factory=list)  # dicts: t, target, achieved, *CLIENT_FIELDS, *SERVICE_FIELDS
    pids: list = field(default_factory=list)  # the generator's worker processes
    stop_when: dict | None = None  # as parse_stop_when keeps it, defaults filled in
    monitor: dict | None = None  # as parse_monitor keeps it
    ended_by: dict | None = None  # set when the run stopped itself (stop_when)
    arrivals: str = "even"  # network_io: how Locust spaces requests (see locustfile)
    watch: Watch | None = field(default=None, repr=False)
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    def view(self) -> dict:
        samples = [dict(s) for s in list(self.samples)]
        current = samples[-1] if samples else new_sample(0, 0.0, 0.0)
        watch = self.watch
        return {"id": self.id, "profile_id": self.profile_id, "resource": self.resource, "target": self.target,
                "intensity": self.intensity, "status": self.status, "reason": self.reason, "unit": self.unit,
                "started": self.started, "load_started": self.load_started, "duration_s": len(self.values), "elapsed_s": len(samples),
                "current": current, "pids": self.pids, "stop_when": self.stop_when, "monitor": self.monitor,
                "ended_by": self.ended_by, "arrivals": self.arrivals, "monitor_failures": watch.failures if watch else 0,
                "monitor_missing": watch.missing if watch else [], "samples": samples}


def new_sample(t: int, target: float, achieved: float, client: dict | None = None) -> dict:
    """One second of a run: what was offered and achieved, the client's view of it (network runs)
    and the service's (runs with a monitor); None where not measured."""
    return {"t": t, "target": target, "achieved": achieved,
            **{k: (client or {}).get(k) for k in CLIENT_FIELDS}, **dict.fromkeys(SERVICE_FIELDS)}


def _intensity(value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 100:
        raise Refused(422, "intensity must be a number from 0 to 100")
    return float(value)


class Agent:
    def __init__(self, token: str, allow: list[str], limits: Limits, work_dir: Path, *,
                 owns_work_dir: bool | None = None):
        if not token:
            raise ValueError("an agent needs a token (--token or SHAPER_AGENT_TOKEN)")
        self.token, self.allow, self.limits, self.work_dir = token, set(allow), limits, work_dir
        # Removed on a clean stop when this agent made it (a temp dir, or a --work-dir that did not
        # exist): a stopped agent leaves nothing behind in someone's temp directory.
        self.owns_work_dir = (not work_dir.exists()) if owns_work_dir is None else owns_work_dir
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()
        self.last_heard = time.monotonic()
        self._closing = threading.Event()
        self._closed = threading.Lock()
        threading.Thread(target=self._dead_man, daemon=True, name="dead-man").start()

    # -- safety ---------------------------------------------------------------------------------

    def heard_from_controller(self) -> None:
        """Renew the dead-man timer: only the controller's acts call this, never reads."""
        self.last_heard = time.monotonic()

    def _host_allowed(self, target: str) -> bool:
        host = urlparse(target).hostname if "://" in target else target
        return host in self.allow

    def _duration_within_cap(self, seconds: float) -> None:
        if seconds > self.limits.max_duration_s:
            raise Refused(422, f"duration {seconds:,.0f}s is above the cap of {self.limits.max_duration_s:,.0f}s")

    def _peak_within_caps(self, resource: str, peak: float) -> None:
        caps = {"cpu": (1.0, "share of the allowed cores"), "memory": (self.limits.max_memory_mib, "MiB"),
                "disk_io": (self.limits.max_disk_mib_per_s, "MiB/s"), "network_io": (self.limits.max_rps, "req/s")}
        cap, unit = caps[resource]
        if peak > cap + 1e-9:
            raise Refused(422, f"peak {resource} of {peak:.4g} {unit} is above the cap of {cap:g} {unit}; "
                               "lower the intensity")

    def _dead_man(self) -> None:
        while not self._closing.wait(0.5):
            quiet = time.monotonic() - self.last_heard
            if quiet > self.limits.dead_man_s and self.active():
                self.stop_all(f"dead-man: no word from the controller for {self.limits.dead_man_s:g}s")
            if self.limits.idle_exit_s and quiet > self.limits.idle_exit_s and not self.active():
                self.on_idle()

    def on_idle(self) -> None:
        """Replaced by ``serve`` with a shutdown of the server."""

    # -- runs -------------------------------------------------------------------------------------

    def active(self) -> list[Run]:
        return [r for r in self.runs.values() if r.status == "running"]

    def start(self, body: dict) -> Run:
        # Cheap checks first, in the order a caller can fix them; rendering comes last, once the
        # duration is known to be within the cap (a 400-day profile is 34 million points).
        target = str(body.get("target_resource") or "localhost")
        if not self._host_allowed(target):
            raise Refused(403, f"target {target!r} is not on this agent's allow-list")
        intensity = _intensity(body.get("intensity", 1.0))
        try:
            profile = parse_profile(body.get("profile"))
        except ProfileError as exc:
            raise Refused(422, str(exc)) from None
        resource = profile.resource_type.value
        if resource == "network_io" and not urlparse(target).scheme.startswith("http"):
            raise Refused(422, "network_io load needs target_resource to be an http(s) URL on the allow-list")
        monitor, stop_when = self._watch(resource, body)
        arrivals = body.get("arrivals", "even")
        if arrivals not in ("even", "poisson"):
            raise Refused(422, f"arrivals must be 'even' or 'poisson', not {arrivals!r}")
        if arrivals != "even" and resource != "network_io":
            raise Refused(422, f"arrivals applies to network_io runs only, not to a {resource} run")
        self._duration_within_cap(float(profile.duration))
        if any(r.resource == resource for r in self.active()):
            raise Refused(409, f"a {resource} run is already active on this agent")
        try:
            values = render(profile, start=time.time(), step=1.0).values
        except ProfileError as exc:
            raise Refused(422, str(exc)) from None
        self._peak_within_caps(resource, float(values.max(initial=0.0)) * intensity)
        with self.lock:
            if any(r.resource == resource for r in self.active()):
                raise Refused(409, f"a {resource} run is already active on this agent")
            run = Run(uuid.uuid4().hex[:12], profile.profile_id, resource, target, intensity, values, profile.unit,
                      stop_when=stop_when, monitor=monitor, arrivals=arrivals)
            self.runs[run.id] = run
        run.thread = threading.Thread(target=self._drive, args=(run,), daemon=True, name=f"run-{run.id}")
        run.thread.start()
        return run

    def _watch(self, resource: str, body: dict) -> tuple[dict | None, dict | None]:
        """The run's monitor and stop_when, checked: 422 when malformed or on a run that is not
        network_io (only HTTP load has latencies and errors to judge), 403 when the metrics URL's
        host is not on the allow-list."""
        raw_monitor, raw_stop = body.get("monitor"), body.get("stop_when")
        for name, raw in (("stop_when", raw_stop), ("monitor", raw_monitor)):
            if raw is not None and resource != "network_io":
                raise Refused(422, f"{name} applies to network_io runs only, not to a {resource} run")
        try:
            monitor = parse_monitor(raw_monitor)
            stop_when = parse_stop_when(raw_stop, monitor)
        except Invalid as exc:
            raise Refused(422, str(exc)) from None
        if monitor is not None and not self._host_allowed(monitor["metrics_url"]):
            raise Refused(403, f"monitor.metrics_url {monitor['metrics_url']!r} is not on this agent's allow-list")
        return monitor, stop_when

    def adjust(self, run_id: str, body: dict) -> Run:
        run = self._get(run_id)
        intensity = _intensity(body.get("intensity"))
        remaining = run.values[len(run.samples):]
        self._peak_within_caps(run.resource, float(remaining.max(initial=0.0)) * intensity)
        run.intensity = intensity
        return run

    def stop(self, run_id: str, reason: str = "stopped on request") -> Run:
        run = self._get(run_id)
        if run.status == "running":
            run.reason = reason
            run.status = "stopped"
            run.stop_event.set()
        if run.thread:
            run.thread.join(timeout=2)
        return run

    def stop_all(self, reason: str = "kill switch") -> list[Run]:
        runs = self.active()
        for r in runs:
            r.reason, r.status = reason, "stopped"
            r.stop_event.set()
        deadline = time.monotonic() + 2
        for r in runs:
            if r.thread:
                r.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return runs

    def close(self) -> None:
        """Stop all load and give back the work directory; safe to call twice, from any thread."""
        with self._closed:
            if self._closing.is_set():
                return
            self.stop_all("agent shutting down")
            self._closing.set()
            if self.owns_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def _get(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise Refused(404, f"no run {run_id!r}")
        return run

    def _generator(self, run: Run):
        from shaper_pipelines.agent import generators

        if run.resource == "cpu":
            return generators.CpuGenerator(self.limits.max_cores)
        if run.resource == "memory":
            return generators.MemoryGenerator(self.limits.max_memory_mib)
        if run.resource == "network_io":
            lim = self.limits
            return generators.NetworkGenerator(run.target, self.work_dir / run.id, lim.locust_processes,
                                               lim.locust_remote_workers, lim.locust_master_bind,
                                               lim.locust_master_port, run.arrivals)
        return generators.DiskGenerator(self.work_dir / run.id, self.limits.max_disk_quota_mib)

    @staticmethod
    def _stop_itself(run: Run, ended_by: dict, reason: str) -> None:
        """The objective was broken long enough: the run ends, and says "stopped" once its load is
        gone (``_drive``), so a caller that sees the status may start the next one at once."""
        if run.status == "running" and not run.stop_event.is_set():
            run.ended_by, run.reason = ended_by, reason
            run.stop_event.set()

    def _drive(self, run: Run) -> None:
        """Follow the profile second by second; whatever happens, the generator is stopped."""
        generator, outcome = None, None
        watch = Watch(run.samples, run.monitor, run.stop_when, lambda ended, why: self._stop_itself(run, ended, why))
        try:
            generator = self._generator(run)
            run.pids = list(generator.pids)
            begin = time.monotonic()
            run.load_started = time.time()
            run.watch = watch
            watch.start(begin)
            for second, value in enumerate(run.values):
                target = float(value) * run.intensity
                generator.set_target(target)
                if run.stop_event.wait(max(0.0, begin + second + 1 - time.monotonic())):
                    break
                achieved = float(generator.tick())
                watch.add(new_sample(second, target, achieved, getattr(generator, "last_window", None)))
            else:
                outcome = ("finished", run.reason)
        except Exception as exc:  # a generator that fails is a failed run, explained, not a dead agent
            outcome = ("failed", f"{type(exc).__name__}: {exc}")
        finally:
            watch.close()  # before anything else: no self-stop after this
            if generator is not None:
                generator.stop()
            # Said only once the load is gone and its files removed: "finished" (and "stopped" by
            # itself, even in its last second) means cleaned up.
            if run.ended_by is not None and run.status == "running" and (outcome is None or outcome[0] == "finished"):
                run.status = "stopped"
            elif outcome is not None:
                run.status, run.reason = outcome
