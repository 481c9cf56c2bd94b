"""From a target's capacity rehearsals to the capacity its plan uses.

Which rehearsals count: the target's own (dispatched for it), ended, newest first, at most
``RECENT``. A rehearsal older than the target's ``max_age``, or run against another
``service_version`` than scaling.yaml names now, is stale: stale ones are used only when no fresh
one exists, and the result says so. Their seconds become one frame for
``response_model.fit_response``; the seconds before Locust delivered anything are the generator
starting, not the service answering, and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from shaper_pipelines.lib.response_model import Objective, ResponseModel, fit_response, is_stale

RECENT = 5


@dataclass(frozen=True)
class TargetCapacity:
    model: ResponseModel | None
    runs: list[str]  # the rehearsals fitted
    stale: str | None  # why the rehearsals used are stale, None when they are fresh
    problem: str | None = None  # why there is no model
    points: pd.DataFrame | None = None  # the seconds fitted (offered, utilisation, latency_ms, ...), for plots

    def source(self) -> str:
        if self.model is None:
            return f"none: {self.problem}"
        text = f"rehearsals {', '.join(self.runs)}: {self.model.describe()}"
        return text + (f" (stale: {self.stale})" if self.stale else "")


def objective_of(rehearsal) -> Objective:
    o = rehearsal.objective
    return Objective(quantile=o.quantile, latency_ms=o.latency * 1000, error_ratio=o.error_ratio)


def rehearsal_frame(samples: pd.DataFrame, quantile: float) -> pd.DataFrame:
    """One run's seconds as ``fit_response`` reads them: the service's latency quantile where it
    was watched, else Locust's; Locust's failures, else the service's errors."""
    q = f"p{round(quantile * 100)}"
    latency = samples.get(f"service_{q}_ms")
    if latency is None or latency.isna().all():
        latency = samples.get(f"latency_{q}_ms", pd.Series(np.nan, index=samples.index))
    errors = samples["errors"] if samples["errors"].notna().any() else samples["service_errors"]
    frame = pd.DataFrame({"offered": samples["target"], "achieved": samples["achieved"],
                          "utilisation": samples["service_utilisation"], "latency_ms": latency,
                          "errors": errors.fillna(0.0)})
    delivering = np.flatnonzero(frame["achieved"].to_numpy() > 0)
    return frame.iloc[delivering[0]:] if len(delivering) else frame.iloc[0:0]


def target_capacity(rehearsal, runs: list[dict], samples_of, now: datetime) -> TargetCapacity:
    """``runs``: the target's rehearsal records (simulation_runs rows), any order; ``samples_of``:
    run key -> its samples frame."""
    ended = sorted((r for r in runs if r["status"] in ("finished", "stopped")),
                   key=lambda r: r["dispatched_at"], reverse=True)
    if not ended:
        return TargetCapacity(None, [], None, "no ended rehearsal of this target yet")
    max_age = timedelta(seconds=rehearsal.max_age)
    why = {r["run_key"]: is_stale(r["dispatched_at"], now, max_age, r.get("service_version"),
                                  rehearsal.service_version) for r in ended}
    fresh = [r for r in ended if why[r["run_key"]] is None]
    chosen = (fresh or ended)[:RECENT]
    stale = None if fresh else why[chosen[0]["run_key"]]
    objective = objective_of(rehearsal)
    frames = [rehearsal_frame(samples_of(r["run_key"]), objective.quantile).assign(run_key=r["run_key"])
              for r in chosen]
    points = pd.concat(frames, ignore_index=True)
    keys = [r["run_key"] for r in chosen]
    try:
        model = fit_response(points, objective)
    except ValueError as exc:
        return TargetCapacity(None, keys, stale, f"the rehearsals could not be fitted: {exc}", points)
    return TargetCapacity(model, keys, stale, None, points)


def rehearsal_due(rehearsal, runs: list[dict], now: datetime) -> tuple[str, str] | None:
    """Whether a target's service should be rehearsed again: ``(why, after)`` where ``after`` is the
    newest ended rehearsal's key (or "never": one request per state, so a rehearsal that fails is
    not retried in a loop), or None while the newest is fresh or one is still running."""
    if any(r["status"] == "dispatched" for r in runs):
        return None
    ended = [r for r in runs if r["status"] in ("finished", "stopped")]
    if not ended:
        return "never rehearsed", "never"
    newest = max(ended, key=lambda r: r["dispatched_at"])
    why = is_stale(newest["dispatched_at"], now, timedelta(seconds=rehearsal.max_age),
                   newest.get("service_version"), rehearsal.service_version)
    return (why, newest["run_key"]) if why else None
