"""Capacity per instance from rehearsal samples whose saturation point is known."""

import numpy as np
import pytest

from shaper_pipelines.lib.capacity import fit_capacity


def test_saturation_is_found_in_noisy_samples():
    rng = np.random.default_rng(0)
    offered = np.linspace(1, 400, 600)
    achieved = np.minimum(offered, 250) * (1 + 0.02 * rng.standard_normal(len(offered)))
    fit = fit_capacity(offered, achieved)
    assert fit.saturated and fit.capacity == pytest.approx(250, rel=0.05)
    assert fit.utilisation(np.array([125.0]))[0] == pytest.approx(0.5, rel=0.05)


def test_a_rehearsal_that_never_saturates_gives_a_lower_bound():
    offered = np.linspace(1, 100, 200)
    fit = fit_capacity(offered, offered * 0.99)
    assert not fit.saturated and fit.capacity == pytest.approx(100)
    assert "lower bound" in fit.describe()


def test_too_few_samples_are_refused():
    with pytest.raises(ValueError, match="at least"):
        fit_capacity(np.array([1.0, 2.0, np.nan]), np.array([1.0, 2.0, 3.0]))
