"""The capacity a rehearsal finds at a latency objective, against a direct step-load measurement of
the same real service on loopback, and the fitted utilisation curve's prediction at loads the
rehearsal did not visit, against the service's measured utilisation there.

Services (``shaper_pipelines.demo_service``, each a process of its own on loopback):

- ``pool``: 4 workers holding 20 ms each without the CPU (nominal 200/s), a bounded pool in front
  of a slow backend: with random arrivals latency climbs well before throughput flattens;
- ``cpu``: 1 worker burning 20 ms of CPU a request (nominal 50/s), CPU-bound.

Objectives (p95, 1 % error budget) sit well before saturation for random arrivals: 50 ms (2.5 work
times) for the pool, 100 ms (5 work times) for the single CPU worker.

- **Direct (the baseline, the truth)**: the open-loop generator of
  ``shaper_pipelines_tests/demo_service/open_loop.py`` at fixed rates in steps of 10 % of nominal,
  each held ``--warmup`` + ``--step`` seconds, until a step breaks the objective: per step the
  client-side p95 and error ratio over the measured window and the service's utilisation from its
  ``/metrics`` (the increase of ``demo_busy_worker_seconds_total`` / workers / seconds). The true
  capacity is the rate at which the step p95 (or error ratio) first exceeds the objective, linearly
  interpolated between the last step under it and the first over, on the rates really offered.
  With Poisson arrivals, as independent users arrive (steps from 30 %); ``--arrivals
  poisson,uniform`` adds evenly spaced arrivals (steps from 60 %), which barely queue before
  saturation.
- **Rehearsal, the real path** (``--drivers agent``): ``shaper agent`` in a process of its own with
  Locust (one process, Poisson arrivals as a capacity rehearsal sends them), a network_io step profile (``stages``: 20, 40, 60, 80, 90, 100, 110, 120 %
  of nominal, ``--rehearsal-step`` seconds each), the agent reading the service's ``/metrics``
  every second (``monitor``) and stopping itself once the objective has been broken for two
  consecutive seconds (``stop_when``); ``lib.response_model.fit_response`` on the frame built from
  its samples (offered = target, latency = the service's p95, utilisation = the service's,
  errors = the client's). ``--drivers open-loop`` adds the same steps offered by the open-loop
  generator with Poisson arrivals (the monitor and the self-stop done here), a control for the
  arrival process.
- **Unvisited loads**: 30, 50 and 70 % of nominal are direct steps no rehearsal offers: the fitted
  curve's utilisation at the load each really offered, against the service's measured utilisation
  over that step, in points.

Each service is started once; every measurement is repeated ``--repeats`` times against it (other
seeds). Figures: median and spread (min-max) over the repeats of capacity rehearsal / direct (aim
within 10 %), |utilisation error| in points (aim within 5), and the rehearsal's seconds against the
direct measurement's, all measured in the same run. Nothing is hard-coded but the services, their
objectives and the step plans.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from benchmarks.common import RESULTS, machine, publish
from shaper_pipelines.demo_service import start_demo_service
from shaper_pipelines.lib.histograms import (
    increase,
    parse_exposition,
    quantile_from_buckets,
)
from shaper_pipelines.lib.response_model import Objective, fit_response
from shaper_pipelines_tests.demo_service.open_loop import offer

# The objective of each sits well before saturation for Poisson arrivals: p95 under 2.5 work times
# for the pool of 4 (about 75 % of nominal), 5 work times for the single CPU worker (about 60 %).
SERVICES = {
    "pool": {"mode": "pool", "workers": 4, "work_ms": 20.0, "queue": 16, "objective_ms": 50.0},
    "cpu": {"mode": "cpu", "workers": 1, "work_ms": 20.0, "queue": 16, "objective_ms": 100.0},
}
QUANTILE = 0.95
ERROR_BUDGET = 0.01
# Direct steps, by arrivals: each until the objective breaks. Poisson from 30 % (the unvisited loads
# are measured there); evenly spaced from 60 % (its latency stays flat until saturation).
DIRECT_STEPS = {"poisson": (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
                "uniform": (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)}
REHEARSAL_STEPS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2)
UNVISITED = (0.3, 0.5, 0.7)  # direct steps the rehearsal does not offer
HEADLINE = 0.5  # the unvisited load the headline utilisation figure is at
BAD_SECONDS = 2  # consecutive seconds over the objective that end a rehearsal
THREADS = 48  # open-loop client threads: more than a service's workers + queue

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- reading the service ----------------------------------------------------------------------------


@dataclass
class Scrape:
    t: float  # perf_counter
    busy: float  # worker-seconds
    served: float  # 200s answered
    refused: float  # 503s
    buckets: dict  # request duration, cumulative {le: count}


def scrape(url: str) -> Scrape:
    with OPENER.open(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    t = time.perf_counter()
    e = parse_exposition(text)
    return Scrape(t=t, busy=e.value("demo_busy_worker_seconds") or 0.0,
                  served=e.value("demo_requests", status="200") or 0.0,
                  refused=e.value("demo_requests", status="503") or 0.0,
                  buckets=e.buckets("demo_request_duration_seconds"))


def between(a: Scrape, b: Scrape, workers: int, q: float) -> dict:
    """What the service did between two scrapes: one rehearsal row."""
    dt = max(b.t - a.t, 1e-9)
    gained = increase(a.buckets, b.buckets)
    bounds = list(gained)
    p = quantile_from_buckets(q, bounds, [gained[le] for le in bounds]) if bounds else math.nan
    return {"seconds": dt, "achieved": (b.served - a.served) / dt, "errors": (b.refused - a.refused) / dt,
            "utilisation": (b.busy - a.busy) / workers / dt, "latency_ms": p * 1000.0}


def settle(url: str, timeout: float = 10.0) -> None:
    """Wait until the service has nothing in flight (the queue of an overloaded step drained), then
    half a second more: no measurement starts on what the one before left behind."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with OPENER.open(f"{url}/metrics", timeout=5) as response:
            if not parse_exposition(response.read().decode()).value("demo_in_flight_requests"):
                break
        time.sleep(0.1)
    time.sleep(0.5)


def load_step(url: str, rate: float, seconds: float, marks: list[float], *, warmup: float = 0.0, seed: int = 0,
              arrivals: str = "poisson"):
    """Offer ``rate`` (Poisson) for ``seconds`` while scraping the service at each of ``marks``
    seconds from the start; the client's StepResult and the scrapes."""
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("r", offer(
        url, rate, seconds, warmup=warmup, threads=THREADS, arrivals=arrivals, seed=seed)), daemon=True)
    start = time.perf_counter()
    worker.start()
    scrapes = []
    for m in marks:
        wait = start + m - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        scrapes.append(scrape(url))
    worker.join()
    return out["r"], scrapes


def crossing(x: list[float], y: list[float], threshold: float) -> float | None:
    """The first x where y exceeds threshold, interpolated from the point before; None if never."""
    for i, v in enumerate(y):
        if v > threshold:
            if i == 0:
                return x[0]
            return x[i - 1] + (threshold - y[i - 1]) / (v - y[i - 1]) * (x[i] - x[i - 1])
    return None


# -- the direct step-load measurement ---------------------------------------------------------------


@dataclass
class Direct:
    capacity: float | None
    broken_by: str | None
    seconds: float
    steps: list = field(default_factory=list)  # {fraction, rate, offered, p95_ms, error_ratio, utilisation, achieved}


def direct(url: str, nominal: float, workers: int, objective: Objective, warmup: float, step: float,
           seed: int, arrivals: str = "poisson") -> Direct:
    started = time.perf_counter()
    steps = []
    for i, fraction in enumerate(DIRECT_STEPS[arrivals]):
        rate = fraction * nominal
        result, (a, b) = load_step(url, rate, warmup + step, [warmup, warmup + step], warmup=warmup,
                                   seed=seed * 1000 + i, arrivals=arrivals)
        served = result.count(200)
        failed = result.count(503) + result.count(0)
        steps.append({"fraction": fraction, "rate": rate, "offered": result.offered_rps, "p95_ms": result.quantile(objective.quantile) * 1000.0,
                      "error_ratio": failed / served if served else math.inf,
                      "utilisation": (b.busy - a.busy) / workers / (b.t - a.t), "achieved": result.achieved_rps})
        last = steps[-1]
        if last["p95_ms"] > objective.latency_ms or last["error_ratio"] > objective.error_ratio:
            break
    rates = [s["offered"] for s in steps]  # the rates really offered, not the nominal steps
    found = {k: c for k, c in (("latency", crossing(rates, [s["p95_ms"] for s in steps], objective.latency_ms)),
                               ("errors", crossing(rates, [min(s["error_ratio"], 1e3) for s in steps],
                                                   objective.error_ratio))) if c is not None}
    by = min(found, key=found.get) if found else None
    return Direct(found[by] if by else None, by, time.perf_counter() - started, steps)


# -- the rehearsal ------------------------------------------------------------------------------------


@dataclass
class Rehearsal:
    frame: pd.DataFrame
    seconds: float
    ended_by: str
    driver: str


def rehearse_open_loop(url: str, nominal: float, workers: int, objective: Objective, step: float,
                       seed: int) -> Rehearsal:
    """The rehearsal's step profile offered with the open-loop generator, the service's /metrics
    scraped every second, stopped here after the step in which the objective broke for
    BAD_SECONDS consecutive seconds."""
    started = time.perf_counter()
    rows, bad, ended_by = [], 0, "profile finished"
    marks = [float(s) for s in range(int(step) + 1)]
    for i, fraction in enumerate(REHEARSAL_STEPS):
        rate = fraction * nominal
        _result, scrapes = load_step(url, rate, step, marks, seed=seed * 1000 + 500 + i)
        for a, b in itertools.pairwise(scrapes):
            row = between(a, b, workers, objective.quantile)
            rows.append({"offered": rate, **row})
            done = row["achieved"]
            broke = row["latency_ms"] > objective.latency_ms or (
                row["errors"] / done if done > 0 else (math.inf if row["errors"] > 0 else 0)) > objective.error_ratio
            bad = bad + 1 if broke else 0
        if bad >= BAD_SECONDS:
            ended_by = f"objective broken at {fraction:.0%} of nominal"
            break
    return Rehearsal(pd.DataFrame(rows), time.perf_counter() - started, ended_by, "open-loop generator")


class LocalAgent:
    """``shaper agent`` as a process of its own on loopback (one Locust process), with a throwaway
    token passed in its environment; stopped on ``close``."""

    def __init__(self):
        from shaper_pipelines.agent.client import AgentClient
        from shaper_pipelines.demo_service.process import _child_env

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        token = secrets.token_hex(16)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shaper_pipelines.cli", "agent", "--port", str(port), "--max-cores", "1",
             "--max-rps", "1000", "--max-duration", "10m", "--dead-man", "60s"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**_child_env(), "SHAPER_AGENT_TOKEN": token})
        line = self.proc.stdout.readline()
        if "listening" not in line:
            self.close()
            raise RuntimeError(f"the load agent did not start: {line!r}")
        self.client = AgentClient(f"http://127.0.0.1:{port}", token, timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def rehearse_agent(agent: LocalAgent, url: str, nominal: float, objective: Objective, step: float) -> Rehearsal:
    """The real path: a step profile (network_io, stages) run by the load agent with Locust, the
    agent reading the service's /metrics every second and stopping itself once the objective has
    been broken for BAD_SECONDS seconds; the frame built from its samples as the pipeline does
    (offered = target, latency = the service's p95, utilisation = the service's, errors = the
    client's)."""
    stages = []
    for i, fraction in enumerate(REHEARSAL_STEPS):
        level = round(fraction * nominal, 3)
        # the first level held longer: Locust takes a few seconds to send its first request
        stages += [{"duration": 0, "target": level}, {"duration": f"{step * (2 if i == 0 else 1):g}s", "target": level}]
    seconds = step * (len(REHEARSAL_STEPS) + 1)
    profile = {"profile_id": "capacity-rehearsal", "resource_type": "network_io", "duration": f"{seconds:g}s",
               "load_pattern": {"kind": "stages", "start": stages[0]["target"], "stages": stages}}
    monitor = {"metrics_url": f"{url}/metrics", "busy_seconds": "demo_busy_worker_seconds_total",
               "capacity": "demo_workers", "latency_histogram": "demo_request_duration_seconds",
               "errors": {"name": "demo_requests_total", "label": "status", "values": ["503"]}}
    stop_when = {"latency_quantile": objective.quantile, "latency_ms": objective.latency_ms,
                 "error_ratio": objective.error_ratio, "for_s": BAD_SECONDS, "source": "service"}
    started = time.perf_counter()
    # Poisson arrivals, as scaling.yaml's rehearsal sends them by default (rehearsal.arrivals).
    run = agent.client.start(profile, 1.0, f"{url}/", stop_when=stop_when, monitor=monitor, arrivals="poisson")
    while (view := agent.client.get(run["id"]))["status"] == "running":
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    samples = pd.DataFrame(view["samples"])
    frame = pd.DataFrame({"offered": samples["target"], "achieved": samples["achieved"],
                          "utilisation": pd.to_numeric(samples["service_utilisation"], errors="coerce"),
                          "latency_ms": pd.to_numeric(samples[f"service_p{round(objective.quantile * 100)}_ms"],
                                                      errors="coerce"),
                          "errors": pd.to_numeric(samples["errors"], errors="coerce")})
    ended = view.get("ended_by")
    ended_by = (f"agent stopped itself: {ended['kind']} at {ended['at_offered'] / nominal:.0%} of nominal" if ended
                else f"{view['status']}: {view.get('reason') or 'profile finished'}")
    return Rehearsal(frame, elapsed, ended_by, "load agent + Locust")


# -- one service ------------------------------------------------------------------------------------


def judge(model, directs: dict[str, Direct]) -> dict:
    """A rehearsal's model against the direct measurements: capacity ratio against each, and the
    utilisation error at each unvisited load a direct measurement stepped on (the first that did),
    predicted at the load that step really offered."""
    unvisited = {}
    for fraction in UNVISITED:
        for d in directs.values():
            s = next((s for s in d.steps if abs(s["fraction"] - fraction) < 1e-9), None)
            if s is not None:
                predicted = float(model.utilisation_at(s["offered"])[0])
                unvisited[fraction] = {"offered": s["offered"], "predicted": predicted,
                                       "measured": s["utilisation"],
                                       "error_points": abs(predicted - s["utilisation"]) * 100.0}
                break
    return {"capacity_ratio": {a: model.capacity / d.capacity if d.capacity else None for a, d in directs.items()},
            "seconds_ratio": {a: None for a in directs}, "unvisited": unvisited}


def run_service(name: str, args, agent: LocalAgent | None, progress=print) -> dict:
    spec = dict(SERVICES[name])
    objective = Objective(QUANTILE, spec.pop("objective_ms"), ERROR_BUDGET)
    out = {"service": name, **spec, "objective": objective.to_dict(), "repeats": []}
    with start_demo_service(**spec) as service:
        nominal = service.capacity_rps
        out["nominal_rps"] = nominal
        offer(service.url, 0.2 * nominal, 1.0, threads=THREADS)  # connections and workers warmed
        for r in range(args.repeats):
            directs = {}
            for a in args.arrivals.split(","):
                settle(service.url)
                directs[a] = direct(service.url, nominal, spec["workers"], objective, args.warmup, args.step, seed=r,
                                    arrivals=a)
            progress(f"{name} #{r + 1} direct: " + ", ".join(
                f"{a} {d.capacity or math.nan:.1f}/s ({d.broken_by}, {d.seconds:.0f} s)" for a, d in directs.items()))
            rehearsals = {}
            for driver in args.drivers.split(","):
                settle(service.url)
                if driver == "agent":
                    reh = rehearse_agent(agent, service.url, nominal, objective, args.rehearsal_step)
                else:
                    reh = rehearse_open_loop(service.url, nominal, spec["workers"], objective,
                                             args.rehearsal_step, seed=r)
                model = fit_response(reh.frame, objective)
                judged = judge(model, directs)
                judged["seconds_ratio"] = {a: reh.seconds / d.seconds for a, d in directs.items()}
                rehearsals[driver] = {"seconds": reh.seconds, "ended_by": reh.ended_by, "driver": reh.driver,
                                      "rows": len(reh.frame), "model": model.to_dict(), **judged}
                u = judged["unvisited"]
                progress(f"{name} #{r + 1} {driver}: {model.capacity:.1f}/s ({model.bound}, {model.broken_by}, "
                         f"{reh.seconds:.0f} s; {reh.ended_by}); ratio "
                         + ", ".join(f"{a} {v:.3f}" for a, v in judged["capacity_ratio"].items() if v)
                         + "; utilisation at "
                         + ", ".join(f"{f:.0%} {v['predicted']:.3f} vs {v['measured']:.3f}" for f, v in u.items()))
            out["repeats"].append({"direct": {a: asdict(d) for a, d in directs.items()}, "rehearsals": rehearsals})
    return out


# -- the report -----------------------------------------------------------------------------------


def spread(values) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return (math.nan,) * 3
    return float(np.median(v)), float(v.min()), float(v.max())


def summarise(service: dict, driver: str, arrivals: str) -> dict:
    reps = [(r["direct"][arrivals], r["rehearsals"][driver]) for r in service["repeats"]]
    return {
        "direct_capacity": spread([d["capacity"] for d, _ in reps]),
        "rehearsal_capacity": spread([h["model"]["capacity"] for _, h in reps]),
        "capacity_ratio": spread([h["capacity_ratio"][arrivals] for _, h in reps]),
        "utilisation_error_headline": spread([h["unvisited"].get(HEADLINE, {}).get("error_points") for _, h in reps]),
        "utilisation_error_worst": spread([max((u["error_points"] for u in h["unvisited"].values()), default=None)
                                           for _, h in reps]),
        "direct_seconds": spread([d["seconds"] for d, _ in reps]),
        "rehearsal_seconds": spread([h["seconds"] for _, h in reps]),
        "seconds_ratio": spread([h["seconds_ratio"][arrivals] for _, h in reps]),
        "saturation": spread([h["model"]["saturation"] for _, h in reps]),
    }


DRIVERS = {"agent": "load agent + Locust", "open-loop": "open-loop, Poisson"}
ARRIVALS = {"poisson": "Poisson (independent users)", "uniform": "evenly spaced (as Locust sends)"}


def report(results: list[dict], args, wall: float) -> str:
    def cell(s, fmt="{:.3f}"):
        med, lo, hi = s
        return "-" if not np.isfinite(med) else f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"

    drivers, arrivals = args.drivers.split(","), args.arrivals.split(",")
    lines = [
        ("Capacity at a latency objective found by a rehearsal (`lib.response_model.fit_response` on its "
         "per-second rows) against a direct step-load measurement of the same real service on loopback (the demo "
         f"service; p{QUANTILE * 100:.0f} objective as shown, error budget {ERROR_BUDGET:.0%}). Median (min-max) "
         f"over {args.repeats} repeats."),
        "",
        ("| service | objective | rehearsal | direct arrivals | direct capacity /s | rehearsal capacity /s | "
         f"rehearsal / direct (aim 0.9-1.1) | utilisation error at {HEADLINE:.0%}, points (aim < 5) | worst at "
         f"{', '.join(f'{u:.0%}' for u in UNVISITED)}, points | rehearsal s | direct s | rehearsal / direct time |"),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        o = s["objective"]
        for driver in drivers:
            for a in arrivals:
                m = summarise(s, driver, a)
                lines.append(
                    f"| {s['service']} ({s['workers']} x {s['work_ms']:g} ms, nominal {s['nominal_rps']:.0f}/s) | "
                    f"p{o['quantile'] * 100:.0f} < {o['latency_ms']:g} ms | {DRIVERS[driver]} | {ARRIVALS[a]} | "
                    f"{cell(m['direct_capacity'], '{:.1f}')} | {cell(m['rehearsal_capacity'], '{:.1f}')} | "
                    f"{cell(m['capacity_ratio'])} | {cell(m['utilisation_error_headline'], '{:.1f}')} | "
                    f"{cell(m['utilisation_error_worst'], '{:.1f}')} | {cell(m['rehearsal_seconds'], '{:.0f}')} | "
                    f"{cell(m['direct_seconds'], '{:.0f}')} | {cell(m['seconds_ratio'], '{:.2f}')} |")
    lines += ["", "Each rehearsal's model (last repeat):", ""]
    for s in results:
        for driver in drivers:
            h = s["repeats"][-1]["rehearsals"][driver]
            lines.append(f"- {s['service']}, {DRIVERS[driver]}: {h['model']['description']}; {h['ended_by']}")
    steps = "; ".join(f"{a} {', '.join(f'{f:.0%}' for f in DIRECT_STEPS[a])}" for a in arrivals)
    lines += ["", (f"Direct steps ({steps} of nominal) until the objective breaks, {args.warmup:g} s warm-up + "
                   f"{args.step:g} s measured each, the crossing interpolated on the rates really offered. Rehearsal "
                   f"steps {', '.join(f'{f:.0%}' for f in REHEARSAL_STEPS)} of nominal, {args.rehearsal_step:g} s "
                   f"each, stopped once {BAD_SECONDS} consecutive seconds break the objective. Utilisation: the "
                   "rehearsal's fitted curve at the load each unvisited direct step really offered, against the "
                   f"service's busy worker-seconds over that step. Whole run {wall:.0f} s.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--services", default=",".join(SERVICES), help="comma-separated: " + ", ".join(SERVICES))
    parser.add_argument("--drivers", default="agent",
                        help="comma-separated rehearsal drivers: agent (the load agent with Locust; default), "
                             "open-loop (Poisson arrivals, self-stop here)")
    parser.add_argument("--arrivals", default="poisson",
                        help="comma-separated arrivals of the direct measurement: poisson (default), uniform")
    parser.add_argument("--warmup", type=float, default=0.5, help="direct: seconds before each step is measured")
    parser.add_argument("--step", type=float, default=4.0, help="direct: seconds measured per step")
    parser.add_argument("--rehearsal-step", type=float, default=4.0, help="rehearsal: seconds per step")
    args = parser.parse_args(argv)
    if unknown := set(args.drivers.split(",")) - set(DRIVERS):
        parser.error(f"unknown drivers {sorted(unknown)}: {', '.join(DRIVERS)}")
    if unknown := set(args.arrivals.split(",")) - set(ARRIVALS):
        parser.error(f"unknown arrivals {sorted(unknown)}: {', '.join(ARRIVALS)}")
    started = time.perf_counter()
    agent = LocalAgent() if "agent" in args.drivers.split(",") else None
    try:
        results = [run_service(name, args, agent, progress=lambda s: print(s, file=sys.stderr, flush=True))
                   for name in args.services.split(",")]
    finally:
        if agent is not None:
            agent.close()
    wall = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {d: {a: None for a in args.arrivals.split(",")} for d in args.drivers.split(",")}
    payload = {"machine": machine(), "seconds": wall, "args": vars(args),
               "services": [{**s, "summary": {d: {a: summarise(s, d, a) for a in summary[d]} for d in summary}}
                            for s in results]}
    (RESULTS / "capacity.json").write_text(json.dumps(_finite(payload), indent=1, allow_nan=False))
    publish("capacity", report(results, args, wall))
    return payload


def _finite(value):
    """JSON-safe: NaN and infinities as None, numpy scalars as Python's."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    main()
