"""The daily loop as the daemon runs it: days of real traces through the history schedule, the
automation conditions and the sensors, evaluated at each simulated time (benchmarks/daily_loop.py,
which the README's 14-day table comes from; 3 days here to keep the suite short)."""

from __future__ import annotations

import json
import subprocess
import sys

from shaper_pipelines_tests.conftest import PROJECT


def test_each_simulated_day_launches_a_bounded_set_of_runs_and_none_fails(tmp_path):
    out = tmp_path / "loop.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.daily_loop", "--days", "3", "--json", str(out)],
                            cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    loop = json.loads(out.read_text())
    assert loop["failed"] == []
    # One new history day: one forecast per series, the day judged, the calendar refreshed, one
    # plan run (with the utilisation forecast and the export), one apply - and the history run.
    assert loop["runs_per_day"] == [loop["series"] + 5] * 3
    assert max(loop["runs_per_day"]) <= loop["budget_per_day"]
    assert loop["kinds"]["demand_forecast"] == 3 * loop["series"]
    for kind in ("history_job", "forecast_accuracy", "business_calendar", "apply_scaling_job",
                 "prometheus_export,scaling_plan,utilisation_forecast"):
        assert loop["kinds"][kind] == 3, kind
    for day in loop["per_day"]:
        assert day["series_judged"] == loop["series"], day  # yesterday's forecasts were judged
        assert day["plans_use_todays_forecasts"], day  # the plan names this morning's forecast ids
