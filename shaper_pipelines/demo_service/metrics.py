"""The demo service's ``/metrics``, in Prometheus' text format through ``prometheus_client``.

What a rehearsal reads from it (through a Prometheus or scraped directly):

- ``demo_request_duration_seconds``: a histogram of the time from a request reaching the handler
  to its answer, for served (200) requests. The 503s are counted in ``demo_requests_total`` and
  not here: they answer at once and would pull the quantiles down just as the service breaks.
  Buckets from 0.5 ms to 10 s, 1-1.25-1.5-2-2.5-3-4-5-6-8 per decade from 1 ms: none from there
  on wider than a third of its lower bound, so what ``histogram_quantile`` interpolates within
  a bucket is off by less than that at any work time;
- ``demo_queue_wait_seconds``: the part of that spent waiting for a worker;
- ``demo_requests_total{status}``: answered requests, "200" and "503" from the start (at zero), so
  a ``rate()`` over them is defined before the first refusal;
- ``demo_in_flight_requests``, ``demo_queued_requests``, ``demo_busy_workers`` and
  ``demo_utilisation`` (busy workers / workers) at the moment of the scrape;
- ``demo_busy_worker_seconds_total``: the integral of busy workers; its ``rate()`` divided by
  ``demo_workers`` is the mean utilisation over the rate's window, with nothing missed between
  scrapes;
- ``demo_cpu_seconds_total``: CPU of the service and its worker processes together (a worker's
  as of its last finished request, so it lags by at most one request's work). The standard
  ``process_cpu_seconds_total`` (from ``prometheus_client``'s process collector) is the server
  process alone, which in "cpu" mode leaves out the work;
- ``demo_workers``, ``demo_queue_limit``, ``demo_work_seconds`` and
  ``demo_capacity_requests_per_second`` (workers / work seconds): the configuration, so a
  benchmark can read the true capacity where it reads the rest;
- ``demo_service_info{mode}``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shaper_pipelines.demo_service.config import ServiceConfig
from shaper_pipelines.demo_service.pool import CpuWork, HoldWork, WorkerPool

CONTENT_TYPE = CONTENT_TYPE_LATEST
BUCKETS = (0.0005, 0.00075) + tuple(
    round(m * 10.0 ** e, 6) for e in range(-3, 1) for m in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)) + (10.0,)


class _PoolCollector:
    """Reads the pool at scrape time: nothing to keep in step between scrapes."""

    def __init__(self, config: ServiceConfig, pool: WorkerPool, work: CpuWork | HoldWork):
        self.config, self.pool, self.work = config, pool, work

    def collect(self):
        pool, config = self.pool, self.config
        yield GaugeMetricFamily("demo_in_flight_requests",
                                "Requests admitted and not yet answered (in work or queued).",
                                value=pool.busy + pool.queued)
        yield GaugeMetricFamily("demo_queued_requests", "Requests waiting for a worker.", value=pool.queued)
        yield GaugeMetricFamily("demo_busy_workers", "Workers in work on a request.", value=pool.busy)
        yield GaugeMetricFamily("demo_utilisation", "Busy workers / workers, at the scrape.", value=pool.utilisation())
        yield CounterMetricFamily("demo_busy_worker_seconds",
                                  "Worker-seconds spent in work; rate() / demo_workers is the mean utilisation.",
                                  value=pool.busy_seconds())
        yield CounterMetricFamily("demo_cpu_seconds", "CPU seconds of the service and its worker processes.",
                                  value=time.process_time() + self.work.worker_cpu_seconds())
        yield GaugeMetricFamily("demo_workers", "Workers in the pool.", value=config.workers)
        yield GaugeMetricFamily("demo_queue_limit", "Requests that may wait for a worker; more get 503.",
                                value=config.queue)
        yield GaugeMetricFamily("demo_work_seconds", "Work per request: CPU seconds (cpu) or seconds held (pool).",
                                value=config.work_s)
        yield GaugeMetricFamily("demo_capacity_requests_per_second",
                                "Requests per second the pool serves at most: workers / work seconds.",
                                value=config.capacity_rps)
        yield InfoMetricFamily("demo_service", "How the demo service was started.", value={"mode": config.mode})


class DemoMetrics:
    def __init__(self, config: ServiceConfig, pool: WorkerPool, work: CpuWork | HoldWork):
        # A registry of its own, not the global one: what a test imports must not show up here.
        self.registry = registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        self.duration = Histogram("demo_request_duration_seconds",
                                  "Time from a request reaching the handler to its answer, served (200) requests.",
                                  buckets=BUCKETS, registry=registry)
        self.queue_wait = Histogram("demo_queue_wait_seconds", "Time a served request waited for a worker.",
                                    buckets=BUCKETS, registry=registry)
        self.requests = Counter("demo_requests", "Requests answered, by HTTP status.", ["status"], registry=registry)
        for status in ("200", "503"):
            self.requests.labels(status)
        registry.register(_PoolCollector(config, pool, work))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
