"""From a plan to AWS calls, without AWS: compression, warmup lead, names, bounds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.aws_scaling import (
    Scheduled,
    ScalingError,
    TargetState,
    action_name,
    actions_for_plan,
)
from shaper_pipelines_tests.aws.conftest import plan_frame

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def state(max_capacity: int = 10, scheduled: tuple[Scheduled, ...] = ()) -> TargetState:
    return TargetState(min_capacity=2, max_capacity=max_capacity, desired_capacity=2, scheduled=scheduled)


def floors(actions) -> dict[datetime, int]:
    return {a.at: a.min_capacity for a in actions if a.is_put}


def test_a_floor_rises_a_warmup_early_and_falls_on_time_with_equal_steps_compressed(demo_targets):
    asg = demo_targets["asg"]  # warmup 5m, min_capacity 2
    actions = actions_for_plan(asg, plan_frame(T0, [3, 3, 6, 4, 1]), NOW, state())
    assert floors(actions) == {T0 - 5 * M: 3, T0 + 2 * H - 5 * M: 6, T0 + 3 * H: 4, T0 + 4 * H: 2}
    by_time = {a.at: a for a in actions}
    put = by_time[T0 + 2 * H - 5 * M]
    assert put.name == "shaper-20261128T1355Z"
    assert put.params == {"AutoScalingGroupName": "checkout-api-asg", "ScheduledActionName": "shaper-20261128T1355Z",
                          "StartTime": "2026-11-28T13:55:00Z", "MinSize": 6}
    assert put.reason.startswith("forecast p90 needs 6") and "5m warmup" in put.reason
    # The plan asked for 1; the configured floor is 2, and the reason says so.
    assert "plan asked for 1; min_capacity is 2" in by_time[T0 + 4 * H].reason


def test_a_warmup_off_the_minute_rounds_rises_down_and_falls_up(demo_targets):
    ecs = demo_targets["ecs"]  # warmup 90s
    start = T0 + 30 * timedelta(seconds=1)  # 12:00:30
    actions = actions_for_plan(ecs, plan_frame(start, [5, 3], step=10 * M), NOW, state(max_capacity=12))
    # 12:00:30 - 90s = 11:59:00 exactly; the fall at 12:10:30 happens at 12:11, never before.
    assert floors(actions) == {datetime(2026, 11, 28, 11, 59, tzinfo=timezone.utc): 5,
                               datetime(2026, 11, 28, 12, 11, tzinfo=timezone.utc): 3}
    params = actions[0].params
    assert params["Schedule"] == "at(2026-11-28T11:59:00)" and params["Timezone"] == "UTC"
    assert params["ScalableTargetAction"] == {"MinCapacity": 5}  # never a maximum
    assert (params["ServiceNamespace"], params["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")


def test_a_short_dip_inside_the_warmup_is_not_scheduled(demo_targets):
    # 6 → 3 for two minutes → 6: with a five-minute warmup the floor cannot drop in between.
    asg = demo_targets["asg"]
    frame = plan_frame(T0, [6, 3, 6], step=2 * M)
    assert floors(actions_for_plan(asg, frame, NOW, state())) == {T0 - 5 * M: 6}


def test_only_future_change_points_become_actions(demo_targets):
    asg = demo_targets["asg"]
    frame = plan_frame(T0 - 3 * H, [4, 5, 7, 3])  # 09:00 .. 12:00, now is 10:00
    assert floors(actions_for_plan(asg, frame, NOW, state())) == {T0 - H - 5 * M: 7, T0: 3}


def test_names_are_deterministic_and_identical_existing_actions_are_left_alone(demo_targets):
    asg = demo_targets["asg"]
    frame = plan_frame(T0, [3, 6])
    first = actions_for_plan(asg, frame, NOW, state())
    assert [a.name for a in first] == [action_name(T0 - 5 * M), action_name(T0 + H - 5 * M)]
    assert first == actions_for_plan(asg, frame, NOW, state())
    existing = tuple(Scheduled(a.name, a.at, a.min_capacity) for a in first)
    assert actions_for_plan(asg, frame, NOW, state(scheduled=existing)) == []


def test_obsolete_shaper_actions_are_deleted_and_foreign_ones_never_touched(demo_targets):
    asg = demo_targets["asg"]
    existing = (
        Scheduled("shaper-20261128T1155Z", T0 - 5 * M, 3),          # still wanted, unchanged
        Scheduled("shaper-20261128T1555Z", T0 + 4 * H - 5 * M, 9),  # no longer in the plan
        Scheduled("nightly-batch", T0 + 10 * H, 8),                  # the user's
        Scheduled("shaper-manual-override", T0 + 5 * H, 7),          # not a name shaper makes
    )
    actions = actions_for_plan(asg, plan_frame(T0, [3, 6]), NOW, state(scheduled=existing))
    # Deletes first: applied in this order the group never holds more actions than before or after.
    assert [(a.operation, a.name) for a in actions] == [
        ("batch_delete_scheduled_action", "shaper-20261128T1555Z"),
        ("batch_put_scheduled_update_group_action", "shaper-20261128T1255Z"),
    ]
    assert "no longer in the plan" in actions[0].reason


@pytest.mark.parametrize("kind", ["asg", "ecs"])
def test_a_shaper_action_carrying_a_maximum_is_deleted_and_put_again_without_it(demo_targets, kind):
    """A put updates only the fields it names, so an action that once carried a maximum (as
    shaper wrote for ECS) would keep it; it is replaced instead, and the same floor without a
    maximum counts as different from it."""
    cfg = demo_targets[kind]
    lead = 5 * M if kind == "asg" else 2 * M
    at = T0 - lead
    old = Scheduled(action_name(at), at, 3, max_capacity=10,
                    schedule=f"at({at:%Y-%m-%dT%H:%M:%S})" if kind == "ecs" else None)
    actions = actions_for_plan(cfg, plan_frame(T0, [3]), NOW, state(max_capacity=12, scheduled=(old,)))
    assert [(a.is_put, a.name) for a in actions] == [(False, old.name), (True, old.name)]
    assert "replaced: it carries a maximum 10" in actions[0].reason
    assert "MaxSize" not in actions[1].params and "MaxCapacity" not in str(actions[1].params)
    # Once it is replaced, the same plan has nothing left to do.
    clean = Scheduled(old.name, at, 3, schedule=old.schedule)
    assert actions_for_plan(cfg, plan_frame(T0, [3]), NOW, state(max_capacity=12, scheduled=(clean,))) == []


@pytest.mark.parametrize("values, bound", [([3, 11, 4], "MaxSize 10"), ([3, 21, 4], "max_capacity 20")])
def test_a_plan_above_a_maximum_is_refused_naming_the_step_value_and_bound(demo_targets, values, bound):
    asg = demo_targets["asg"]
    with pytest.raises(ScalingError) as caught:
        actions_for_plan(asg, plan_frame(T0, values), NOW, state(max_capacity=10 if "MaxSize" in bound else 30))
    message = str(caught.value)
    assert "2026-11-28T13:00:00+00:00" in message and f"asks for {values[1]} instances" in message
    assert bound in message and "does not clip" in message


def test_a_past_step_above_the_maximum_does_not_block_the_future(demo_targets):
    asg = demo_targets["asg"]
    frame = plan_frame(T0 - 4 * H, [15, 4, 5, 6])  # 08:00 .. 11:00; the 15 ended at 09:00
    assert floors(actions_for_plan(asg, frame, NOW, state(max_capacity=10))) == {T0 - H - 5 * M: 6}


def test_bad_plans_are_refused(demo_targets):
    asg = demo_targets["asg"]
    naive = plan_frame(T0, [3]).assign(timestamp=lambda f: f["timestamp"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="timezone-aware"):
        actions_for_plan(asg, naive, NOW, state())
    with pytest.raises(ScalingError, match="not a whole number"):
        actions_for_plan(asg, plan_frame(T0, [3]).assign(desired_capacity=[2.5]), NOW, state())
    with pytest.raises(ScalingError, match="empty"):
        actions_for_plan(asg, plan_frame(T0, [3]).iloc[:0], NOW, state())
    with pytest.raises(ValueError, match="no timezone"):
        actions_for_plan(asg, plan_frame(T0, [3]), NOW.replace(tzinfo=None), state())
    with pytest.raises(ScalingError, match="min_capacity 2 in scaling.yaml is above"):
        actions_for_plan(asg, plan_frame(T0, [1]), NOW, state(max_capacity=1))
    assert isinstance(plan_frame(T0, [3])["timestamp"].dtype, pd.DatetimeTZDtype)


def test_every_minute_holds_the_most_any_step_needs_within_its_warmup(demo_targets):
    """Against brute force, second by second: from each minute m the floor is the largest plan value
    in [m, m + 1 min + warmup), and at least min_capacity."""
    cfg = demo_targets["ecs"]  # a 90 s warmup, so off-minute rises occur
    rng = np.random.default_rng(7)
    for _ in range(40):
        gaps = rng.integers(20, 900, rng.integers(1, 10))
        times = [T0 + timedelta(seconds=int(s)) for s in np.cumsum(gaps)]
        values = rng.integers(0, 12, len(times)).tolist()
        frame = pd.DataFrame({"timestamp": pd.DatetimeIndex(times), "desired_capacity": values, "reason": ""})
        puts = sorted((a.at, a.min_capacity) for a in actions_for_plan(cfg, frame, NOW, state(max_capacity=12)))

        def planned(second: datetime):
            started = [v for t, v in zip(times, values) if t <= second]
            return started[-1] if started else None

        minute = puts[0][0]
        while minute < times[-1] + 5 * M:
            needed = [planned(minute + timedelta(seconds=s)) for s in range(60 + int(cfg.warmup))]
            needed = [v for v in needed if v is not None]
            scheduled = [v for at, v in puts if at <= minute]
            assert (scheduled[-1] if scheduled else None) == (max(max(needed), 2) if needed else None), minute
            minute += M
