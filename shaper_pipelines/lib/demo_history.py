"""A generated, seeded metric history for the embedded default (no Prometheus needed).

Each day is generated from (seed, target, metric, day) alone, so any partition can be produced in
any order and always holds the same values, as a real metrics store would.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

STEP = pd.Timedelta(minutes=5)


@dataclass(frozen=True)
class DemoMetric:
    base: float
    daily_swing: float
    peak_hour: float
    weekend_factor: float
    holiday_factor: float
    month_end_uplift: float
    noise: float
    bounds: tuple[float, float]


@dataclass(frozen=True)
class DemoSpec:
    seed: int
    timezone: str
    country: str | None
    targets: dict[str, dict[str, DemoMetric]]

    def series_keys(self) -> list[tuple[str, str]]:
        return [(t, m) for t, metrics in self.targets.items() for m in metrics]


def load_demo_spec(path: str | Path) -> DemoSpec:
    raw = yaml.safe_load(Path(path).read_text())
    # float() because YAML 1.1 reads 6.0e9 (no sign in the exponent) as a string.
    targets = {
        target: {metric: DemoMetric(**{k: float(v) for k, v in params.items() if k != "bounds"},
                                    bounds=tuple(float(b) for b in params["bounds"]))
                 for metric, params in metrics.items()}
        for target, metrics in raw["targets"].items()
    }
    return DemoSpec(seed=int(raw["seed"]), timezone=raw.get("timezone", "UTC"), country=raw.get("country"),
                    targets=targets)


def generate(spec: DemoSpec, target: str, metric: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Values every 5 minutes in ``[start, end)`` (UTC)."""
    if target not in spec.targets or metric not in spec.targets[target]:
        raise KeyError(f"the demo history has no {metric} for {target}; it has {spec.series_keys()}")
    m = spec.targets[target][metric]
    first_day = pd.Timestamp(start).floor("D")
    days = pd.date_range(first_day, pd.Timestamp(end).ceil("D"), freq="D", inclusive="left")
    parts = [_day(spec, target, metric, m, day) for day in days]
    series = pd.concat(parts) if parts else pd.Series(dtype=float)
    return series[(series.index >= start) & (series.index < end)]


def _day(spec: DemoSpec, target: str, metric: str, m: DemoMetric, day: pd.Timestamp) -> pd.Series:
    index = pd.date_range(day, periods=int(pd.Timedelta(days=1) / STEP), freq=STEP)
    local = index.tz_convert(spec.timezone)
    hour = local.hour + local.minute / 60.0
    daily = (1 + np.cos(2 * np.pi * (hour - m.peak_hour) / 24)) / 2
    level = m.base * (1 + m.daily_swing * daily)
    level = level * np.where(local.day_of_week >= 5, m.weekend_factor, 1.0)
    holidays = _holidays(spec.country, local.year.unique())
    level = level * np.where(np.isin(local.date, holidays), m.holiday_factor, 1.0)
    if m.month_end_uplift != 1.0:
        last_business = _last_business_days(local, holidays)
        batch = np.isin(local.date, last_business) & (hour >= 18)
        level = level * np.where(batch, m.month_end_uplift, 1.0)
    key = zlib.crc32(f"{target}/{metric}".encode())
    rng = np.random.default_rng([spec.seed, key, int(day.timestamp() // 86400)])
    level = level * (1 + m.noise * rng.standard_normal(len(index)))
    return pd.Series(np.clip(level, *m.bounds), index=index, name="value")


def _holidays(country: str | None, years) -> list:
    if not country:
        return []
    import holidays

    return list(holidays.country_holidays(country, years=[int(y) for y in years]).keys())


def _last_business_days(local: pd.DatetimeIndex, holidays: list) -> list:
    out = []
    for year, month in {(d.year, d.month) for d in local}:
        day = pd.Timestamp(year=year, month=month, day=1) + pd.offsets.MonthEnd(0)
        while day.day_of_week >= 5 or day.date() in holidays:
            day -= pd.Timedelta(days=1)
        out.append(day.date())
    return out
