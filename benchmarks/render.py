"""How fast a profile renders: a 30-day profile at 1-second resolution (2,592,000 points).

The baseline, measured in the same run, is the obvious per-point loop (a datetime in the
profile's time zone for each second, then the same formula), timed on a slice and scaled up.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from benchmarks.common import best_of, publish
from shaper_pipelines.lib.profile import parse_profile, render

START = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
DAYS = 30
CASES = {
    "peak/valley, Europe/Berlin": {"kind": "peak_valley", "peak": 0.9, "valley": 0.1, "peak_hour": 14,
                                   "timezone": "Europe/Berlin", "weekday_factors": [1, 1, 1, 1, 1, 0.4, 0.3]},
    "custom expression": {"kind": "custom",
                          "expression": "max(0, 0.5 + 0.3 * sin(2 * pi * t / 86400) * (weekday < 5) + noise(0.02))"},
    "sum of cycle + hourly spikes": {"kind": "sum", "patterns": [
        {"kind": "peak_valley", "peak": 100, "valley": 10},
        {"kind": "spike", "peak": 50, "at": "9h", "width": "5m", "rise": "1m", "every": "1h"}]},
}


def scalar_peak_valley(points: int) -> float:
    """The per-point loop a first version would write, for the first case."""
    zone = ZoneInfo("Europe/Berlin")
    factors = [1, 1, 1, 1, 1, 0.4, 0.3]
    total = 0.0
    for i in range(points):
        local = datetime.fromtimestamp(START + i, zone)
        hour = local.hour + local.minute / 60 + local.second / 3600
        shape = (1 + math.cos(2 * math.pi * (hour - 14) / 24)) / 2 * factors[local.weekday()]
        total += 0.1 + 0.8 * shape
    return total


def main() -> None:
    points = DAYS * 86400
    rows = []
    for label, pattern in CASES.items():
        profile = parse_profile({"profile_id": "bench", "resource_type": "cpu", "duration": f"{DAYS}d",
                                 "load_pattern": pattern})
        seconds = best_of(lambda: render(profile, start=START, step=1.0))
        rows.append((label, seconds))
    sample = 100_000
    baseline = best_of(lambda: scalar_peak_valley(sample), repeat=2) * points / sample
    lines = [
        f"Rendering a {DAYS}-day profile at 1-second resolution ({points:,} points), best of 3:",
        "",
        "| pattern | seconds | points per second | speed-up over per-point loop |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in rows:
        lines.append(f"| {label} | {seconds:.3f} | {points / seconds:,.0f} | {baseline / seconds:,.0f}x |")
    lines.append(f"| per-point Python loop (baseline, peak/valley) | {baseline:.1f} | {points / baseline:,.0f} | 1x |")
    publish("render", "\n".join(lines))


if __name__ == "__main__":
    main()
