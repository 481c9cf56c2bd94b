"""The profile model, its patterns and its rendering, as plain Python."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.profile import ProfileError, load_profiles_file, parse_profile, render
from shaper_pipelines.lib.timegrid import TimeGrid

START = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()  # a Monday


def profile(pattern: dict, **fields) -> dict:
    base = {"profile_id": "p1", "resource_type": "cpu", "duration": "1d", "load_pattern": pattern}
    base.update(fields)
    return base


def values(pattern: dict, step: float = 60.0, **fields) -> np.ndarray:
    return render(parse_profile(profile(pattern, **fields)), start=START, step=step).values


def test_every_predefined_profile_is_valid_and_renders(predefined_dir):
    ids = set()
    for path in sorted(predefined_dir.glob("*.yaml")):
        for p in load_profiles_file(path):
            step = min(60.0, p.duration / 8)  # the gentle rehearsal lasts eight seconds
            r = render(p, start=START, step=step)
            assert len(r.values) == int(p.duration // step)
            assert np.isfinite(r.values).all() and (r.values >= 0).all()
            assert r.values.max() > 0, p.profile_id
            ids.add(p.profile_id)
    required = {"end-of-month-batch", "holiday-sales-peak", "nightly-backup", "weekday-business-hours-cpu",
                "weekday-business-hours-memory", "feature-release-ramp"}
    assert required <= ids


def test_constant_ramp_and_scaling_factor():
    assert np.allclose(values({"kind": "constant", "level": 0.5}, scaling_factor=2), 1.0)
    ramp = values({"kind": "ramp", "start": 0, "end": 10}, step=3600)
    assert ramp[0] == 0 and ramp[12] == pytest.approx(5.0) and ramp[-1] == pytest.approx(10 * 23 / 24)
    held = values({"kind": "ramp", "start": 2, "end": 4, "over": "1h"}, step=600)
    assert held[3] == pytest.approx(3.0) and np.allclose(held[6:], 4.0)


def test_stages_move_linearly_and_hold_the_last_target():
    v = values({"kind": "stages", "stages": [{"duration": "10m", "target": 10}, {"duration": "10m", "target": 10},
                                             {"duration": "10m", "target": 0}]}, step=60, duration="1h")
    assert v[0] == 0 and v[5] == pytest.approx(5) and v[10] == pytest.approx(10) and v[15] == pytest.approx(10)
    assert v[25] == pytest.approx(5) and np.allclose(v[30:], 0)


def test_peak_valley_peaks_at_local_peak_hour_and_follows_weekday_factors():
    pattern = {"kind": "peak_valley", "peak": 10, "valley": 2, "peak_hour": 14, "timezone": "Europe/Berlin",
               "weekday_factors": [1, 1, 1, 1, 1, 0.5, 0]}
    v = values(pattern, step=3600, duration="7d")
    local_hours = (np.arange(len(v)) + 1) % 24  # Berlin is UTC+1 in early March
    monday = v[:24]
    assert local_hours[int(np.argmax(monday))] == 14
    assert monday.max() == pytest.approx(10) and monday.min() == pytest.approx(2, abs=0.05)
    saturday, sunday = v[5 * 24: 6 * 24], v[6 * 24: 7 * 24]
    assert saturday.max() == pytest.approx(2 + 8 * 0.5, abs=0.2)
    assert np.allclose(sunday[:-1], 2)  # 23:00 UTC on Sunday is already Monday in Berlin


def test_hourly_shape_is_respected():
    shape = [0.0] * 24
    shape[9] = 1.0
    v = values({"kind": "peak_valley", "peak": 100, "valley": 0, "hourly_shape": shape}, step=1800)
    assert v[19] == pytest.approx(100)  # 09:30, the middle of hour 9
    assert v[4] == pytest.approx(0)


def test_spike_repeats_and_sequence_restarts_time():
    v = values({"kind": "spike", "base": 1, "peak": 5, "at": "10m", "width": "5m", "every": "1h"}, step=60)
    assert v[9] == 1 and v[10] == 5 and v[14] == 5 and v[15] == 1 and v[70] == 5
    seq = values({"kind": "sequence", "parts": [
        {"duration": "30m", "pattern": {"kind": "constant", "level": 1}},
        {"duration": "30m", "pattern": {"kind": "ramp", "start": 0, "end": 30, "over": "30m"}}]},
        step=60, duration="1h")
    assert np.allclose(seq[:30], 1) and seq[30] == 0 and seq[45] == pytest.approx(15)


def test_sum_product_and_replay_compose():
    c = {"kind": "constant", "level": 2}
    r = {"kind": "replay", "values": [1, 2, 3], "step": "1m"}
    assert np.allclose(values({"kind": "sum", "patterns": [c, r]}, step=60, duration="6m"), [3, 4, 5, 3, 4, 5])
    assert np.allclose(values({"kind": "product", "patterns": [c, r]}, step=60, duration="6m"), [2, 4, 6, 2, 4, 6])
    interp = values({"kind": "replay", "values": [0, 10], "step": "2m", "interpolate": True}, step=60, duration="4m")
    assert np.allclose(interp, [0, 5, 10, 5])


def test_custom_expression_sees_calendar_features():
    v = values({"kind": "custom", "expression": "(hour >= 9) * (hour < 17) * (weekday < 5) * 0.8 + 0.1"},
               step=3600, duration="7d", timezone="UTC")
    assert v[10] == pytest.approx(0.9) and v[20] == pytest.approx(0.1) and v[5 * 24 + 10] == pytest.approx(0.1)


def test_calendar_features_match_pandas_across_a_dst_change():
    start = datetime(2026, 3, 28, tzinfo=timezone.utc).timestamp()
    grid = TimeGrid.regular(start, 3 * 86400, 317.0)  # an odd step to hit every minute offset
    local = pd.to_datetime(grid.epoch, unit="s", utc=True).tz_convert("Europe/Berlin")
    assert np.allclose(grid.hour("Europe/Berlin"), local.hour + local.minute / 60 + local.second / 3600)
    assert np.array_equal(grid.weekday("Europe/Berlin"), local.day_of_week)
    assert np.array_equal(grid.day_of_month("Europe/Berlin"), local.day)


def test_a_month_at_one_second_renders_every_point():
    p = parse_profile(profile({"kind": "peak_valley", "peak": 1, "valley": 0.1, "timezone": "Europe/Berlin"},
                              duration="30d"))
    r = render(p, start=START, step=1.0)
    assert len(r.values) == 30 * 86400
    assert r.values.max() == pytest.approx(1.0, abs=1e-6) and r.values.min() == pytest.approx(0.1, abs=1e-6)


def test_content_hash_is_stable_across_spellings_and_changes_with_content():
    a = parse_profile(profile({"kind": "constant", "level": 1}, duration="90m"))
    b = parse_profile(profile({"kind": "constant", "level": 1.0}, duration="1h30m"))
    c = parse_profile(profile({"kind": "constant", "level": 1.5}, duration="90m"))
    assert a.content_hash == b.content_hash != c.content_hash
    assert a.unit == "cpu_share"


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"resource_type": "gpu"}, "resource_type", "cpu"),
        ({"duration": "forever"}, "duration", "duration"),
        ({"duration": "500d"}, "duration", "400 days"),
        ({"priority": 101}, "priority", "100"),
        ({"scaling_factor": float("nan")}, "scaling_factor", "finite"),
        ({"profile_id": "Bad Id!"}, "profile_id", "pattern"),
        ({"timezone": "Mars/Olympus"}, "timezone", "time zone"),
        ({"trigger_conditions": [{"kind": "cron", "cron": "61 * * * *"}]}, "trigger_conditions[0].cron", "cron"),
        ({"trigger_conditions": [{"kind": "cron", "cron": "0 0 31 2 *"}]}, "trigger_conditions[0].cron",
         "never fires"),
        ({"trigger_conditions": [{"kind": "metric", "promql": "  ", "comparator": ">", "threshold": 1}]},
         "trigger_conditions[0].promql", "empty"),
        ({"trigger_conditions": [{"kind": "metric", "promql": "up", "comparator": "=~", "threshold": 1}]},
         "trigger_conditions[0].comparator", "unknown comparator"),
        ({"trigger_conditions": [{"kind": "metric", "promql": "sum(rate(x[5m])", "comparator": ">",
                                  "threshold": 1}]}, "trigger_conditions[0].promql", "unclosed"),
        ({"trigger_conditions": [{"kind": "event", "event": ""}]}, "trigger_conditions[0].event", "pattern"),
        ({"load_pattern": {"kind": "wave"}}, "load_pattern", "kind"),
        ({"load_pattern": {"kind": "constant", "level": -1}}, "load_pattern.level", "greater than or equal"),
        ({"load_pattern": {"kind": "peak_valley", "peak": 1, "valley": 2}}, "load_pattern", "above peak"),
        ({"load_pattern": {"kind": "custom", "expression": "__import__('os')"}}, "load_pattern.expression", ""),
        ({"unexpected": 1}, "unexpected", "not permitted"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(change, field, words):
    data = profile({"kind": "constant", "level": 1})
    data.update(change)
    with pytest.raises(ProfileError) as err:
        parse_profile(data, file="x.yaml")
    assert err.value.field == field
    assert words.lower() in err.value.reason.lower()
    assert "x.yaml" in str(err.value) and repr(data["profile_id"]) in str(err.value)


def test_render_refuses_points_that_are_not_finite_or_negative():
    p = parse_profile(profile({"kind": "custom", "expression": "1 / (t - 120)"}, duration="10m"))
    with pytest.raises(ProfileError, match="t=120"):
        render(p, start=START, step=60)
    neg = parse_profile(profile({"kind": "custom", "expression": "sin(t / 60)"}, duration="1h"))
    with pytest.raises(ProfileError, match="negative"):
        render(neg, start=START, step=60)


def test_nesting_is_bounded():
    pattern: dict = {"kind": "constant", "level": 1}
    for _ in range(10):
        pattern = {"kind": "sum", "patterns": [pattern, {"kind": "constant", "level": 1}]}
    with pytest.raises(ProfileError, match="nests deeper"):
        parse_profile(profile(pattern))


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    """Nine levels of nine aliases are 850 bytes and 387 million list items once expanded."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\nprofiles: [*l8]\n")
    with pytest.raises(ProfileError) as err:
        load_profiles_file(path)
    assert "alias" in str(err.value) and "laughs.yaml" in str(err.value)


def test_a_leap_day_cron_is_valid():
    data = profile({"kind": "constant", "level": 1})
    data["trigger_conditions"] = [{"kind": "cron", "cron": "0 0 29 2 *"}]
    assert parse_profile(data).trigger_conditions[0].cron == "0 0 29 2 *"


def test_a_file_over_the_byte_budget_is_refused_before_it_is_parsed(tmp_path):
    from shaper_pipelines.lib.profile import MAX_FILE_BYTES

    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ProfileError, match="budget") as err:
        load_profiles_file(path)
    assert "big.yaml" in str(err.value)


def test_a_file_over_the_node_budget_is_refused_while_composing(tmp_path):
    from shaper_pipelines.lib.profile import MAX_FILE_BYTES, MAX_YAML_NODES

    path = tmp_path / "many.yaml"
    path.write_text("profiles: [" + ",".join(["0"] * (MAX_YAML_NODES + 10)) + "]\n")
    assert path.stat().st_size < MAX_FILE_BYTES
    with pytest.raises(ProfileError, match="budget of 20,000 YAML nodes"):
        load_profiles_file(path)


def test_a_profile_over_the_stored_size_budget_is_refused():
    from shaper_pipelines.lib.profile import MAX_PROFILE_BYTES

    replay = {"kind": "replay", "step": "1s", "values": [123456.5] * (MAX_PROFILE_BYTES // 8)}
    with pytest.raises(ProfileError, match="budget"):
        parse_profile(profile(replay))
    # a week of minutes fits
    parse_profile(profile({"kind": "replay", "step": "1m", "values": [123.25] * 10080}))


def test_predefined_profiles_are_far_inside_the_budgets(predefined_dir):
    from shaper_pipelines.lib.profile import MAX_FILE_BYTES

    for path in predefined_dir.glob("*.yaml"):
        assert path.stat().st_size * 100 < MAX_FILE_BYTES


def test_validation_renders_at_one_second_and_finds_a_division_between_grid_points():
    from shaper_pipelines.lib.profile import validate_render

    p = parse_profile(profile({"kind": "custom", "expression": "abs(1/(hour-3.5))"}))
    render(p, start=0, step=400.0)  # a coarse grid steps over 03:30
    with pytest.raises(ProfileError, match="division by zero at t=12600"):
        validate_render(p)


def test_validation_of_a_week_at_one_second_is_fast():
    import time

    from shaper_pipelines.lib.profile import validate_render

    p = parse_profile(profile({"kind": "custom", "expression": "50 + 30*sin(2*pi*t/86400) + 10*(hour > 9) + noise(2)"},
                              duration="7d", timezone="Europe/Berlin"))
    began = time.perf_counter()
    validate_render(p)
    assert time.perf_counter() - began < 2.0


def test_a_profile_file_is_validated_at_one_second_within_a_budget(tmp_path):
    from shaper_pipelines.lib.profile import MAX_VALIDATION_POINTS

    path = tmp_path / "between.yaml"
    path.write_text("profile_id: p1\nresource_type: cpu\nduration: 1d\n"
                    "load_pattern: {kind: custom, expression: 'abs(1/(hour-3.5))'}\n")
    with pytest.raises(ProfileError, match="division by zero at t=12600") as err:
        load_profiles_file(path)
    assert "between.yaml" in str(err.value)
    assert load_profiles_file(path, validate=False)[0].profile_id == "p1"
    many = tmp_path / "many.yaml"
    count = MAX_VALIDATION_POINTS // (400 * 86400) + 1
    many.write_text("".join(f"- {{profile_id: p{i}, resource_type: cpu, duration: 400d, "
                            "load_pattern: {kind: constant, level: 1}}\n" for i in range(count)))
    with pytest.raises(ProfileError, match="over the budget"):
        load_profiles_file(many)
