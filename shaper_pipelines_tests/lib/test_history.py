"""History loading, the demo history and the quality checks, on real traces where it matters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shaper_pipelines.lib.demo_history import generate, load_demo_spec
from shaper_pipelines.lib.history import HistoryError, load_history, read_history_csv, regularise
from shaper_pipelines.lib.quality import QualityRules, check_window
from shaper_pipelines_tests.conftest import PROJECT, REAL_DATA

DAY = pd.Timestamp("2026-11-02", tz="UTC")
STEP = pd.Timedelta(minutes=5)


def test_every_real_trace_loads_regular_and_complete():
    files = sorted(REAL_DATA.glob("*/*.csv"))
    assert len(files) >= 20
    for f in files:
        series, report = load_history(f)
        assert report.step_seconds in (60.0, 300.0, 3600.0), f  # crane, nab, bike
        steps = np.diff(series.index.as_unit("s").asi8)
        assert (steps == report.step_seconds).all(), f
        assert series.notna().all(), f
        raw = read_history_csv(f)
        assert report.rows_read == len(raw)


def test_iso_and_unix_files_mean_the_same_instants(tmp_path):
    (tmp_path / "iso.csv").write_text("timestamp,value\n2026-11-02 00:00:00,1\n2026-11-02 00:05:00,2\n")
    (tmp_path / "unix.csv").write_text("ts,value\n1793577600,1\n1793577900,2\n")
    iso, unix = read_history_csv(tmp_path / "iso.csv"), read_history_csv(tmp_path / "unix.csv")
    assert list(iso.index) == list(unix.index) and list(iso) == list(unix)


def test_uneven_spacing_duplicates_and_gaps_are_repaired_and_reported():
    idx = pd.to_datetime(["2026-11-02 00:00", "2026-11-02 00:05", "2026-11-02 00:05", "2026-11-02 00:11",
                          "2026-11-02 00:15", "2026-11-02 00:35", "2026-11-02 00:40"], utc=True)
    raw = pd.Series([1.0, 2.0, 4.0, 5.0, np.nan, 9.0, 10.0], index=idx)
    series, report = regularise(raw, 300)
    assert report.duplicates_merged == 1 and report.rows_dropped == 1 and report.uneven
    assert series["2026-11-02 00:05"] == 3.0  # the duplicate is averaged
    assert report.gaps_filled == 4 and report.filled.sum() == 4  # 00:15 .. 00:30
    assert series.notna().all() and "interpolated 4" in report.summary()


@pytest.mark.parametrize("content, words", [
    ("", "not a CSV"),
    ("a,b\n1,2\n", "expected columns"),
    ("timestamp,value\n", "no rows"),
    ("timestamp,value\nyesterday,1\nlater,2\n", "not readable"),
    ("ts,value\n1,x\n2,y\n3,z\n", "value cells are not readable"),
    ("ts,value\n1,1\n", "at least 2"),
])
def test_junk_gets_a_clear_error(tmp_path, content, words):
    f = tmp_path / "junk.csv"
    f.write_text(content)
    with pytest.raises(HistoryError, match=words):
        load_history(f)


def test_demo_history_is_seeded_and_has_the_features_to_learn():
    spec = load_demo_spec(PROJECT / "profiles_data" / "demo_history.yaml")
    start, end = pd.Timestamp("2026-11-01", tz="UTC"), pd.Timestamp("2026-12-02", tz="UTC")
    a = generate(spec, "checkout-api", "cpu", start, end)
    b = generate(spec, "checkout-api", "cpu", start, end)
    assert len(a) == 31 * 288 and a.equals(b)
    # Any day on its own is the same values as inside a longer window.
    alone = generate(spec, "checkout-api", "cpu", DAY, DAY + pd.Timedelta(days=1))
    assert alone.equals(a[DAY: DAY + pd.Timedelta(days=1) - STEP])
    daily = a.tz_convert("America/New_York").resample("D").mean()
    assert daily["2026-11-26"] < 0.8 * daily["2026-11-25"]  # Thanksgiving
    assert daily["2026-11-28"] < 0.8 * daily["2026-11-27"]  # a Saturday
    evening = a.tz_convert("America/New_York").between_time("19:00", "23:00").resample("D").mean()
    assert evening["2026-11-30"] > 1.5 * evening["2026-11-23"]  # the month-end batch


def window(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=pd.date_range(DAY, periods=len(values), freq=STEP))


def outcomes(raw: pd.Series) -> dict[str, bool]:
    result = check_window(raw, DAY, DAY + pd.Timedelta(days=1), STEP, QualityRules(lower=0, upper=100))
    return {o.name: o.passed for o in result}


def test_quality_checks_fail_on_exactly_what_is_wrong():
    rng = np.random.default_rng(0)
    good = window(50 + rng.normal(0, 5, 288))
    assert all(outcomes(good).values())
    nans = good.copy()
    nans.iloc[::3] = np.nan
    assert outcomes(nans) == {"timestamps_unique_increasing": True, "values_within_bounds": True,
                              "gap_share_under_limit": False, "no_long_flat_line": True}
    gap = good.drop(good.index[100:172])  # six hours
    assert outcomes(gap)["gap_share_under_limit"] is False and sum(outcomes(gap).values()) == 3
    flat = good.copy()
    flat.iloc[150:200] = 42.0
    assert outcomes(flat)["no_long_flat_line"] is False and sum(outcomes(flat).values()) == 3
    high = good.copy()
    high.iloc[5] = 1000.0
    assert outcomes(high)["values_within_bounds"] is False and sum(outcomes(high).values()) == 3
    shuffled = pd.concat([good.iloc[10:], good.iloc[:10]])
    assert outcomes(shuffled)["timestamps_unique_increasing"] is False
