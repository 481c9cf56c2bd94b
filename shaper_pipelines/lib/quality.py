"""Data-quality checks on a window of metric history, expressed as Great Expectations expectations.

A forecast trained on a dead exporter's flat line, on duplicated samples or on a day that is
mostly missing is confidently wrong, so these checks gate what reaches the forecasts. They run
on the samples as fetched, before gaps are filled, on the regular grid the window should have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class QualityRules:
    lower: float = 0.0
    upper: float = math.inf
    max_gap_share: float = 0.1  # of the expected points, missing or not a number
    max_flat_steps: int = 36  # identical consecutive values: 3 hours at 5 minutes


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


CHECKS = {
    "timestamps_unique_increasing": "timestamps are unique and strictly increasing",
    "values_within_bounds": "every value is within the metric's physical bounds",
    "gap_share_under_limit": "the share of missing or non-numeric points is under the limit",
    "no_long_flat_line": "no run of identical values is longer than the limit (a dead exporter)",
}


@lru_cache(maxsize=1)
def _batch_definition():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("shaper").add_dataframe_asset("history_window")
    return asset.add_batch_definition_whole_dataframe("window")


def check_window(raw: pd.Series, start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta,
                 rules: QualityRules) -> list[CheckOutcome]:
    """Run every check on ``raw`` (samples in file/fetch order) for the window ``[start, end)``."""
    import great_expectations as gx

    frame = pd.DataFrame({"ts": raw.index.as_unit("ns").asi8, "value": raw.to_numpy(dtype=np.float64)})
    grid = pd.date_range(start, end, freq=step, inclusive="left")
    on_grid = raw[~raw.index.duplicated(keep="last")].sort_index().reindex(grid)
    on_grid = on_grid.where(np.isfinite(on_grid.to_numpy(dtype=np.float64)))
    runs = _run_lengths(on_grid.to_numpy(dtype=np.float64))
    derived = pd.DataFrame({"present": on_grid.notna().to_numpy()})
    run_frame = pd.DataFrame({"run": runs if len(runs) else np.zeros(1)})

    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    unique = batch.validate(gx.expectations.ExpectColumnValuesToBeUnique(column="ts"))
    increasing = batch.validate(gx.expectations.ExpectColumnValuesToBeIncreasing(column="ts", strictly=True))
    bounds = batch.validate(gx.expectations.ExpectColumnValuesToBeBetween(
        column="value", min_value=rules.lower, max_value=None if math.isinf(rules.upper) else rules.upper))
    present = _batch_definition().get_batch(batch_parameters={"dataframe": derived}).validate(
        gx.expectations.ExpectColumnValuesToBeInSet(column="present", value_set=[True],
                                                    mostly=max(0.0, 1.0 - rules.max_gap_share)))
    flat = _batch_definition().get_batch(batch_parameters={"dataframe": run_frame}).validate(
        gx.expectations.ExpectColumnMaxToBeBetween(column="run", max_value=rules.max_flat_steps))

    gap_share = 1.0 - float(derived["present"].mean()) if len(derived) else 1.0
    longest = int(runs.max()) if len(runs) else 0
    return [
        CheckOutcome("timestamps_unique_increasing", bool(unique.success and increasing.success),
                     CHECKS["timestamps_unique_increasing"],
                     {"duplicates": int(unique.result.get("unexpected_count", 0)),
                      "out_of_order": int(increasing.result.get("unexpected_count", 0))}),
        CheckOutcome("values_within_bounds", bool(bounds.success), CHECKS["values_within_bounds"],
                     {"outside": int(bounds.result.get("unexpected_count", 0)), "lower": rules.lower,
                      "upper": None if math.isinf(rules.upper) else rules.upper}),
        CheckOutcome("gap_share_under_limit", bool(present.success), CHECKS["gap_share_under_limit"],
                     {"gap_share": round(gap_share, 4), "limit": rules.max_gap_share,
                      "expected_points": len(grid)}),
        CheckOutcome("no_long_flat_line", bool(flat.success), CHECKS["no_long_flat_line"],
                     {"longest_flat_steps": longest, "limit": rules.max_flat_steps}),
    ]


def _run_lengths(values: np.ndarray) -> np.ndarray:
    """Lengths of runs of identical consecutive finite values (a NaN breaks a run)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    same = np.zeros(len(values), dtype=bool)
    same[1:] = (values[1:] == values[:-1]) & np.isfinite(values[1:])
    starts = np.flatnonzero(~same)
    return np.diff(np.append(starts, len(values)))
