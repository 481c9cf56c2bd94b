"""Capacity replay: how a scaling policy is judged (``../shared/docs/capacity-replay.md``).

At the same cost, does a policy breach less than the reactive target tracking everyone already
runs? The reactive layer runs under every predictive plan, which is only ever a floor.
Everything here follows that document step by step, so the figures can be checked on traces the
project has never seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

STEP = 300.0  # seconds: traces are judged at 5-minute means
DAY = 288  # steps per day
TEST_DAYS = 4
REACTIVE_TARGET = 0.7
TARGETS = np.round(np.arange(0.30, 0.95 + 1e-9, 0.025), 3)  # the reactive settings compared against
LAG = 1  # the reactive layer sees the demand of the previous step
BOOT = 2  # instances launched at step t serve from t + BOOT
SCALE_IN_STEPS = 3


@dataclass(frozen=True)
class Trace:
    demand: np.ndarray  # 5-minute means
    index: pd.DatetimeIndex
    c: float  # load one instance serves at 100 % utilisation
    test_days: int = TEST_DAYS

    @property
    def test_start(self) -> int:
        return len(self.demand) - self.test_days * DAY

    def origins(self) -> list[int]:
        """Forecast origins: the start of each test day."""
        return [self.test_start + d * DAY for d in range(self.test_days)]


def prepare(series: pd.Series) -> Trace:
    """5-minute means of a regular or irregular series, gaps interpolated; ``c`` = p99 / 10.

    A trace shorter than the four test days and one day of history before them is tested on
    the whole days it has after its first (fewer test days; the caller says so)."""
    from shaper_pipelines.lib.history import regularise

    regular, _ = regularise(series, STEP, max_fill=pd.Timedelta(days=3650))
    demand = regular.to_numpy(dtype=np.float64)
    test_days = min(TEST_DAYS, len(demand) // DAY - 1)
    if test_days < 1:
        raise ValueError(f"a replay needs at least 2 days of history ({2 * DAY} five-minute steps): one to "
                         f"learn from and one to test on; this trace has {len(demand)}")
    c = float(np.percentile(demand, 99)) / 10.0
    if not c > 0:
        raise ValueError("the trace's 99th percentile is not positive; there is no load to scale for")
    return Trace(demand, regular.index, c, test_days)


def wish(demand: np.ndarray, c: float, target: float) -> np.ndarray:
    """Instances wanted for ``demand`` at ``target`` utilisation: at least one."""
    return np.maximum(1, np.ceil(demand / (c * target))).astype(np.int64)


def serving(trace: Trace, target: float, plan: np.ndarray | None = None) -> np.ndarray:
    """Instances serving at each step under reactive tracking at ``target``, with ``plan`` (one
    value per step, or None) as a floor that is warm when its step begins."""
    floor = np.zeros((1, len(trace.demand)), dtype=np.int64) if plan is None else np.asarray(plan, dtype=np.int64)[None, :]
    return serving_many(trace.demand, trace.c, np.array([target]), floor)[0]


def serving_many(demand: np.ndarray, c: float, targets: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """``serving`` for K settings at once (``targets`` shape K, ``floors`` shape K x steps): one
    pass over time with the K settings side by side, which is what makes a per-series replay
    of every candidate cheap enough to run for a whole fleet."""
    targets = np.asarray(targets, dtype=np.float64)
    floors = np.asarray(floors, dtype=np.int64)
    k, n = len(targets), len(demand)
    wants = np.maximum(1, np.ceil(demand[None, :] / (c * targets[:, None]))).astype(np.int64)
    own = wants[:, 0].copy()  # the reactive layer starts settled on the first demand
    arriving = np.zeros((k, n + BOOT + 1), dtype=np.int64)
    recent = np.zeros((k, SCALE_IN_STEPS), dtype=np.int64)  # the last wishes, newest last
    seen = np.zeros(k, dtype=np.int64)  # wishes since the last scale-in, up to SCALE_IN_STEPS
    out = np.empty((k, n), dtype=np.int64)
    for t in range(n):
        own += arriving[:, t]
        if t < LAG:
            out[:, t] = np.maximum(own, floors[:, t])
            continue
        w = wants[:, t - LAG]
        recent[:, :-1] = recent[:, 1:]
        recent[:, -1] = w
        seen = np.minimum(seen + 1, SCALE_IN_STEPS)
        drop = (seen == SCALE_IN_STEPS) & (recent < own[:, None]).all(axis=1)
        own = np.where(drop, recent.max(axis=1), own)  # scale-in takes effect at once
        seen = np.where(drop, 0, seen)
        now = np.maximum(own, floors[:, t])
        # Target tracking wants what it wants of whatever is serving, the plan's instances
        # included: when the floor falls, what it still wants stays.
        own = np.maximum(own, np.minimum(w, now))
        pending = arriving[:, t + 1: t + BOOT + 1].sum(axis=1)
        arriving[:, t + BOOT] += np.maximum(w - (now + pending), 0)
        out[:, t] = now
    return out


@dataclass(frozen=True)
class Score:
    breach_pct: float
    cost: float  # instance-steps over the oracle's


def score(trace: Trace, capacity: np.ndarray) -> Score:
    s = slice(trace.test_start, None)
    d, cap = trace.demand[s], np.asarray(capacity)[s]
    oracle = wish(d, trace.c, REACTIVE_TARGET).sum()
    return Score(breach_pct=float(np.mean(d > cap * trace.c) * 100), cost=float(cap.sum() / oracle))


def reactive_frontier(trace: Trace) -> list[tuple[float, Score]]:
    caps = serving_many(trace.demand, trace.c, TARGETS, np.zeros((len(TARGETS), len(trace.demand)), dtype=np.int64))
    return [(float(t), score(trace, cap)) for t, cap in zip(TARGETS, caps)]


def breach_ratio(policy: Score, frontier: list[tuple[float, Score]]) -> float:
    """The policy's breaches over the fewest that reactive tracking reaches at no higher cost (or,
    when no reactive setting is that cheap, over the cheapest setting's)."""
    affordable = [s.breach_pct for _, s in frontier if s.cost <= policy.cost + 1e-12]
    reference = min(affordable) if affordable else min(frontier, key=lambda f: f[1].cost)[1].breach_pct
    if reference == 0:
        return 0.0 if policy.breach_pct == 0 else math.inf
    return policy.breach_pct / reference


def seasonal_naive(trace: Trace) -> np.ndarray:
    """The day-ahead forecast of every test step: the same step the day before."""
    return trace.demand[trace.test_start - DAY: len(trace.demand) - DAY]


def mae_ratio(trace: Trace, forecast: np.ndarray) -> float:
    actual = trace.demand[trace.test_start:]
    naive = np.mean(np.abs(seasonal_naive(trace) - actual))
    return float(np.mean(np.abs(np.asarray(forecast) - actual)) / naive) if naive > 0 else math.inf


def floor_from_forecast(trace: Trace, forecast: np.ndarray, target: float = REACTIVE_TARGET) -> np.ndarray:
    """A plan for the whole trace from a test-window forecast: the instances the forecast needs at
    ``target``; no floor before the test window."""
    plan = np.zeros(len(trace.demand), dtype=np.int64)
    plan[trace.test_start:] = wish(np.asarray(forecast), trace.c, target)
    return plan
