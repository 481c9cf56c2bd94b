"""The demo service as a process of its own, over real HTTP: its ``/metrics`` parse, it keeps its
known capacity (workers / work per request) under open-loop load, its queue overflows into 503s,
and nothing of it is left once it is stopped.

Load is modest (at most 120 requests per second, a few seconds a step): the machine is shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shaper_pipelines.demo_service import ConfigError, start_demo_service
from shaper_pipelines.demo_service.process import _child_env  # the same checkout's code
from shaper_pipelines_tests.demo_service.open_loop import offer

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(url: str) -> dict:
    """name -> family, as Prometheus' own parser reads the exposition."""
    status, body = get(f"{url}/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def value(families: dict, family: str, sample: str | None = None, **labels) -> float:
    """The one sample named ``sample`` (the family's name by default) with these labels."""
    found = [s.value for s in families[family].samples
             if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, sample, labels, found)
    return found[0]


def histogram_quantile(q: float, before: dict, after: dict, family: str) -> float:
    """Prometheus' ``histogram_quantile`` over the increase between two scrapes: what a rehearsal
    reading the embedded ``/metrics`` would compute."""
    def buckets(families):
        return {float(s.labels["le"]): s.value for s in families[family].samples if s.name == family + "_bucket"}

    b0, b1 = buckets(before), buckets(after)
    bounds = sorted(b1)
    counts = [b1[le] - b0.get(le, 0.0) for le in bounds]
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for le, count in zip(bounds, counts):
        if count >= rank:
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return bounds[-2]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent (or init) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture(scope="module")
def pool_service():
    """4 workers holding each request 50 ms: 80 requests per second at most."""
    with start_demo_service("pool", workers=4, work_ms=50, queue=16) as service:
        yield service


def test_metrics_parse_with_prometheus_client_and_count_what_was_served(pool_service):
    url = pool_service.url
    assert url.startswith("http://127.0.0.1:") and pool_service.capacity_rps == 80
    before = scrape(url)
    for _ in range(10):
        assert get(f"{url}/") == (200, b"ok\n")
    after = scrape(url)

    assert after["demo_request_duration_seconds"].type == "histogram"
    assert after["demo_requests"].type == "counter"
    assert after["process_cpu_seconds"].type == "counter"  # prometheus_client's process collector
    for gauge in ("demo_in_flight_requests", "demo_queued_requests", "demo_busy_workers", "demo_utilisation"):
        assert after[gauge].type == "gauge"
        assert value(after, gauge) == 0  # nothing in work between requests
    served = value(after, "demo_requests", "demo_requests_total", status="200") - value(
        before, "demo_requests", "demo_requests_total", status="200")
    assert served == 10
    assert value(after, "demo_requests", "demo_requests_total", status="503") == 0  # there from the start
    durations = (value(after, "demo_request_duration_seconds", "demo_request_duration_seconds_count")
                 - value(before, "demo_request_duration_seconds", "demo_request_duration_seconds_count"))
    assert durations == 10
    busy = value(after, "demo_busy_worker_seconds", "demo_busy_worker_seconds_total") - value(
        before, "demo_busy_worker_seconds", "demo_busy_worker_seconds_total")
    assert 10 * 0.05 <= busy <= 10 * 0.05 * 1.2
    assert value(after, "demo_capacity_requests_per_second") == 80
    assert value(after, "demo_workers") == 4 and value(after, "demo_work_seconds") == 0.05
    assert value(after, "demo_service_info", mode="pool")  # an info is a gauge in the text format == 1
    assert 0.04 < histogram_quantile(0.5, before, after, "demo_request_duration_seconds") <= 0.06
    # Neither /metrics nor /healthz counts as a request.
    assert get(f"{url}/healthz")[0] == 200
    assert value(scrape(url), "demo_requests", "demo_requests_total", status="200") == value(
        after, "demo_requests", "demo_requests_total", status="200")


def test_well_below_capacity_latency_stays_near_the_work_time(pool_service):
    url = pool_service.url
    before = scrape(url)
    started = time.monotonic()
    step = offer(url, rate=40, seconds=4, warmup=0.5)  # half of the 80/s capacity
    elapsed = time.monotonic() - started
    after = scrape(url)
    print("pool, 0.5x capacity:", step.describe())

    assert step.count(503) == 0 and step.count(0) == 0
    assert step.achieved_rps == pytest.approx(40, rel=0.05)
    assert 0.050 <= step.quantile(0.5) <= 0.060
    assert step.quantile(0.95) <= 0.075
    # The service's own view agrees: its p95 from the histogram, its utilisation from busy time.
    assert histogram_quantile(0.95, before, after, "demo_request_duration_seconds") <= 0.075
    busy = value(after, "demo_busy_worker_seconds", "demo_busy_worker_seconds_total") - value(
        before, "demo_busy_worker_seconds", "demo_busy_worker_seconds_total")
    utilisation = busy / 4 / elapsed
    print(f"utilisation from demo_busy_worker_seconds_total: {utilisation:.3f} (offered 40 x 0.05 / 4 = 0.5)")
    assert utilisation == pytest.approx(0.5, abs=0.05)


def test_past_capacity_throughput_flattens_near_workers_over_work_and_latency_climbs(pool_service):
    url = pool_service.url
    near = offer(url, rate=72, seconds=4, warmup=0.5, arrivals="poisson", threads=40)  # 0.9x, bunched
    print("pool, 0.9x capacity, poisson:", near.describe())
    before = scrape(url)
    over = offer(url, rate=120, seconds=5, warmup=1.5, threads=40)  # 1.5x
    after = scrape(url)
    print("pool, 1.5x capacity:", over.describe())

    # Random arrivals near capacity already queue: latency climbs before throughput flattens.
    assert near.achieved_rps == pytest.approx(72, rel=0.1)
    assert near.quantile(0.95) > 0.060
    # Past it the service serves its capacity and no more, and the excess is refused.
    assert over.achieved_rps == pytest.approx(80, rel=0.15) and over.achieved_rps <= 80 * 1.05
    assert over.count(503) > 0
    # A full queue of 16 in front of 4 workers: (16 + 4) / 4 x 50 ms = 250 ms.
    assert 0.200 <= over.quantile(0.95) <= 0.300
    assert value(after, "demo_requests", "demo_requests_total", status="503") - value(
        before, "demo_requests", "demo_requests_total", status="503") == over.count(503, whole=True)


def _idle_cores_seconds() -> float:
    """CPU seconds the whole machine has spent idle so far (all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def test_cpu_mode_serves_its_capacity_and_burns_the_cpu_it_says():
    # One worker, 50 ms of CPU a request: 20 requests/s, and little HTTP besides (the machine has
    # two cores, shared, and the server and this generator need some of the CPU too).
    with start_demo_service("cpu", workers=1, work_ms=50, queue=8) as service:
        url = service.url
        # A separate process does the work, a child of the service: the GIL does not serialise it.
        assert len(service.worker_pids) == 1 and service.process.pid not in service.worker_pids
        below = offer(url, rate=10, seconds=3, warmup=0.5, threads=12)
        print("cpu, 0.5x capacity:", below.describe())
        before, idle_before, started = scrape(url), _idle_cores_seconds(), time.monotonic()
        over = offer(url, rate=30, seconds=5, warmup=1.5, threads=12)
        after, idle, elapsed = scrape(url), _idle_cores_seconds() - idle_before, time.monotonic() - started
        print("cpu, 1.5x capacity:", over.describe())

    def increase(family, sample, **labels):
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    served = increase("demo_requests", "demo_requests_total", status="200")
    cpu = increase("demo_cpu_seconds", "demo_cpu_seconds_total")
    server_cpu = increase("process_cpu_seconds", "process_cpu_seconds_total")
    worker_cores = (cpu - server_cpu) / elapsed
    print(f"cpu: {served:.0f} served, {cpu:.2f} CPU s in all ({served * 0.05:.2f} of work), {server_cpu:.2f} in "
          f"the server; the worker had {worker_cores:.2f} of a core, the machine {idle / elapsed:.2f} idle")

    assert below.count(503) == 0 and below.achieved_rps == pytest.approx(10, rel=0.05)
    # 50 ms of CPU takes longer than 50 ms of time when the worker shares its core (the machine is).
    assert 0.050 <= below.quantile(0.5) <= 0.075
    assert over.count(503) > 0 and over.achieved_rps <= 20 * 1.05
    # A full queue of 8 in front of 1 worker: up to (8 + 1) x 50 ms = 450 ms.
    assert over.quantile(0.95) > 5 * below.quantile(0.95)
    # Every request really burnt its 50 ms, in the worker (the server process's own CPU is not it),
    # and the throughput is what the CPU the worker got allows: a core's worth is 20 a second.
    assert served * 0.050 <= cpu <= served * 0.050 * 1.3
    assert served * 0.050 * 0.9 <= cpu - server_cpu
    assert over.achieved_rps == pytest.approx(worker_cores / 0.050, rel=0.1)
    # The worker held a request all the time (the queue was never empty): if it still had less than
    # a core, others had the CPU. Then the capacity is less than 20/s, truly, and not the service's
    # doing: a CPU-bound service's capacity is workers / work_ms only while it has the cores.
    assert increase("demo_busy_worker_seconds", "demo_busy_worker_seconds_total") / elapsed >= 0.95
    if worker_cores < 0.85:
        pytest.xfail(f"the worker got {worker_cores:.2f} of a core (the machine was {idle / elapsed:.2f} cores idle), "
                     f"so the capacity was {over.achieved_rps:.1f}/s, not 20/s")
    assert over.achieved_rps == pytest.approx(20, rel=0.15)


def test_queue_overflow_gives_503_at_once():
    # 2 workers holding each request 400 ms, 2 more may wait: of 10 at once, 4 are served.
    with start_demo_service("pool", workers=2, work_ms=400, queue=2) as service:
        results: list[tuple[int, float]] = []
        go = threading.Barrier(10)

        def one():
            go.wait()
            t0 = time.perf_counter()
            status, _ = get(f"{service.url}/")
            results.append((status, time.perf_counter() - t0))

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        during = scrape(service.url)
        for t in threads:
            t.join(10)
        after = scrape(service.url)

    assert sorted(s for s, _ in results) == [200] * 4 + [503] * 6
    assert max(d for s, d in results if s == 503) < 0.2  # refused at once, not after waiting
    assert value(during, "demo_in_flight_requests") == 4
    assert value(during, "demo_busy_workers") == 2 and value(during, "demo_queued_requests") == 2
    assert value(during, "demo_utilisation") == 1
    assert value(after, "demo_requests", "demo_requests_total", status="503") == 6
    assert value(after, "demo_requests", "demo_requests_total", status="200") == 4


def test_stop_ends_the_service_and_its_workers():
    service = start_demo_service("cpu", workers=2, work_ms=5)
    try:
        pids = [service.process.pid, *service.worker_pids]
        assert len(set(pids)) == 3 and all(alive(p) for p in pids)
        assert get(f"{service.url}/")[0] == 200
    finally:
        assert service.stop() == 0  # SIGTERM is a clean exit
    assert wait_gone(pids) == []
    with pytest.raises(urllib.error.URLError):
        get(f"{service.url}/healthz", timeout=2)
    assert service.stop() == 0  # twice is harmless


def test_workers_die_with_a_killed_service():
    service = start_demo_service("cpu", workers=2, work_ms=5)
    try:
        os.kill(service.process.pid, signal.SIGKILL)
        service.process.wait(10)
        assert wait_gone(service.worker_pids) == []  # the kernel's parent-death signal
    finally:
        service.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com", "::"])
def test_refuses_anything_but_loopback(host):
    with pytest.raises(ConfigError, match="loopback"):
        start_demo_service(host=host)
    run = subprocess.run([sys.executable, "-m", "shaper_pipelines.demo_service", "--host", host],
                         capture_output=True, text=True, timeout=60, env=_child_env(), check=False)
    assert run.returncode == 2 and "loopback address only" in run.stderr and run.stdout == ""
