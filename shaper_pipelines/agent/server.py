"""The load agent: an HTTP control API over real load generators, with the safety a weapon needs.

- every request carries ``Authorization: Bearer <token>`` (401 without);
- a run's target must be on the allow-list (403 outside it);
- hard caps on cores, memory, disk rate, duration: a run or an intensity change that would
  exceed one is refused (422), never silently clipped;
- a dead-man timer stops all load when no authenticated request arrived for ``dead_man`` seconds;
- ``POST /stop-all`` and SIGTERM stop everything within two seconds, children included.

The standard library's threading HTTP server keeps the agent small enough to drop on any host.
"""

from __future__ import annotations

import hmac
import json
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from shaper_pipelines.lib.profile import ProfileError, parse_profile, render

MAX_BODY = 1024 * 1024


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
    idle_exit_s: float | None = None  # exit after this long with no run and no request


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
    status: str = "running"
    reason: str = ""
    samples: list = field(default_factory=list)  # (t, target, achieved)
    pids: list = field(default_factory=list)  # the generator's worker processes
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    def view(self) -> dict:
        last = self.samples[-1] if self.samples else (0, 0.0, 0.0)
        return {"id": self.id, "profile_id": self.profile_id, "resource": self.resource, "target": self.target,
                "intensity": self.intensity, "status": self.status, "reason": self.reason, "unit": self.unit,
                "started": self.started, "duration_s": len(self.values), "elapsed_s": len(self.samples),
                "current": {"t": last[0], "target": last[1], "achieved": last[2]}, "pids": self.pids,
                "samples": [{"t": t, "target": a, "achieved": b} for t, a, b in self.samples]}


class Agent:
    def __init__(self, token: str, allow: list[str], limits: Limits, work_dir: Path):
        if not token:
            raise ValueError("an agent needs a token (--token or SHAPER_AGENT_TOKEN)")
        self.token, self.allow, self.limits, self.work_dir = token, set(allow), limits, work_dir
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()
        self.last_heard = time.monotonic()
        self._closing = threading.Event()
        threading.Thread(target=self._dead_man, daemon=True).start()

    # -- safety ---------------------------------------------------------------------------------

    def authorised(self, header: str | None) -> bool:
        ok = bool(header) and header.startswith("Bearer ") and hmac.compare_digest(header[7:], self.token)
        if ok:
            self.last_heard = time.monotonic()
        return ok

    def _host_allowed(self, target: str) -> bool:
        host = urlparse(target).hostname if "://" in target else target
        return host in self.allow

    def _peak_within_caps(self, resource: str, peak: float, seconds: float) -> None:
        if seconds > self.limits.max_duration_s:
            raise Refused(422, f"duration {seconds:g}s is above the cap of {self.limits.max_duration_s:g}s")
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
        target = str(body.get("target_resource") or "localhost")
        if not self._host_allowed(target):
            raise Refused(403, f"target {target!r} is not on this agent's allow-list")
        intensity = body.get("intensity", 1.0)
        if not isinstance(intensity, (int, float)) or isinstance(intensity, bool) or not 0 <= intensity <= 100:
            raise Refused(422, "intensity must be a number from 0 to 100")
        try:
            profile = parse_profile(body.get("profile"))
            rendered = render(profile, start=time.time(), step=1.0)
        except ProfileError as exc:
            raise Refused(422, str(exc)) from None
        resource = profile.resource_type.value
        if resource == "network_io" and not urlparse(target).scheme.startswith("http"):
            raise Refused(422, "network_io load needs target_resource to be an http(s) URL on the allow-list")
        values = rendered.values
        self._peak_within_caps(resource, float(values.max(initial=0.0)) * intensity, len(values))
        with self.lock:
            if any(r.resource == resource for r in self.active()):
                raise Refused(409, f"a {resource} run is already active on this agent")
            run = Run(uuid.uuid4().hex[:12], profile.profile_id, resource, target, float(intensity), values,
                      profile.unit)
            self.runs[run.id] = run
        run.thread = threading.Thread(target=self._drive, args=(run,), daemon=True)
        run.thread.start()
        return run

    def adjust(self, run_id: str, body: dict) -> Run:
        run = self._get(run_id)
        intensity = body.get("intensity")
        if not isinstance(intensity, (int, float)) or isinstance(intensity, bool) or not 0 <= intensity <= 100:
            raise Refused(422, "intensity must be a number from 0 to 100")
        remaining = run.values[len(run.samples):]
        self._peak_within_caps(run.resource, float(remaining.max(initial=0.0)) * intensity, len(run.values))
        run.intensity = float(intensity)
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
        for r in runs:
            if r.thread:
                r.thread.join(timeout=2)
        return runs

    def close(self) -> None:
        self.stop_all("agent shutting down")
        self._closing.set()

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
                                               lim.locust_master_port)
        return generators.DiskGenerator(self.work_dir / run.id, self.limits.max_disk_quota_mib)

    def _drive(self, run: Run) -> None:
        """Follow the profile second by second; whatever happens, the generator is stopped."""
        generator, outcome = None, None
        try:
            generator = self._generator(run)
            run.pids = list(generator.pids)
            begin = time.monotonic()
            for second, value in enumerate(run.values):
                target = float(value) * run.intensity
                generator.set_target(target)
                if run.stop_event.wait(max(0.0, begin + second + 1 - time.monotonic())):
                    break
                run.samples.append((second, target, float(generator.tick())))
            else:
                outcome = ("finished", run.reason)
        except Exception as exc:  # a generator that fails is a failed run, explained, not a dead agent
            outcome = ("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if generator is not None:
                generator.stop()
            # Said only once the load is gone and its files removed: "finished" means cleaned up.
            if outcome is not None:
                run.status, run.reason = outcome

    def metrics(self) -> str:
        lines = ["# HELP shaper_agent_target_load Target load of the active run, in its unit.",
                 "# TYPE shaper_agent_target_load gauge",
                 "# HELP shaper_agent_achieved_load Load achieved in the last second, in the same unit.",
                 "# TYPE shaper_agent_achieved_load gauge"]
        for run in self.active():
            if run.samples:
                _, target, achieved = run.samples[-1]
                labels = f'resource="{run.resource}",run="{run.id}",profile="{run.profile_id}",unit="{run.unit}"'
                lines.append(f"shaper_agent_target_load{{{labels}}} {target}")
                lines.append(f"shaper_agent_achieved_load{{{labels}}} {achieved}")
        lines += ["# HELP shaper_agent_active_runs Runs generating load now.", "# TYPE shaper_agent_active_runs gauge",
                  f"shaper_agent_active_runs {len(self.active())}"]
        return "\n".join(lines) + "\n"


def make_handler(agent: Agent):
    class Handler(BaseHTTPRequestHandler):
        server_version = "shaper-agent/1"

        def log_message(self, *args):  # quiet: the controller keeps its own log
            pass

        def _send(self, status: int, payload, content_type="application/json") -> None:
            body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise Refused(413, f"body larger than {MAX_BODY} bytes")
            try:
                data = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as exc:
                raise Refused(400, f"body is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise Refused(400, "body must be a JSON object")
            return data

        def _route(self, method: str) -> None:
            path = urlparse(self.path).path.rstrip("/")
            try:
                if not agent.authorised(self.headers.get("Authorization")):
                    raise Refused(401, "missing or wrong bearer token")
                if method == "GET" and path == "/metrics":
                    return self._send(200, agent.metrics(), "text/plain; version=0.0.4")
                if method == "GET" and path == "/runs":
                    return self._send(200, [r.view() for r in agent.runs.values()])
                if method == "POST" and path == "/runs":
                    return self._send(201, agent.start(self._body()).view())
                if method == "POST" and path == "/stop-all":
                    return self._send(200, {"stopped": [r.id for r in agent.stop_all()]})
                if path.startswith("/runs/") and path.count("/") == 2:
                    run_id = path.split("/")[2]
                    if method == "GET":
                        return self._send(200, agent._get(run_id).view())
                    if method == "PATCH":
                        return self._send(200, agent.adjust(run_id, self._body()).view())
                    if method == "DELETE":
                        return self._send(200, agent.stop(run_id).view())
                raise Refused(404, f"no route {method} {path or '/'}")
            except Refused as exc:
                self._send(exc.status, {"error": str(exc)})

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        def do_PATCH(self):
            self._route("PATCH")

        def do_DELETE(self):
            self._route("DELETE")

    return Handler


def serve(agent: Agent, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop all load before exiting."""
    server = ThreadingHTTPServer((host, port), make_handler(agent))
    server.daemon_threads = True

    def shutdown(signum, _frame):
        agent.close()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    agent.on_idle = lambda: shutdown(None, None)
    print(f"shaper agent listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        agent.close()
        server.server_close()
