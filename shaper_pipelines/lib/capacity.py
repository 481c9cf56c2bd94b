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
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

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


def utilisation_at_plan(utilisation: pd.DataFrame, plan: pd.DataFrame,
                        curves: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None) -> pd.DataFrame:
    """Predicted utilisation at the capacity the scaling plan will have serving: per target and
    forecast step, ``utilisation`` (columns target, timestamp, utilization_p50, utilization_p90 and
    capacity, the instances those are computed at) rescaled to the plan's floor in force at that
    step (``plan``: target, timestamp, desired_capacity; the floor of a plan step holds until the
    next one, and the last for one more step). The plan keeps its floor within the target's
    minimum and maximum, so demand beyond what the maximum serves shows as utilisation above 1.
    Steps the plan does not cover, and targets without a plan, are left out. Columns: target,
    timestamp, utilization_p50, utilization_p90, capacity (the planned floor), and demand_p50 and
    demand_p90 when ``utilisation`` has them.

    A target in ``curves`` (load per instance -> utilisation: a rehearsed service's fitted curve)
    is mapped through it at the planned floor, from ``utilisation``'s demand columns, instead of
    rescaled: its utilisation need not be proportional to its load."""
    import pandas as pd

    columns = ["target", "timestamp", "utilization_p50", "utilization_p90", "capacity"]
    if not len(utilisation) or not len(plan):
        return pd.DataFrame(columns=columns)

    def utc(column):
        t = pd.to_datetime(column)
        return (t.dt.tz_localize("UTC") if t.dt.tz is None else t.dt.tz_convert("UTC")).astype("datetime64[ns, UTC]")

    frames = []
    u_all = utilisation.assign(timestamp=utc(utilisation["timestamp"]))
    p_all = plan.assign(timestamp=utc(plan["timestamp"]))
    for name, u in u_all.groupby("target", sort=True):
        p = p_all[p_all["target"] == name].sort_values("timestamp", kind="stable")
        if not len(p):
            continue
        step = p["timestamp"].diff().median() if len(p) > 1 else pd.Timedelta(0)
        u = u.sort_values("timestamp", kind="stable")
        u = u[(u["timestamp"] >= p["timestamp"].iloc[0]) & (u["timestamp"] <= p["timestamp"].iloc[-1] + step)]
        if not len(u):
            continue
        floor = pd.merge_asof(u[["timestamp"]], p[["timestamp", "desired_capacity"]], on="timestamp",
                              direction="backward")["desired_capacity"].to_numpy(dtype=float)
        at = u["capacity"].to_numpy(dtype=float)
        ok = np.isfinite(floor) & (floor > 0)
        per = np.where(ok, floor, 1.0)
        scale = np.where(ok, at / per, np.nan)
        out = {"target": name, "timestamp": u["timestamp"].to_numpy(), "capacity": floor}
        demand = "demand_p50" in u.columns and "demand_p90" in u.columns
        curve = (curves or {}).get(name) if demand else None
        for p in ("p50", "p90"):
            if curve is not None:
                out[f"utilization_{p}"] = np.where(ok, curve(u[f"demand_{p}"].to_numpy(dtype=float) / per), np.nan)
            else:
                out[f"utilization_{p}"] = u[f"utilization_{p}"].to_numpy(dtype=float) * scale
        if demand:
            out.update(demand_p50=u["demand_p50"].to_numpy(dtype=float), demand_p90=u["demand_p90"].to_numpy(dtype=float))
        frames.append(pd.DataFrame(out)[ok])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
