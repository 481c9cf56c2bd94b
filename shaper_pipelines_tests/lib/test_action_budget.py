"""Floors within a budget of changes (scheduled actions): exact, never below what they merge."""

import itertools

import numpy as np
import pytest

from shaper_pipelines.lib.action_budget import (
    budget_for, envelope, fit, hourly_blocks, min_dwell, segments, within_budget,
)


def _brute_force(values: np.ndarray, budget: int, under_weight: float) -> float:
    """The least weighted distance over every split into at most ``budget`` segments and every level."""
    best = np.inf
    levels = np.unique(values)
    for k in range(1, budget + 1):
        for cuts in itertools.combinations(range(1, len(values)), k - 1):
            bounds = [0, *cuts, len(values)]
            total = 0.0
            for a, b in zip(bounds[:-1], bounds[1:]):
                part = values[a:b]
                total += min(np.sum(np.maximum(v - part, 0)) + (
                    np.inf if np.isinf(under_weight) and (part > v).any() else
                    (0 if np.isinf(under_weight) else under_weight * np.sum(np.maximum(part - v, 0))))
                    for v in levels)
            best = min(best, total)
    return best


def _distance(floor, values, under_weight):
    over = np.sum(np.maximum(floor - values, 0))
    under = np.sum(np.maximum(values - floor, 0))
    return over if np.isinf(under_weight) else over + under_weight * under


@pytest.mark.parametrize("under_weight", [np.inf, 2.0])
def test_the_merge_is_the_best_there_is(under_weight):
    rng = np.random.default_rng(3)
    for _ in range(150):
        values = rng.integers(1, 7, int(rng.integers(1, 9)))
        budget = int(rng.integers(1, 5))
        out = fit(values, budget, under_weight)
        assert segments(out) <= budget
        assert _distance(out, values, under_weight) == pytest.approx(_brute_force(values, budget, under_weight))


def test_the_envelope_never_goes_below_and_keeps_what_fits():
    rng = np.random.default_rng(7)
    values = rng.integers(2, 20, 576)  # 48 hours of 5-minute steps, changing almost every step
    for budget in (1, 12, 50, 100):
        out = envelope(values, budget)
        assert segments(out) <= budget and (out >= values).all() and out.dtype == values.dtype
    within = np.repeat([3, 5, 4], 10)
    assert np.array_equal(envelope(within, 3), within)  # already within budget: unchanged
    assert np.array_equal(envelope(within, 1), np.full(30, 5))


def test_the_simpler_merges_cover_too_and_cost_more():
    rng = np.random.default_rng(11)
    values = np.repeat(rng.integers(2, 20, 144), 4)
    best = envelope(values, 50).sum()
    for out in (hourly_blocks(values, 50, 12), min_dwell(values, 50), within_budget(values, 50, merge="hourly")):
        assert segments(out) <= 50 and (out >= values).all() and out.sum() >= best


def test_budgets_are_per_48_hours_and_pro_rata_below():
    assert budget_for(100, 48) == 100 and budget_for(100, 24) == 50 and budget_for(100, 168) == 100
    assert budget_for(100, 0.1) == 1
    with pytest.raises(ValueError, match="unknown merge"):
        within_budget(np.ones(3), 2, merge="sideways")
    assert np.array_equal(within_budget(np.array([1, 2, 1]), None), [1, 2, 1])


def test_the_fit_merge_may_dip_below_a_short_valley_but_keeps_the_peaks():
    # A busy day with brief lulls: holding 9 through each 5-minute lull costs 6 instance-steps,
    # dropping to 3 for it and rising again costs two of the budget's changes.
    values = np.array([3] * 6 + [9, 9, 9, 3, 9, 9, 9, 3, 9, 9, 9] + [3] * 6)
    out = within_budget(values, 3, merge="fit")
    assert segments(out) <= 3 and (out[6:17] == 9).all() and out.max() == 9
    covered = within_budget(values, 3)  # the default, the envelope, never dips
    assert segments(covered) <= 3 and (covered >= values).all()

