"""The objective's arithmetic and the service window, second by second, without processes: what
the real-process tests in test_rehearsal_watch cannot pin down exactly."""

from __future__ import annotations

import pytest

from shaper_pipelines.agent.core import new_sample
from shaper_pipelines.agent.watch import StopCheck, parse_stop_when, service_window
from shaper_pipelines.lib.histograms import parse_exposition


def second(t: int, p95: float | None, achieved: float = 100.0, errors: float | None = 0.0) -> dict:
    return new_sample(t, 150.0 + t, achieved, {"errors": errors, "latency_p95_ms": p95})


def test_latency_must_stay_broken_for_for_s_seconds_and_empty_seconds_do_not_count():
    check = StopCheck(parse_stop_when({"latency_ms": 50, "for_s": 3}, None))
    assert check.spec["source"] == "client" and check.spec["latency_quantile"] == 0.95
    assert check.observe(second(0, 60)) is None
    assert check.observe(second(1, 40)) is None  # restored: the count starts again
    assert check.observe(second(2, 60)) is None
    assert check.observe(second(3, 70)) is None
    assert check.observe(second(4, None, achieved=0.0, errors=None)) is None  # nothing completed
    ended = check.observe(second(5, 80))
    assert ended == {"kind": "latency", "value": 80.0, "threshold": 50.0, "at_offered": 155.0, "t": 5,
                     "for_s": 3, "source": "client"}
    assert check.reason(ended) == ("stopped itself: p95 latency 80 ms above the objective of 50 ms for 3 s "
                                   "at 155 req/s offered (measured by the client)")


def test_the_error_ratio_is_failures_over_completions():
    check = StopCheck(parse_stop_when({"error_ratio": 0.1, "for_s": 2}, None))
    assert check.observe(second(0, None, achieved=100, errors=20)) is None
    assert check.observe(second(1, None, achieved=0, errors=0)) is None  # nothing completed
    ended = check.observe(second(2, None, achieved=50, errors=10))
    assert ended["kind"] == "errors" and ended["value"] == pytest.approx(0.2) and ended["t"] == 2
    assert "error ratio 20.0% above the objective of 10.0% for 2 s at 152 req/s" in check.reason(ended)


def test_the_service_source_reads_the_service_quantile():
    monitor = {"metrics_url": "http://127.0.0.1/metrics", "latency_histogram": "h"}
    check = StopCheck(parse_stop_when({"latency_ms": 50, "latency_quantile": 0.99, "for_s": 1}, monitor))
    assert check.spec["source"] == "service"
    sample = second(0, 500)  # the client's p95 is not what is judged
    assert check.observe(sample) is None
    sample["service_p99_ms"] = 51.0
    assert check.observe(sample)["value"] == 51.0


def test_a_service_window_over_one_second():
    before = parse_exposition('busy_total 10\nworkers 4\nreq_total{status="200"} 100\n'
                              'h_bucket{le="0.01"} 0\nh_bucket{le="0.02"} 0\nh_bucket{le="+Inf"} 0\n')
    after = parse_exposition('busy_total 12\nworkers 4\nreq_total{status="200"} 200\nreq_total{status="503"} 5\n'
                             'h_bucket{le="0.01"} 50\nh_bucket{le="0.02"} 100\nh_bucket{le="+Inf"} 100\n')
    spec = {"busy_seconds": "busy_total", "capacity": "workers", "latency_histogram": "h",
            "errors": {"name": "req_total", "label": "status", "values": ["503"]}}
    missing: set[str] = set()
    out = service_window(spec, before, after, 0.5, missing)
    assert out == {"service_utilisation": 1.0,  # 2 busy seconds / (4 workers x 0.5 s)
                   "service_p50_ms": 10.0, "service_p95_ms": 19.0, "service_p99_ms": 19.8,
                   "service_errors": 10.0}  # 5 in half a second
    assert not missing
