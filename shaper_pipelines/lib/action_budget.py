"""A floor within a budget of changes: every change of a plan's floor becomes one scheduled action on
AWS, and AWS allows at most 125 per Auto Scaling group and 200 per Application Auto Scaling
scalable target, the owner's own included. A plan is therefore made with at most ``budget``
constant segments (one scheduled action each).

How the changes are merged was chosen by the capacity replay (``benchmarks/replay.py`` on the last
four days of every real trace, ``benchmarks/merges.py`` on many earlier four-day windows, both
through the same planning code): ``envelope``, the default, is the cheapest floor with at most
``budget`` segments that is nowhere below the unlimited floor, so it never breaches where that
would not; found exactly, by dynamic programming over the floor's runs. ``fit`` may dip below
(the closest floor, an instance-step short counting twice one over); AWS predictive scaling's
hourly blocks and a minimum dwell never go below but cost more for the same budget. They all came
out close to the unlimited plan; the envelope closest, with the guarantee besides.
"""

from __future__ import annotations

import math

import numpy as np

BUDGET_WINDOW_HOURS = 48.0  # AWS-facing budgets are stated per 48 hours of plan
# Scheduled actions shaper may hold on one target per 48 hours of plan: 100 of the 125 an Auto
# Scaling group allows (lib.scaling_config.SCHEDULED_ACTION_QUOTA) leaves the owner 25 of their own.
DEFAULT_MAX_ACTIONS = 100


def segments(values: np.ndarray) -> int:
    """How many constant runs ``values`` has: the scheduled actions it takes to apply."""
    v = np.asarray(values)
    return 0 if v.size == 0 else int(np.count_nonzero(v[1:] != v[:-1])) + 1


def budget_for(max_actions: int, horizon_hours: float) -> int:
    """The segments a plan over ``horizon_hours`` may have when ``max_actions`` is the budget per
    48 hours: pro rata below 48 hours (so that daily re-planning keeps the same pace), never more
    than ``max_actions`` above (that is what the group holds at once)."""
    return max(1, math.floor(max_actions * min(1.0, horizon_hours / BUDGET_WINDOW_HOURS)))


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start index, length and value of each constant run."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lengths = np.diff(np.r_[starts, len(values)])
    return starts, lengths, values[starts]


def envelope(values: np.ndarray, budget: int) -> np.ndarray:
    """The cheapest floor with at most ``budget`` constant segments that is nowhere below ``values``."""
    return fit(values, budget, under_weight=math.inf)


def fit(values: np.ndarray, budget: int, under_weight: float = math.inf) -> np.ndarray:
    """The floor with at most ``budget`` constant segments closest to ``values``, where each
    instance-step above them costs 1 and each instance-step below them ``under_weight``
    (infinite: never below, the envelope).

    Exact: over the floor's r runs, a segment from run i to run j costs the least, over every level
    the floor takes, of its weighted distance; best[k][j] = min over i of best[k-1][i-1] + cost(i, j),
    one vectorised r x r step per segment added. r is at most a plan's steps (576 for 48 hours of
    5-minute steps) and the levels are a few dozen instance counts."""
    values = np.asarray(values)
    if budget < 1:
        raise ValueError(f"a plan needs at least one segment, not a budget of {budget}")
    starts, lengths, level = _runs(values)
    r = len(starts)
    if r <= budget:
        return values.copy()
    idx = np.arange(r)
    upper = idx[None, :] >= idx[:, None]  # a segment from run i (row) to run j (column)
    cost = np.full((r, r), np.inf)
    held = np.zeros((r, r), dtype=level.dtype)  # the level each segment is held at
    for v in np.unique(level):
        over = np.r_[0, np.cumsum(lengths * np.maximum(v - level, 0))]
        under = np.r_[0, np.cumsum(lengths * np.maximum(level - v, 0))]
        o = over[None, 1:] - over[:-1, None]
        u = under[None, 1:] - under[:-1, None]
        c = np.where(u > 0, np.inf, o) if math.isinf(under_weight) else o + under_weight * u
        c = np.where(upper, c, np.inf)
        better = c < cost
        cost = np.where(better, c, cost)
        held = np.where(better, v, held)
    best = cost[0].copy()  # at most one segment: runs 0..j
    # start[k][j]: the run where the last of at most k+1 segments covering runs 0..j begins;
    # -1 where k+1 segments do no better than k.
    start = np.zeros((budget, r), dtype=np.int64)
    for k in range(1, budget):
        candidates = best[:-1, None] + cost[1:, :]  # row i: the last segment starts at run i + 1
        i = candidates.argmin(axis=0)
        found = candidates[i, idx]
        better = found < best
        start[k] = np.where(better, i + 1, -1)
        best = np.where(better, found, best)
    out = np.empty_like(values)
    j, k = r - 1, budget - 1
    while j >= 0:
        while k > 0 and start[k][j] == -1:
            k -= 1
        i = int(start[k][j])
        out[starts[i]: starts[j] + lengths[j]] = held[i, j]
        j, k = i - 1, k - 1
    return out


def hourly_blocks(values: np.ndarray, budget: int, steps_per_hour: int) -> np.ndarray:
    """Each clock hour at its highest value (AWS predictive scaling's hourly schedule), then the
    envelope if the hours alone still exceed the budget."""
    values = np.asarray(values)
    n = len(values)
    pad = (-n) % steps_per_hour
    blocks = np.r_[values, np.repeat(values[-1:], pad)].reshape(-1, steps_per_hour).max(axis=1)
    out = np.repeat(blocks, steps_per_hour)[:n].astype(values.dtype)
    return envelope(out, budget)


def min_dwell(values: np.ndarray, budget: int) -> np.ndarray:
    """Every segment held at least ``len(values) / budget`` steps: runs are merged left to right,
    each merged block at its highest value, then the envelope for what is left over."""
    values = np.asarray(values)
    dwell = max(1, len(values) // budget)
    out = values.copy()
    starts, lengths, _ = _runs(values)
    i = 0
    while i < len(starts):
        j, span = i, int(lengths[i])
        while span < dwell and j + 1 < len(starts):
            j += 1
            span += int(lengths[j])
        block = slice(starts[i], starts[i] + span)
        out[block] = values[block].max()
        i = j + 1
    return envelope(out, budget)


UNDER_WEIGHT = 2.0  # the fit merge: an instance-step short of the plan counts twice one over it
DEFAULT_MERGE = "envelope"
MERGES = ("envelope", "fit", "hourly", "dwell")


def within_budget(values: np.ndarray, budget: int | None, *, merge: str = DEFAULT_MERGE,
                  steps_per_hour: int = 12) -> np.ndarray:
    """``values`` merged by ``merge`` to at most ``budget`` segments (None: as they are)."""
    if budget is None:
        return np.asarray(values).copy()
    if merge == "fit":
        return fit(values, budget, UNDER_WEIGHT)
    if merge == "envelope":
        return envelope(values, budget)
    if merge == "hourly":
        return hourly_blocks(values, budget, steps_per_hour)
    if merge == "dwell":
        return min_dwell(values, budget)
    raise ValueError(f"unknown merge {merge!r}; one of {', '.join(MERGES)}")
