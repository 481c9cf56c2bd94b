"""Prometheus' histogram arithmetic, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from shaper_pipelines.lib.histograms import increase, parse_exposition, quantile_from_buckets

INF = math.inf
BOUNDS = [0.1, 0.2, 0.5, INF]
COUNTS = [2, 6, 8, 10]  # 2 in (0, 0.1], 4 in (0.1, 0.2], 2 in (0.2, 0.5], 2 above


@pytest.mark.parametrize("q, expected", [
    (0.1, 0.05),  # rank 1 of the first bucket's 2: halfway from 0 to 0.1
    (0.5, 0.175),  # rank 5: 3 of 4 into (0.1, 0.2]
    (0.75, 0.425),  # rank 7.5: 1.5 of 2 into (0.2, 0.5]
    (0.8, 0.5),  # rank 8: the top of (0.2, 0.5]
    (0.9, 0.5),  # rank 9 is in the +Inf bucket: the largest finite bound
    (1.0, 0.5),
])
def test_quantile_interpolates_inside_its_bucket(q, expected):
    assert quantile_from_buckets(q, BOUNDS, COUNTS) == pytest.approx(expected)


def test_quantile_of_nothing_is_nan_and_out_of_range_quantiles_are_infinite():
    assert math.isnan(quantile_from_buckets(0.95, BOUNDS, [0, 0, 0, 0]))
    assert math.isnan(quantile_from_buckets(0.95, [0.1, 0.2], [1, 2]))  # no +Inf bucket
    assert quantile_from_buckets(-0.1, BOUNDS, COUNTS) == -INF
    assert quantile_from_buckets(1.1, BOUNDS, COUNTS) == INF


def test_everything_above_the_last_finite_bound_reads_as_that_bound():
    assert quantile_from_buckets(0.5, BOUNDS, [0, 0, 0, 7]) == 0.5


def test_a_non_monotonic_reading_is_made_monotonic():
    # The 0.2 bucket read lower than the 0.1 one: taken as 2, so rank 3 is 1 of 2 into (0.2, 0.5]
    # (as read, 1 below and 3 in it, it would be 0.4).
    assert quantile_from_buckets(0.75, BOUNDS, [2, 1, 4, 4]) == pytest.approx(0.35)


def test_increase_per_bucket_and_after_a_reset():
    before = {0.1: 2.0, 0.2: 6.0, INF: 10.0}
    assert increase(before, {0.1: 3.0, 0.2: 9.0, INF: 15.0}) == {0.1: 1.0, 0.2: 3.0, INF: 5.0}
    assert increase({}, {0.1: 3.0}) == {0.1: 3.0}
    # The process restarted: its buckets count from zero again, all of them.
    assert increase(before, {0.1: 1.0, 0.2: 7.0, INF: 12.0}) == {0.1: 1.0, 0.2: 7.0, INF: 12.0}


EXPOSITION = """\
# HELP demo_requests_total Requests answered, by HTTP status.
# TYPE demo_requests_total counter
demo_requests_total{status="200"} 120.0
demo_requests_total{status="503"} 7.0
demo_requests_total{status="502"} 1.0
# HELP demo_workers Workers in the pool.
# TYPE demo_workers gauge
demo_workers 4.0
# HELP demo_busy_worker_seconds_total Busy.
# TYPE demo_busy_worker_seconds_total counter
demo_busy_worker_seconds_total 12.5
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="0.1",path="/a"} 1.0
lat_bucket{le="0.2",path="/a"} 3.0
lat_bucket{le="+Inf",path="/a"} 4.0
lat_bucket{le="0.1",path="/b"} 1.0
lat_bucket{le="0.2",path="/b"} 3.0
lat_bucket{le="+Inf",path="/b"} 6.0
lat_count{path="/a"} 4.0
lat_sum{path="/a"} 0.5
"""


def test_parse_exposition_reads_values_and_buckets():
    m = parse_exposition(EXPOSITION)
    assert m.value("demo_workers") == 4.0
    assert m.value("demo_busy_worker_seconds_total") == 12.5
    assert m.value("demo_busy_worker_seconds") == 12.5  # the family's name finds the counter
    assert m.value("demo_requests_total") == 128.0  # summed over label sets
    assert m.value("demo_requests_total", "status", ["503", "502"]) == 8.0
    assert m.value("demo_requests_total", status="200") == 120.0
    assert m.value("demo_requests_total", "status", ["504"]) is None
    assert m.value("absent") is None and not m.has("absent") and m.has("demo_workers")
    assert m.buckets("lat") == {0.1: 2.0, 0.2: 6.0, INF: 10.0}
    assert m.buckets("absent") == {}
    b = m.buckets("lat")
    assert quantile_from_buckets(0.5, list(b), list(b.values())) == pytest.approx(0.175)


def test_parse_exposition_refuses_what_is_not_the_format():
    with pytest.raises(ValueError):
        parse_exposition("this is { not metrics\n")
