"""The time axis a profile is rendered on, and the calendar features patterns read from it.

Calendar features (local hour, weekday, day of month) are needed for millions of points, so they
are derived arithmetically from epoch seconds plus the zone's UTC offset. The offset is looked up
on a 15-minute grid (every DST rule in the tz database changes on a quarter hour) and written per
run between transitions, instead of converting each point with pandas, which is two orders of
magnitude slower.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

_OFFSET_GRID_S = 900


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone, else ValueError saying so."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from exc
    return name


def to_epoch_seconds(value: datetime | float | int | str) -> float:
    """Epoch seconds of a datetime (naive means UTC), an ISO string or a number."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


@dataclass
class TimeGrid:
    """Points ``t`` (seconds since ``start``) and lazily computed local-calendar features."""

    start: float
    t: np.ndarray
    duration: float
    _features: dict = field(default_factory=dict, repr=False)

    @classmethod
    def regular(cls, start: float, duration: float, step: float) -> "TimeGrid":
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        count = int(np.floor(duration / step + 1e-9))
        return cls(start=start, t=np.arange(count, dtype=np.float64) * step, duration=duration)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def epoch(self) -> np.ndarray:
        if "epoch" not in self._features:
            self._features["epoch"] = self.start + self.t
        return self._features["epoch"]

    def _local(self, tz: str) -> tuple[np.ndarray, np.ndarray]:
        """Whole local days since the epoch and seconds into the local day, computed once per zone.
        (floor and subtract: np.mod on floats costs several times more over millions of points.)"""
        key = ("local", tz)
        if key not in self._features:
            local = self.epoch + self._offsets(tz)
            days = np.floor(local / 86400.0)
            self._features[key] = (days, local - days * 86400.0)
        return self._features[key]

    def _offsets(self, tz: str) -> np.ndarray | float:
        """UTC offset in seconds at each point. The offset only changes at a zone's transitions,
        so it is looked up on a 15-minute grid and written per run between transitions."""
        if tz in ("UTC", "Etc/UTC") or len(self.t) == 0:
            return 0.0
        first = np.floor(self.start / _OFFSET_GRID_S) * _OFFSET_GRID_S
        last = self.start + float(self.t[-1])
        grid = pd.date_range(
            pd.Timestamp(first, unit="s", tz="UTC"),
            pd.Timestamp(last + _OFFSET_GRID_S, unit="s", tz="UTC"),
            freq=f"{_OFFSET_GRID_S}s",
        )
        local = grid.tz_convert(tz).tz_localize(None)
        offsets = (local - grid.tz_localize(None)).total_seconds().to_numpy()
        changes = np.flatnonzero(np.diff(offsets)) + 1
        if len(changes) == 0:
            return float(offsets[0])
        out = np.full(len(self.t), offsets[0])
        # Grid points are sorted, so each transition starts a contiguous run.
        positions = np.searchsorted(self.epoch, first + changes * _OFFSET_GRID_S)
        for pos, change in zip(positions, changes):
            out[pos:] = offsets[change]
        return out

    def hour(self, tz: str) -> np.ndarray:
        return self._local(tz)[1] / 3600.0

    def minute(self, tz: str) -> np.ndarray:
        seconds = self._local(tz)[1]
        return (seconds - np.floor(seconds / 3600.0) * 3600.0) / 60.0

    def weekday(self, tz: str) -> np.ndarray:
        # 1970-01-01 was a Thursday (Monday = 0).
        shifted = self._local(tz)[0] + 3.0
        return shifted - np.floor(shifted / 7.0) * 7.0

    def day_of_month(self, tz: str) -> np.ndarray:
        days = self._local(tz)[0].astype("int64").astype("datetime64[D]")
        month_start = days.astype("datetime64[M]").astype("datetime64[D]")
        return (days - month_start).astype(np.float64) + 1.0
