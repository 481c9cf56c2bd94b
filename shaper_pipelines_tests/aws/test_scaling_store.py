"""Scaling plans and the action audit trail, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from shaper_pipelines_tests.aws.conftest import plan_frame

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def record(**changes) -> dict:
    base = {"at": datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc), "actor": "run-1", "target": "checkout-api-asg",
            "kind": "asg", "resource": "checkout-api-asg", "action": "put_scheduled_update_group_action",
            "params": {"MinSize": 4, "ScheduledActionName": "shaper-20261128T1155Z"}, "reason": "forecast p90",
            "dry_run": False, "outcome": "applied", "plan_id": None}
    return {**base, **changes}


def test_a_plan_round_trips_and_the_newest_one_wins(scaling_store):
    berlin = plan_frame(T0, [3, 5, 4], reasons=["quiet", "lunch peak", "after lunch"])
    berlin["timestamp"] = berlin["timestamp"].dt.tz_convert("Europe/Berlin")  # stored as UTC
    first = scaling_store.save_plan("checkout-api-asg", berlin, produced_by="run-abc", model="prophet 1.1.5 p90")
    header, frame = scaling_store.latest_plan("checkout-api-asg")
    assert header["plan_id"] == first and header["produced_by"] == "run-abc"
    assert header["model"] == "prophet 1.1.5 p90" and header["target"] == "checkout-api-asg"
    assert header["created_at"].tzinfo is not None
    assert abs(header["created_at"] - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert list(frame.columns) == ["timestamp", "desired_capacity", "reason"]
    assert str(frame["timestamp"].dt.tz) == "UTC" and frame["desired_capacity"].dtype == "int64"
    assert frame["timestamp"].tolist() == [pd.Timestamp(T0) + pd.Timedelta(hours=h) for h in range(3)]
    assert frame["desired_capacity"].tolist() == [3, 5, 4]
    assert frame["reason"].tolist() == ["quiet", "lunch peak", "after lunch"]

    second = scaling_store.save_plan("checkout-api-asg", plan_frame(T0, [7]), produced_by="cli", model="naive")
    scaling_store.save_plan("search-api", plan_frame(T0, [2]), produced_by="cli", model="naive")
    header, frame = scaling_store.latest_plan("checkout-api-asg")
    assert second > first and header["plan_id"] == second and frame["desired_capacity"].tolist() == [7]


def test_a_missing_plan_is_a_clear_lookup_error(scaling_store):
    with pytest.raises(LookupError, match="no scaling plan for target 'checkout-api-asg'"):
        scaling_store.latest_plan("checkout-api-asg")
    scaling_store.save_plan("search-api", plan_frame(T0, [2]), produced_by="cli", model="naive")
    with pytest.raises(LookupError, match="plans exist for: search-api"):
        scaling_store.latest_plan("checkout-api-asg")


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(timestamp=f["timestamp"].dt.tz_localize(None)), "timezone-aware"),
    (lambda f: f.assign(desired_capacity=[3, 4.5]), "whole number"),
    (lambda f: f.assign(desired_capacity=[3, -1]), "whole number"),
    (lambda f: f.assign(timestamp=[f["timestamp"][0]] * 2), "appears twice"),
    (lambda f: f.drop(columns=["reason"]), "missing reason"),
    (lambda f: f.iloc[:0], "at least one row"),
])
def test_bad_plans_store_nothing(scaling_store, change, message):
    with pytest.raises(ValueError, match=message):
        scaling_store.save_plan("checkout-api-asg", change(plan_frame(T0, [3, 4])), produced_by="cli", model="m")
    with pytest.raises(LookupError):
        scaling_store.latest_plan("checkout-api-asg")


def test_actions_are_recorded_together_or_not_at_all(scaling_store):
    plan_id = scaling_store.save_plan("checkout-api-asg", plan_frame(T0, [3]), produced_by="cli", model="m")
    assert scaling_store.record_actions([record(plan_id=plan_id),
                                         record(target="search-api", kind="ecs", dry_run=True,
                                                outcome="would-apply", action="put_scheduled_action")]) == 2
    with pytest.raises(ValueError, match="outcome 'done'"):
        scaling_store.record_actions([record(), record(outcome="done")])
    with pytest.raises(sa.exc.IntegrityError):
        scaling_store.record_actions([record(), record(plan_id=999_999)])  # no such plan: foreign key
    rows = scaling_store.actions()
    assert len(rows) == 2
    assert rows[0]["params"] == {"MinSize": 4, "ScheduledActionName": "shaper-20261128T1155Z"}
    assert rows[0]["at"] == datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)
    assert (rows[0]["plan_id"], rows[0]["dry_run"], rows[0]["outcome"]) == (plan_id, False, "applied")
    assert [r["target"] for r in scaling_store.actions("search-api")] == ["search-api"]
    assert scaling_store.actions("search-api")[0]["dry_run"] is True
