"""lib.response_model: the load at which a latency objective is first broken, and the fitted
utilisation curve, on synthetic rehearsals whose true answers are known in closed form, and once
on the demo service over real HTTP."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.response_model import (
    Objective,
    ResponseModel,
    fit_response,
    is_stale,
)

MU = 200.0  # requests/s one instance serves at most
Z95 = math.log(20.0)  # M/M/1: the sojourn time is exponential with rate mu - lambda; its p95 is ln 20 / (mu - lambda)


def p95_ms(load):
    return 1000.0 * Z95 / (MU - np.asarray(load, dtype=float))


def true_crossing(latency_ms: float) -> float:
    """The load at which the M/M/1 p95 reaches ``latency_ms``."""
    return MU - 1000.0 * Z95 / latency_ms


def rehearsal(loads, seconds_each: int = 4, noise: float = 0.10, seed: int = 0, errors=None) -> pd.DataFrame:
    """One row per second: offered held ``seconds_each`` seconds at each load, M/M/1 latency with
    multiplicative noise, utilisation load / MU with a little noise, throughput flat past MU."""
    rng = np.random.default_rng(seed)
    offered = np.repeat(np.asarray(loads, dtype=float), seconds_each)
    n = len(offered)
    achieved = np.minimum(offered, MU) * (1 + rng.normal(0, 0.01, n))
    latency = np.where(offered < MU, p95_ms(np.minimum(offered, MU - 1e-3)), 5000.0) * rng.lognormal(0, noise, n)
    utilisation = np.clip(np.minimum(offered / MU, 1.0) + rng.normal(0, 0.01, n), 0, 1)
    frame = pd.DataFrame({"offered": offered, "achieved": achieved, "utilisation": utilisation,
                          "latency_ms": latency, "errors": 0.0 if errors is None else errors(offered, achieved)})
    return frame


def test_capacity_at_the_latency_objective_within_a_few_percent_of_the_known_crossing():
    objective = Objective(quantile=0.95, latency_ms=250.0)
    truth = true_crossing(250.0)  # 188.0
    model = fit_response(rehearsal(np.arange(10, 200, 2.0)), objective)
    assert model.bound == "objective" and model.broken_by == "latency"
    assert abs(model.capacity / truth - 1) < 0.03, (model.capacity, truth)
    assert model.saturation is not None and model.saturation >= model.capacity
    assert model.samples == 4 * len(np.arange(10, 200, 2.0))
    assert model.utilisation_source == "measured"
    assert "p95 under 250 ms up to" in model.describe() and "broken by latency" in model.describe()
    # the fitted latency curve follows the true one inside the visited range and is NaN beyond it
    assert abs(model.latency_at(100.0)[0] / p95_ms(100.0) - 1) < 0.15
    assert np.isnan(model.latency_at([5.0, 250.0])).all()


def test_coarse_steps_interpolate_between_the_last_step_under_and_the_first_over():
    """A step rehearsal (20 %, 40 %, ... of nominal): the crossing lies between two steps and is
    interpolated between them, not rounded to either."""
    steps = MU * np.array([0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0, 1.1])
    model = fit_response(rehearsal(steps, seconds_each=8, noise=0.03), Objective(0.95, 100.0))
    truth = true_crossing(100.0)  # 170.0, between the 160 and 180 steps
    assert model.bound == "objective"
    assert 160 < model.capacity < 180
    # the interpolation is linear between the fitted step means: within the curvature's error
    assert abs(model.capacity / truth - 1) < 0.05, (model.capacity, truth)


def test_a_rehearsal_that_never_broke_the_objective_is_a_lower_bound():
    frame = rehearsal(np.arange(10, 121, 5.0))
    model = fit_response(frame, Objective(0.95, 250.0))
    assert model.bound == "lower" and model.broken_by is None
    assert model.capacity == frame["offered"].max() == model.visited[1]
    assert "lower bound" in model.describe() and "never broke p95 250 ms up to 120" in model.describe()


def test_the_error_budget_broken_before_latency():
    """Errors start at 120/s (a dependency failing), well before latency breaks at 188/s."""
    def errors(offered, achieved):
        return np.where(offered >= 120, 0.05 * achieved, 0.0)

    model = fit_response(rehearsal(np.arange(10, 200, 2.0), errors=errors), Objective(0.95, 250.0, error_ratio=0.01))
    assert model.broken_by == "errors" and model.bound == "objective"
    assert 118 - 1e-9 <= model.capacity <= 120 + 1e-9
    assert "broken by errors" in model.describe()


def test_utilisation_interpolated_at_a_load_the_rehearsal_did_not_visit():
    loads = np.concatenate([np.arange(40, 91, 10.0), np.arange(150, 191, 10.0)])
    model = fit_response(rehearsal(loads), Objective(0.95, 250.0))
    assert abs(model.utilisation_at(120.0)[0] - 120 / MU) < 0.03
    # below the lowest visited load: proportional through the origin
    assert abs(model.utilisation_at(20.0)[0] - 20 / MU) < 0.02
    assert model.utilisation_at(0.0)[0] == 0.0
    # above the highest: the proportional extension, clipped at 1
    top = model.utilisation_curve[-1]
    assert model.utilisation_at(195.0)[0] == pytest.approx(min(1.0, top[1] * 195.0 / top[0]))
    assert model.utilisation_at(10_000.0)[0] == 1.0
    assert np.isnan(model.utilisation_at([-1.0, np.nan])).all()
    # monotone everywhere
    grid = np.linspace(0, 400, 200)
    assert (np.diff(model.utilisation_at(grid)) >= -1e-12).all()


def test_without_measured_utilisation_it_falls_back_to_the_throughput_ceiling():
    frame = rehearsal(np.arange(20, 261, 5.0)).assign(utilisation=np.nan)
    model = fit_response(frame, Objective(0.95, 250.0))
    assert model.utilisation_source == "throughput"
    assert model.saturated and abs(model.saturation / MU - 1) < 0.05
    assert model.utilisation_at(100.0)[0] == pytest.approx(100.0 / model.saturation)
    frame = frame.drop(columns="utilisation")
    assert fit_response(frame, Objective(0.95, 250.0)).utilisation_source == "throughput"


def test_nan_ridden_rows_are_left_out_where_they_say_nothing():
    frame = rehearsal(np.arange(10, 200, 2.0), seed=3)
    rng = np.random.default_rng(7)
    for column in ("latency_ms", "utilisation", "achieved", "errors"):
        frame.loc[rng.random(len(frame)) < 0.2, column] = np.nan
    bad = rng.random(len(frame)) < 0.1
    frame.loc[bad, "offered"] = rng.choice([np.nan, np.inf, 0.0, -5.0], bad.sum())
    model = fit_response(frame, Objective(0.95, 250.0))
    assert model.samples == int((~bad).sum())
    assert abs(model.capacity / true_crossing(250.0) - 1) < 0.03
    assert model.broken_by == "latency"
    assert abs(model.utilisation_at(100.0)[0] - 0.5) < 0.03


def test_errors_where_nothing_completed_break_the_budget():
    frame = rehearsal(np.arange(10, 150, 5.0))
    frame.loc[frame["offered"] >= 100, ["achieved", "latency_ms"]] = [0.0, np.nan]
    frame.loc[frame["offered"] >= 100, "errors"] = 10.0
    model = fit_response(frame, Objective(0.95, 250.0))
    assert model.broken_by == "errors" and 95 <= model.capacity <= 100


def test_seconds_before_the_load_reached_the_service_are_left_out():
    """A load generator takes seconds to start: those seconds show nothing achieved, no errors and
    an idle service, and must not pull the lowest step's utilisation down."""
    frame = rehearsal(np.arange(20, 200, 20.0), seconds_each=5)
    frame.loc[:2, ["achieved", "utilisation", "latency_ms", "errors"]] = [0.0, 0.0, np.nan, 0.0]
    model = fit_response(frame, Objective(0.95, 250.0))
    assert model.samples == len(frame) - 3
    assert abs(model.utilisation_at(20.0)[0] - 0.1) < 0.02


def test_broken_already_at_the_lowest_load_is_an_upper_bound():
    model = fit_response(rehearsal(np.arange(150, 200, 2.0)), Objective(0.95, 20.0))
    assert model.bound == "upper" and model.capacity == 150.0
    assert "upper bound" in model.describe()


def test_too_few_rows_is_a_clear_error():
    frame = rehearsal([50.0], seconds_each=7)
    with pytest.raises(ValueError, match="7 usable rehearsal rows.*at least 8"):
        fit_response(frame, Objective(0.95, 250.0))
    frame = rehearsal([50.0], seconds_each=20).assign(offered=np.nan)
    with pytest.raises(ValueError, match="0 usable"):
        fit_response(frame, Objective(0.95, 250.0))
    with pytest.raises(ValueError, match="offered"):
        fit_response(pd.DataFrame({"load": [1.0] * 10}), Objective(0.95, 250.0))
    # few rows but enough for min_samples: no throughput ceiling (fit_capacity wants 20), still a model
    model = fit_response(rehearsal([50.0, 100.0], seconds_each=5), Objective(0.95, 250.0))
    assert model.saturation is None and "no throughput ceiling" in model.describe()


def test_objective_is_checked():
    for bad in ({"quantile": 95, "latency_ms": 250}, {"quantile": 0.95, "latency_ms": 0},
                {"quantile": 0.95, "latency_ms": float("nan")}, {"quantile": 0.95, "latency_ms": 1, "error_ratio": -1}):
        with pytest.raises(ValueError):
            Objective(**bad)
    assert Objective(0.99, 10).label == "p99" and Objective(0.5, 10).label == "p50"


def test_stale_by_age_and_by_version():
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    week = timedelta(days=7)
    assert is_stale(now - timedelta(days=2), now, week, "1.2", "1.2") is None
    assert is_stale(now - timedelta(days=9), now, week, "1.2", "1.2") == "rehearsed 9 days ago, older than 7 days"
    assert is_stale(now - timedelta(days=1), now, week, "1.2", "1.3") == "rehearsed on service version 1.2, now 1.3"
    both = is_stale(now - timedelta(days=9), now, week, "1.2", "1.3")
    assert "9 days ago" in both and "now 1.3" in both
    # once a current version is named, a rehearsal that recorded none cannot be shown to be of it;
    # with none named, versions are not compared; naive times read as UTC
    assert is_stale(datetime(2026, 12, 1, 12), now, week, None, "1.3") == \
        "rehearsed on no recorded service version, now 1.3"
    assert is_stale(datetime(2026, 12, 1, 12), now, week, None, None) is None
    assert is_stale(now - timedelta(hours=30), now, timedelta(hours=24), "a", None) == \
        "rehearsed 1 day ago, older than 1 day"


def test_to_dict_round_trip_is_json_safe():
    model = fit_response(rehearsal(np.arange(10, 200, 2.0)).assign(run_key=lambda f: f.index // 200),
                         Objective(0.99, 400.0, 0.02))
    data = model.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = ResponseModel.from_dict(json.loads(text))
    assert back == model
    assert back.describe() == model.describe() and model.runs == 2
    loads = np.linspace(0, 300, 31)
    np.testing.assert_array_equal(back.utilisation_at(loads), model.utilisation_at(loads))
    pd.testing.assert_frame_equal(back.curve, model.curve)
    assert list(model.curve.columns) == ["offered", "utilisation", "latency_ms", "error_ratio"]
    with pytest.raises(ValueError, match="format"):
        ResponseModel.from_dict({**data, "format": "other"})


def test_a_real_demo_service_over_loopback():
    """The demo service (4 workers x 20 ms: 200/s) under evenly spaced open-loop steps, its
    /metrics read every second as a rehearsal's monitor does: with evenly spaced arrivals the p95
    stays near the work time until the pool saturates, so the objective (50 ms) breaks between the
    120/s and 240/s steps; the utilisation curve at an unvisited 100/s is about 100 x 0.02 / 4."""
    import threading
    import time
    import urllib.request

    from shaper_pipelines.demo_service import start_demo_service
    from shaper_pipelines.lib.histograms import (
        increase,
        parse_exposition,
        quantile_from_buckets,
    )
    from shaper_pipelines_tests.demo_service.open_loop import offer

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def read(url):
        with opener.open(f"{url}/metrics", timeout=5) as response:
            e = parse_exposition(response.read().decode())
        return (time.perf_counter(), e.value("demo_busy_worker_seconds"), e.value("demo_requests", status="200"),
                e.value("demo_requests", status="503"), e.buckets("demo_request_duration_seconds"))

    rows = []
    with start_demo_service(mode="pool", workers=4, work_ms=20.0, queue=16) as service:
        for rate in (40.0, 80.0, 120.0, 240.0):
            worker = threading.Thread(target=offer, args=(service.url, rate, 2.0), kwargs={"threads": 32})
            start = time.perf_counter()
            worker.start()
            before = read(service.url)
            for k in (1, 2):
                time.sleep(max(0.0, start + k - time.perf_counter()))
                after = read(service.url)
                dt = after[0] - before[0]
                buckets = increase(before[4], after[4])
                p95 = quantile_from_buckets(0.95, list(buckets), list(buckets.values()))
                rows.append({"offered": rate, "achieved": (after[2] - before[2]) / dt,
                             "errors": (after[3] - before[3]) / dt, "utilisation": (after[1] - before[1]) / 4 / dt,
                             "latency_ms": p95 * 1000})
                before = after
            worker.join()
    model = fit_response(pd.DataFrame(rows), Objective(0.95, 50.0), min_samples=8)
    assert model.bound == "objective", (model.describe(), rows)
    assert 120 <= model.capacity <= 240, (model.describe(), rows)
    assert abs(model.utilisation_at(100.0)[0] - 0.5) < 0.06, (model.curve, rows)
