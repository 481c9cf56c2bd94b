"""How one instance responds to load, learnt from a rehearsal: the load per instance at which its
latency objective is first broken, and its utilisation at any load, through fitted curves.

``lib.capacity.fit_capacity`` finds where throughput saturates. A service usually breaks its latency
objective (a p95 or p99 threshold) well before that: requests queue as the workers fill, and the
tail climbs while achieved throughput still follows what is offered. The load a plan may put on an
instance is therefore the lower of

- the load at which the fitted latency quantile first exceeds the objective's threshold, and
- the load at which the fitted error ratio (failed / completed requests) first exceeds the
  objective's error budget,

found on monotone (isotonic, increasing) fits of each against offered load, so the second-by-second
noise of a real run neither makes a crossing early nor hides one. Between the last fitted point
under the threshold and the first over it the crossing is linearly interpolated.

When the rehearsal never broke the objective, the capacity is the highest load it visited, and it
is only a lower bound (``bound == "lower"``); when the objective was broken already at the lowest
load visited, the capacity is that load and it is only an upper bound (``bound == "upper"``).

Assumptions of the utilisation curve (``ResponseModel.utilisation_at``)
-----------------------------------------------------------------------
- Within the visited range: an isotonic increasing fit of the measured utilisation against
  offered load, linearly interpolated between its fitted points;
- below the lowest load visited: proportional to load, through the origin (no load, no work) and
  the lowest fitted point;
- above the highest load visited: the proportional extension from the highest fitted point
  (utilisation / load held constant), clipped at 1.0 — past the visited range nothing better is
  known than that each request costs what it cost there;
- every value clipped to [0, 1].
- Without any measured utilisation (the column all NaN), the curve falls back to load / the
  throughput ceiling from ``fit_capacity`` (``utilisation_source == "throughput"``), as the plan
  did before; without that ceiling either (too few rows for ``fit_capacity``) it is NaN
  (``utilisation_source == "none"``).

Rows: one per rehearsal second (``offered``, ``achieved``, ``utilisation``, ``latency_ms``,
``errors``, optionally ``run_key``). Left out: rows without a finite offered load above 0, and
seconds in which nothing completed and nothing failed (the load had not reached the service: a
load generator still starting; their utilisation of 0 would drag the curve down). A second whose
latency is NaN is left out of the latency fit; its errors still count in the error ratio (errors
over nothing completed is the whole budget broken). Pure: numpy, pandas and scikit-learn, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

# An error ratio where nothing completed (errors over zero): infinite, kept finite for the fit.
_ERROR_RATIO_CAP = 1000.0
_FORMAT = "response_model/1"


@dataclass(frozen=True)
class Objective:
    quantile: float  # 0.5, 0.95 or 0.99
    latency_ms: float  # > 0
    error_ratio: float = 0.01  # error budget: failed / completed requests

    def __post_init__(self):
        if not (isinstance(self.quantile, (int, float)) and 0.0 < self.quantile < 1.0):
            raise ValueError(f"objective quantile {self.quantile!r}: between 0 and 1 (0.5, 0.95 or 0.99)")
        if not (isinstance(self.latency_ms, (int, float)) and math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ValueError(f"objective latency {self.latency_ms!r} ms: a finite number above 0")
        if not (isinstance(self.error_ratio, (int, float)) and math.isfinite(self.error_ratio)
                and self.error_ratio >= 0):
            raise ValueError(f"objective error ratio {self.error_ratio!r}: a finite number, 0 or more")

    @property
    def label(self) -> str:
        """p50, p95, p99, p99.9."""
        return f"p{self.quantile * 100:.4g}"

    def to_dict(self) -> dict:
        return {"quantile": float(self.quantile), "latency_ms": float(self.latency_ms),
                "error_ratio": float(self.error_ratio)}


Curve = tuple[tuple[float, float], ...]  # fitted (offered, value) points, offered increasing


def _isotonic(x: np.ndarray, y: np.ndarray) -> Curve:
    """The increasing isotonic fit of y on x, as its breakpoints: linear interpolation between them
    is the fit at every x (sklearn's own ``predict``)."""
    from sklearn.isotonic import IsotonicRegression

    if not len(x):
        return ()
    if len(np.unique(x)) == 1:
        return ((float(x[0]), float(np.mean(y))),)
    fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y)
    return tuple((float(a), float(b)) for a, b in zip(fit.X_thresholds_, fit.y_thresholds_))


def _crossing(curve: Curve, threshold: float) -> tuple[float, str] | None:
    """The first load at which ``curve`` exceeds ``threshold``, interpolated linearly between the last
    fitted point under it and the first over; with ``"upper"`` when the first point is over."""
    for i, (x, y) in enumerate(curve):
        if y > threshold:
            if i == 0:
                return x, "upper"
            x0, y0 = curve[i - 1]
            return x0 + (threshold - y0) / (y - y0) * (x - x0), "objective"
    return None


def _interp(curve: Curve, load: np.ndarray) -> np.ndarray:
    xs = np.array([p[0] for p in curve])
    ys = np.array([p[1] for p in curve])
    if len(xs) == 1:
        return np.where(load == xs[0], ys[0], np.nan)
    return np.interp(load, xs, ys)


@dataclass(frozen=True)
class ResponseModel:
    objective: Objective
    capacity: float  # offered load per instance at which the objective is first broken
    bound: str  # "objective": crossed; "lower": never broken (capacity = highest load visited);
    # "upper": broken already at the lowest load visited (capacity = that load)
    broken_by: str | None  # "latency", "errors" or None
    saturation: float | None  # throughput ceiling from fit_capacity (None: it could not fit)
    saturated: bool  # False: the rehearsal never pushed throughput past what it served
    utilisation_source: str  # "measured", "throughput" or "none"
    visited: tuple[float, float]  # (min, max) offered load
    samples: int  # rows used
    runs: int = 1
    latency_curve: Curve = field(default=(), repr=False)
    error_curve: Curve = field(default=(), repr=False)
    utilisation_curve: Curve = field(default=(), repr=False)

    # -- curves -----------------------------------------------------------------------------------

    def utilisation_at(self, load) -> np.ndarray:
        """Predicted utilisation (0..1) at ``load`` requests/s per instance (see the module's
        assumptions); NaN for a negative or non-finite load."""
        load = np.atleast_1d(np.asarray(load, dtype=np.float64))
        bad = ~np.isfinite(load) | (load < 0)
        safe = np.where(bad, 0.0, load)
        if self.utilisation_source == "measured":
            curve = self.utilisation_curve
            (x_lo, y_lo), (x_hi, y_hi) = curve[0], curve[-1]
            inside = _interp(curve, np.clip(safe, x_lo, x_hi)) if len(curve) > 1 else np.full_like(safe, y_lo)
            out = np.where(safe < x_lo, y_lo * safe / x_lo,
                           np.where(safe > x_hi, y_hi * safe / x_hi, inside))
        elif self.utilisation_source == "throughput" and self.saturation:
            out = safe / self.saturation
        else:
            out = np.full_like(safe, np.nan)
        return np.where(bad, np.nan, np.clip(out, 0.0, 1.0))

    def latency_at(self, load) -> np.ndarray:
        """The fitted latency quantile (ms) at ``load``; NaN beyond the visited range."""
        return self._inside(self.latency_curve, load)

    def error_ratio_at(self, load) -> np.ndarray:
        """The fitted error ratio at ``load``; NaN beyond the visited range."""
        return self._inside(self.error_curve, load)

    def _inside(self, curve: Curve, load) -> np.ndarray:
        load = np.atleast_1d(np.asarray(load, dtype=np.float64))
        if not curve:
            return np.full_like(load, np.nan)
        lo, hi = curve[0][0], curve[-1][0]
        ok = np.isfinite(load) & (load >= lo) & (load <= hi)
        return np.where(ok, _interp(curve, np.where(ok, load, lo)), np.nan)

    @property
    def curve(self) -> pd.DataFrame:
        """The fitted points, for plots: offered, utilisation, latency_ms, error_ratio (NaN where a
        curve has no point at that load)."""
        loads = sorted({x for c in (self.latency_curve, self.error_curve, self.utilisation_curve) for x, _ in c})
        loads = np.array(loads, dtype=np.float64)
        return pd.DataFrame({"offered": loads,
                             "utilisation": self.utilisation_at(loads) if len(loads) else loads,
                             "latency_ms": self.latency_at(loads) if len(loads) else loads,
                             "error_ratio": self.error_ratio_at(loads) if len(loads) else loads})

    # -- words ------------------------------------------------------------------------------------

    def describe(self) -> str:
        o = self.objective
        target = f"{o.label} {o.latency_ms:.4g} ms"
        if self.saturation is None:
            sat = "no throughput ceiling fitted"
        elif self.saturated:
            sat = f"saturates at {self.saturation:.4g}"
        else:
            sat = f"kept up with everything offered, up to {self.saturation:.4g}"
        runs = f" in {self.runs} runs" if self.runs > 1 else ""
        tail = f"from {self.samples} s of rehearsal{runs}"
        if self.bound == "lower":
            return (f"never broke {target} up to {self.capacity:.4g} req/s per instance (nor the error budget, "
                    f"{o.error_ratio:.3g}): a lower bound ({sat}); {tail}")
        if self.bound == "upper":
            return (f"broke {target} already at the lowest load visited, {self.capacity:.4g} req/s per instance: "
                    f"an upper bound (objective broken by {self.broken_by}; {sat}); {tail}")
        return (f"{o.label} under {o.latency_ms:.4g} ms up to {self.capacity:.4g} req/s per instance "
                f"(objective broken by {self.broken_by}; {sat}); {tail}")

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-safe (no NaN, no numpy), for a Dagster asset's output or metadata."""
        def pairs(curve: Curve) -> list[list[float]]:
            return [[float(x), float(y)] for x, y in curve]

        return {"format": _FORMAT, "objective": self.objective.to_dict(), "capacity": float(self.capacity),
                "bound": self.bound, "broken_by": self.broken_by,
                "saturation": None if self.saturation is None else float(self.saturation),
                "saturated": bool(self.saturated), "utilisation_source": self.utilisation_source,
                "visited": [float(self.visited[0]), float(self.visited[1])], "samples": int(self.samples),
                "runs": int(self.runs), "latency_curve": pairs(self.latency_curve),
                "error_curve": pairs(self.error_curve), "utilisation_curve": pairs(self.utilisation_curve),
                "description": self.describe()}

    @classmethod
    def from_dict(cls, data: dict) -> ResponseModel:
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a stored response model ({_FORMAT}): format {data.get('format')!r}")

        def curve(key: str) -> Curve:
            return tuple((float(x), float(y)) for x, y in data.get(key, ()))

        return cls(objective=Objective(**data["objective"]), capacity=float(data["capacity"]), bound=data["bound"],
                   broken_by=data["broken_by"],
                   saturation=None if data["saturation"] is None else float(data["saturation"]),
                   saturated=bool(data["saturated"]), utilisation_source=data["utilisation_source"],
                   visited=(float(data["visited"][0]), float(data["visited"][1])), samples=int(data["samples"]),
                   runs=int(data.get("runs", 1)), latency_curve=curve("latency_curve"),
                   error_curve=curve("error_curve"), utilisation_curve=curve("utilisation_curve"))


def _column(frame: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), default, dtype=np.float64)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)


def fit_response(frame: pd.DataFrame, objective: Objective, *, min_samples: int = 8) -> ResponseModel:
    """The response model of one service from its rehearsal rows (one per second; see the module)."""
    from shaper_pipelines.lib.capacity import fit_capacity

    if "offered" not in frame.columns:
        raise ValueError("a response fit needs an 'offered' column (requests/s per instance)")
    offered = _column(frame, "offered")
    # A second in which nothing completed and nothing failed says nothing of the service: the load
    # had not reached it (a load generator still starting, a gap between stages).
    idle = (_column(frame, "achieved") <= 0) & ~(np.nan_to_num(_column(frame, "errors", 0.0), nan=0.0) > 0)
    keep = np.isfinite(offered) & (offered > 0) & ~idle
    if keep.sum() < min_samples:
        raise ValueError(f"{int(keep.sum())} usable rehearsal rows (finite offered load above 0, something "
                         f"completed or failed); a response fit needs at least {min_samples}")
    rows = frame.loc[keep]
    offered = offered[keep]
    achieved = _column(rows, "achieved")
    utilisation = _column(rows, "utilisation")
    latency = _column(rows, "latency_ms")
    errors = np.nan_to_num(_column(rows, "errors", 0.0), nan=0.0, posinf=0.0, neginf=0.0)
    errors = np.maximum(errors, 0.0)

    ok = np.isfinite(latency) & (latency >= 0)
    latency_curve = _isotonic(offered[ok], latency[ok])

    # errors / achieved; errors where nothing completed break the budget whole.
    done = np.nan_to_num(achieved, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(done > 0, errors / np.where(done > 0, done, 1.0),
                         np.where(errors > 0, _ERROR_RATIO_CAP, np.nan))
    ok = np.isfinite(ratio)
    error_curve = _isotonic(offered[ok], np.minimum(ratio[ok], _ERROR_RATIO_CAP))

    ok = np.isfinite(utilisation)
    utilisation_curve = _isotonic(offered[ok], np.clip(utilisation[ok], 0.0, 1.0))

    try:
        ceiling = fit_capacity(offered, achieved)
        saturation, saturated = float(ceiling.capacity), bool(ceiling.saturated)
    except ValueError:
        saturation, saturated = None, False

    crossings = {}
    if (c := _crossing(latency_curve, objective.latency_ms)) is not None:
        crossings["latency"] = c
    if (c := _crossing(error_curve, objective.error_ratio)) is not None:
        crossings["errors"] = c
    visited = (float(offered.min()), float(offered.max()))
    if crossings:
        broken_by = min(crossings, key=lambda k: crossings[k][0])
        capacity, bound = crossings[broken_by]
    else:
        broken_by, capacity, bound = None, visited[1], "lower"

    if utilisation_curve:
        source = "measured"
    elif saturation:
        source = "throughput"
    else:
        source = "none"
    runs = int(rows["run_key"].nunique()) if "run_key" in rows.columns and rows["run_key"].notna().any() else 1
    return ResponseModel(objective=objective, capacity=float(capacity), bound=bound, broken_by=broken_by,
                         saturation=saturation, saturated=saturated, utilisation_source=source, visited=visited,
                         samples=len(offered), runs=max(runs, 1), latency_curve=latency_curve,
                         error_curve=error_curve, utilisation_curve=utilisation_curve)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _age(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(seconds)} seconds"


def is_stale(rehearsed_at: datetime, now: datetime, max_age: timedelta, rehearsed_version: str | None,
             current_version: str | None) -> str | None:
    """None while a rehearsal still speaks for the service; otherwise why not: older than
    ``max_age``, or rehearsed on another service version than the one running now. Once a current
    version is named, a rehearsal that recorded none cannot be shown to be of it, and is stale;
    with no current version named, versions are not compared. Naive datetimes are read as UTC.
    Both reasons, when both hold, joined by "; "."""
    reasons = []
    age = _utc(now) - _utc(rehearsed_at)
    if age > max_age:
        reasons.append(f"rehearsed {_age(age)} ago, older than {_age(max_age)}")
    if current_version is not None and (rehearsed_version is None or str(rehearsed_version) != str(current_version)):
        was = "no recorded service version" if rehearsed_version is None else f"service version {rehearsed_version}"
        reasons.append(f"rehearsed on {was}, now {current_version}")
    return "; ".join(reasons) or None
