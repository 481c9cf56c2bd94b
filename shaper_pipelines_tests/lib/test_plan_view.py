"""A plan shown as a person reads it: its changes."""

import pandas as pd

from shaper_pipelines.lib.plan_view import changes, changes_markdown


def test_a_plan_reads_as_its_changes_with_a_count_and_what_was_cut():
    ts = pd.date_range("2026-12-01 20:05", periods=6, freq="5min", tz="UTC")
    frame = pd.DataFrame({"timestamp": ts, "desired_capacity": [3, 3, 5, 5, 4, 4],
                          "launch_at": ts - pd.Timedelta(minutes=5), "reason": list("aabbcc")})
    rows = changes(frame)
    assert [(r.previous, r.desired, r.reason) for r in rows] == [(None, 3, "a"), (3, 5, "b"), (5, 4, "c")]
    assert rows[1].serving_at == ts[2] and rows[1].launch_at == ts[1]
    text = changes_markdown(frame, limit=2)
    assert text.startswith("3 change(s) of the floor from 2026-12-01 20:05 UTC")
    assert "| 2026-12-01 20:15 | 20:10 | 3 → 5 | b |" in text and "| c |" not in text
    assert text.endswith("1 more change(s) not shown; the stored plan has them all.")
