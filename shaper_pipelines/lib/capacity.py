"""How much load one instance serves, learnt from load rehearsals.

A rehearsal offers a rising load to one instance and records what it achieved. While the instance
keeps up, achieved follows offered; past its saturation point achieved flattens (or falls) however
much more is offered. An isotonic fit of achieved against offered is monotone by construction and
robust to the second-by-second noise of a real run; the saturation point is where the fit falls
below ``KEEP_UP`` of what was offered. That load is the instance's capacity at 100 % utilisation,
and utilisation at any load below it is load / capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEEP_UP = 0.95  # achieved / offered below this: the instance no longer keeps up
MIN_SAMPLES = 20


@dataclass(frozen=True)
class CapacityFit:
    capacity: float  # load per instance at 100 % utilisation
    saturated: bool  # False: the rehearsal never pushed the instance past what it served
    samples: int
    offered: np.ndarray  # the fitted curve, for plots
    achieved: np.ndarray

    def utilisation(self, load_per_instance: np.ndarray) -> np.ndarray:
        return np.asarray(load_per_instance, dtype=np.float64) / self.capacity

    def describe(self) -> str:
        if self.saturated:
            return f"saturates at {self.capacity:.4g} per instance ({self.samples} samples)"
        return (f"kept up with everything offered, up to {self.capacity:.4g} per instance: a lower bound "
                f"({self.samples} samples)")


def fit_capacity(offered: np.ndarray, achieved: np.ndarray) -> CapacityFit:
    from sklearn.isotonic import IsotonicRegression

    offered, achieved = np.asarray(offered, dtype=np.float64), np.asarray(achieved, dtype=np.float64)
    ok = np.isfinite(offered) & np.isfinite(achieved) & (offered > 0)
    offered, achieved = offered[ok], achieved[ok]
    if len(offered) < MIN_SAMPLES:
        raise ValueError(f"{len(offered)} usable samples; a capacity fit needs at least {MIN_SAMPLES}")
    order = np.argsort(offered)
    x, y = offered[order], achieved[order]
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y).predict(x)
    behind = fitted < KEEP_UP * x
    # Saturation: the first offered load from which the fit stays behind for good.
    keeping = np.flatnonzero(~behind)
    if behind[-1] and len(keeping):
        capacity, saturated = float(fitted[keeping[-1] + 1:].max()), True
    elif behind[-1]:
        capacity, saturated = float(fitted.max()), True
    else:
        capacity, saturated = float(x[-1]), False
    return CapacityFit(capacity=max(capacity, 1e-12), saturated=saturated, samples=len(x), offered=x, achieved=fitted)
