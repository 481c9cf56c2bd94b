"""A scaling plan as a person reads it: not one row per step, but the changes of its floor."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Change:
    serving_at: pd.Timestamp  # when the new floor must be serving, warm
    launch_at: pd.Timestamp  # when its instances are started (serving_at - warmup)
    previous: int | None  # the floor before; None for the plan's first step
    desired: int
    reason: str


def changes(frame: pd.DataFrame) -> list[Change]:
    """The steps of a plan frame (timestamp, desired_capacity, launch_at, reason) where its floor
    changes, the first step included."""
    desired = frame["desired_capacity"].to_numpy()
    out = []
    for i in range(len(frame)):
        if i and desired[i] == desired[i - 1]:
            continue
        row = frame.iloc[i]
        launch = row["launch_at"] if "launch_at" in frame.columns else row["timestamp"]
        out.append(Change(pd.Timestamp(row["timestamp"]), pd.Timestamp(launch),
                          int(desired[i - 1]) if i else None, int(desired[i]), str(row["reason"])))
    return out


def changes_markdown(frame: pd.DataFrame, limit: int = 30) -> str:
    """A plan as a markdown table of its changes - when the new floor serves, when it launches,
    from -> to, and why - the first ``limit`` of them, and how many more there are."""
    rows = changes(frame)
    shown = [f"| {r.serving_at:%Y-%m-%d %H:%M} | {r.launch_at:%H:%M} | "
             f"{'-' if r.previous is None else r.previous} → {r.desired} | {r.reason} |" for r in rows[:limit]]
    more = ["", f"{len(rows) - limit} more change(s) not shown; the stored plan has them all."] \
        if len(rows) > limit else []
    return "\n".join([f"{len(rows)} change(s) of the floor from {frame['timestamp'].iloc[0]:%Y-%m-%d %H:%M} UTC:", "",
                      "| serving at (UTC) | launch at | floor | why |", "|---|---|---|---|", *shown, *more])
