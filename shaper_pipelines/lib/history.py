"""Metric history as shaper reads it: CSV files in, one regular series out, with a report of what
was repaired so nobody forecasts on silently invented data.

Accepted files are ``timestamp,value`` (ISO, naive means UTC) or ``ts,value`` (Unix seconds), as
CloudWatch exports, Prometheus dumps and the Numenta/Crane traces come. Real exports have
duplicated stamps, uneven spacing, gaps and the odd ``NaN``; each is dealt with and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MAX_FILE_BYTES = 512 * 1024 * 1024
# The most steps a history is resampled to. Two million is a year at 15 s, three weeks at 1 s, or
# 19 years at 5 minutes: far above any real export, while a 4-line file with one timestamp decades
# away (which made 5.9 GB of grid, or a MemoryError) is refused before anything is allocated.
MAX_GRID_STEPS = 2_000_000
# A gap longer than this is left empty (and counted) rather than bridged by a straight line.
DEFAULT_MAX_FILL = pd.Timedelta(hours=6)
_NICE_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


class HistoryError(ValueError):
    """History that cannot be used, in words that say what to fix."""


@dataclass
class HistoryReport:
    rows_read: int = 0
    rows_dropped: int = 0  # not a finite number
    duplicates_merged: int = 0
    step_seconds: float = 0.0
    uneven: bool = False
    points: int = 0
    gaps_filled: int = 0  # points interpolated
    gaps_left: int = 0  # points in gaps too long to bridge
    naive_timestamps: bool = False  # the file's timestamps had no offset (its own wall clock)
    notes: list[str] = field(default_factory=list)
    filled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)  # per point

    def summary(self) -> str:
        return "; ".join(self.notes) if self.notes else "regular, complete"


def read_history_csv(path: str | Path) -> pd.Series:
    """The raw samples of a history CSV as a float Series on a UTC DatetimeIndex, in file order."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise HistoryError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise HistoryError(f"{path}: not a CSV file ({str(exc).splitlines()[0] if str(exc) else 'empty'})") from None
    columns = [c.strip().lower() for c in frame.columns]
    frame.columns = columns
    if "value" not in columns or not ({"timestamp", "ts"} & set(columns)):
        raise HistoryError(f"{path}: expected columns timestamp,value or ts,value; found {','.join(columns)[:200]}")
    if frame.empty:
        raise HistoryError(f"{path}: has a header but no rows")
    values = pd.to_numeric(frame["value"].str.strip(), errors="coerce")
    if "ts" in columns:
        seconds = pd.to_numeric(frame["ts"].str.strip(), errors="coerce")
        bad = seconds.isna()
        if not bad.all() and seconds[~bad].median() > 1e11:  # milliseconds, as some exporters write
            seconds = seconds / 1000.0
        index = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    else:
        index = pd.to_datetime(frame["timestamp"].str.strip(), utc=True, errors="coerce", format="mixed")
    unreadable = index.isna()
    if unreadable.mean() > 0.5 or values.isna().mean() > 0.5:
        column = "ts" if "ts" in columns else "timestamp"
        which = column if unreadable.mean() > 0.5 else "value"
        first = frame.loc[(unreadable if which == column else values.isna()).to_numpy()].index[0]
        raise HistoryError(f"{path}: most {which} cells are not readable (row {first + 2}: "
                           f"{frame.loc[first, which][:40]!r})")
    series = pd.Series(values.to_numpy(dtype=np.float64), index=pd.DatetimeIndex(index), name="value")
    series = series[~unreadable.to_numpy()]
    # Naive timestamps (no offset) are read as UTC without moving them: the file's own wall clock.
    # Calendar days are then the labels' dates (lib.day_kinds).
    series.attrs["naive_timestamps"] = "ts" not in columns and not bool(
        frame["timestamp"].head(1000).str.strip().str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", case=False).any())
    return series


def _seconds(index: pd.DatetimeIndex) -> np.ndarray:
    # pandas 3 keeps the resolution it parsed (seconds, microseconds...); asi8 is in that unit.
    # Microseconds reach the year 294,000; nanoseconds would overflow past 2262.
    return index.as_unit("us").asi8 / 1e6


def infer_step(index: pd.DatetimeIndex) -> float:
    """The sampling step in seconds: the median spacing, snapped to the nearest usual step."""
    diffs = np.diff(_seconds(index))
    diffs = diffs[diffs > 0]
    if len(diffs) == 0:
        raise HistoryError("history needs at least two distinct timestamps")
    median = float(np.median(diffs))
    return float(min(_NICE_STEPS, key=lambda s: abs(np.log(s / median))))


def regularise(
    raw: pd.Series, step: float | None = None, *, max_fill: pd.Timedelta = DEFAULT_MAX_FILL, origin: str = "raw"
) -> tuple[pd.Series, HistoryReport]:
    """One value per ``step`` (inferred when not given): means of the samples in each step, short
    gaps interpolated, long gaps left as NaN. Returns the series and what was done to it."""
    report = HistoryReport(rows_read=len(raw))
    finite = raw[np.isfinite(raw.to_numpy(dtype=np.float64, na_value=np.nan))]
    report.rows_dropped = len(raw) - len(finite)
    if report.rows_dropped:
        report.notes.append(f"dropped {report.rows_dropped} value(s) that are not numbers")
    if len(finite) < 2:
        raise HistoryError(f"history has {len(finite)} usable sample(s); at least 2 are needed")
    finite = finite.sort_index()
    report.duplicates_merged = int(finite.index.duplicated().sum())
    if report.duplicates_merged:
        report.notes.append(f"merged {report.duplicates_merged} duplicated timestamp(s)")
    natural = infer_step(finite.index)
    step = float(step or natural)
    report.step_seconds = step
    check_grid(finite.index, step)
    spacing = np.diff(_seconds(finite.index))
    report.uneven = bool(np.any(np.abs(spacing[spacing > 0] - natural) > 0.1 * natural))
    if report.uneven:
        report.notes.append(f"uneven spacing resampled to {step:g}s means")
    elif step != natural:
        report.notes.append(f"resampled from {natural:g}s to {step:g}s means")
    rule = pd.Timedelta(seconds=step)
    series = finite.resample(rule, origin="epoch").mean()
    missing = series.isna()
    limit = max(0, int(max_fill / rule))
    filled = series.interpolate(method="time", limit=limit, limit_area="inside")
    report.filled = (missing & filled.notna()).to_numpy()
    report.gaps_filled = int(report.filled.sum())
    report.gaps_left = int(filled.isna().sum())
    if report.gaps_filled:
        report.notes.append(f"interpolated {report.gaps_filled} missing step(s)")
    if report.gaps_left:
        report.notes.append(f"left {report.gaps_left} step(s) empty in gaps longer than {max_fill}")
    report.points = len(filled)
    filled.name = "value"
    return filled, report


def check_grid(index: pd.DatetimeIndex, step: float, limit: int = MAX_GRID_STEPS) -> int:
    """The number of ``step`` steps from the first to the last of ``index`` (sorted), or a
    HistoryError saying how many, the limit and the fix, before any grid is allocated."""
    seconds = _seconds(index[[0, -1]])
    span = float(seconds[1] - seconds[0])
    steps = int(span // step) + 1
    if steps > limit:
        inner = np.diff(_seconds(index))
        far = int(np.argmax(inner))
        hint = (f"a gap of {_span_words(float(inner[far]))} before {index[far + 1]:%Y-%m-%d %H:%M}; "
                if inner[far] > span / 2 else "")
        raise HistoryError(f"history from {index[0]:%Y-%m-%d %H:%M} to {index[-1]:%Y-%m-%d %H:%M} UTC is "
                           f"{steps:,} steps of {step:g}s, above the limit of {limit:,}; {hint}remove timestamps "
                           f"far from the rest or resample to a coarser step")
    return steps


def _span_words(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.0f} days"
    return f"{seconds / 3600:,.1f} hours"


def load_history(path: str | Path, step: float | None = None) -> tuple[pd.Series, HistoryReport]:
    """Read and regularise a history CSV; gaps of any length are interpolated (a forecast needs a
    complete series) and the report says how many."""
    raw = read_history_csv(path)
    series, report = regularise(raw, step, max_fill=pd.Timedelta(days=3650))
    report.naive_timestamps = raw.attrs["naive_timestamps"]
    return series, report
