"""Business calendars: public holidays and the business's own events, as UTC intervals.

A predictive scaler that knows only daily and weekly cycles is surprised by every holiday,
month-end close and sale. Events are written in YAML in their own time zone (a sale starts at
midnight in New York, not in UTC), either dated or as a recurring rule, with the uplift the
business expects; holidays come from the ``holidays`` package.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shaper_pipelines.lib.durations import parse_duration
from shaper_pipelines.lib.timegrid import check_timezone

EVENT_KINDS = ("holiday", "sale", "month_end", "quarter_end", "release", "campaign", "custom")
RULES = ("last_business_day_of_month", "last_business_day_of_quarter", "first_business_day_of_month",
         "weekly", "daily", "monthly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_EVENT_SECONDS = 31 * 86400
COLUMNS = ["name", "kind", "start", "end", "timezone", "expected_uplift", "source"]


class CalendarError(ValueError):
    pass


@dataclass(frozen=True)
class CalendarEvent:
    name: str
    kind: str
    start: pd.Timestamp  # UTC
    end: pd.Timestamp  # UTC, exclusive
    timezone: str
    expected_uplift: float | None
    source: str


class EventSpec(BaseModel):
    """One event as written: dated (``start`` and ``end`` or ``duration``) or recurring (``rule``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:'-]{0,127}$")
    kind: Literal["holiday", "sale", "month_end", "quarter_end", "release", "campaign", "custom"]
    timezone: str = "UTC"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    duration: float | None = None
    rule: Literal["last_business_day_of_month", "last_business_day_of_quarter", "first_business_day_of_month",
                  "weekly", "daily", "monthly"] | None = None
    time: str = "00:00"
    weekday: str | None = None
    day: int | None = Field(default=None, ge=1, le=31)
    country: str | None = None
    expected_uplift: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)
    source: str = ""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value):
        return check_timezone(value)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value):
        if value is None:
            return None
        seconds = parse_duration(value)
        if not 0 < seconds <= MAX_EVENT_SECONDS:
            raise ValueError("duration must be above 0 and at most 31 days")
        return seconds

    @field_validator("time")
    @classmethod
    def _time(cls, value):
        try:
            dt.time.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"time {value!r} is not HH:MM") from None
        return str(value)

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value):
        if value is not None and value.lower() not in WEEKDAYS:
            raise ValueError(f"weekday {value!r} is not one of {', '.join(WEEKDAYS)}")
        return None if value is None else value.lower()

    @model_validator(mode="after")
    def _shape(self):
        if self.rule is None:
            if self.start is None:
                raise ValueError("a dated event needs start (or a recurring one needs rule)")
            if (self.end is None) == (self.duration is None):
                raise ValueError("a dated event needs exactly one of end and duration")
            if self.end is not None and self.end <= self.start:
                raise ValueError("end is not after start")
            if self.end is not None and (self.end - self.start).total_seconds() > MAX_EVENT_SECONDS:
                raise ValueError("an event lasts at most 31 days")
        else:
            if self.start is not None or self.end is not None:
                raise ValueError("a recurring event has a rule and no start or end")
            if self.duration is None:
                raise ValueError("a recurring event needs duration")
            if self.rule == "weekly" and self.weekday is None:
                raise ValueError("rule weekly needs weekday")
            if self.rule == "monthly" and self.day is None:
                raise ValueError("rule monthly needs day")
        return self


def load_calendar_file(path: str | Path) -> list[EventSpec]:
    """Every event in a calendar YAML file, validated; one bad event fails the whole file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CalendarError(f"file {path}: cannot read: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        raise CalendarError(f"file {path}: expected a mapping with an events: list")
    default_tz = raw.get("timezone", "UTC")
    specs = []
    for i, entry in enumerate(raw["events"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        try:
            if not isinstance(entry, dict):
                raise CalendarError("an event is a mapping of fields")
            specs.append(EventSpec.model_validate({"timezone": default_tz, **entry, "source": str(path)}))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "event"
            raise CalendarError(f"file {path}, event {i} ({name!r}), field {field}: "
                                f"{err['msg'].removeprefix('Value error, ')}") from None
        except CalendarError as exc:
            raise CalendarError(f"file {path}, event {i}: {exc}") from None
    return specs


def load_calendar_dir(folder: str | Path) -> list[EventSpec]:
    specs: list[EventSpec] = []
    seen: dict[str, str] = {}
    for path in sorted(p for p in Path(folder).glob("*.y*ml") if p.is_file()):
        for spec in load_calendar_file(path):
            if spec.name in seen:
                raise CalendarError(f"file {path}: event {spec.name!r} is also defined in {seen[spec.name]}")
            seen[spec.name] = str(path)
            specs.append(spec)
    return specs


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _localize(day: dt.date, time: str, tz: str) -> pd.Timestamp:
    local = pd.Timestamp(dt.datetime.combine(day, dt.time.fromisoformat(time)))
    return local.tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")


def _holiday_dates(country: str | None, subdiv: str | None, years: range) -> set[dt.date]:
    if not country:
        return set()
    import holidays

    try:
        return set(holidays.country_holidays(country, subdiv=subdiv, years=list(years)).keys())
    except (NotImplementedError, KeyError, ValueError) as exc:
        raise CalendarError(f"no public holidays known for {country}{'-' + subdiv if subdiv else ''}: {exc}") from None


def is_business_day(date: dt.date, holidays: set[dt.date]) -> bool:
    return date.weekday() < 5 and date not in holidays


def _rule_days(spec: EventSpec, first: dt.date, last: dt.date, holidays: set[dt.date]) -> list[dt.date]:
    days = pd.date_range(first, last, freq="D").date
    if spec.rule == "daily":
        return list(days)
    if spec.rule == "weekly":
        return [d for d in days if d.weekday() == WEEKDAYS.index(spec.weekday)]
    if spec.rule == "monthly":
        return [d for d in days if d.day == spec.day]
    business = [d for d in days if is_business_day(d, holidays)]
    by_month: dict[tuple[int, int], list[dt.date]] = {}
    for d in business:
        by_month.setdefault((d.year, d.month), []).append(d)
    if spec.rule == "first_business_day_of_month":
        return [v[0] for v in by_month.values()]
    lasts = [v[-1] for v in by_month.values()]
    if spec.rule == "last_business_day_of_quarter":
        return [d for d in lasts if d.month in (3, 6, 9, 12)]
    return lasts


def expand(specs: list[EventSpec], start: Any, end: Any) -> list[CalendarEvent]:
    """Occurrences of every spec overlapping ``[start, end)``."""
    start, end = _utc(start), _utc(end)
    out = []
    for spec in specs:
        if spec.rule is None:
            s = _utc(pd.Timestamp(spec.start).tz_localize(spec.timezone) if spec.start.tzinfo is None else spec.start)
            e = s + pd.Timedelta(seconds=spec.duration) if spec.duration else _utc(
                pd.Timestamp(spec.end).tz_localize(spec.timezone) if spec.end.tzinfo is None else spec.end)
            occurrences = [(s, e)]
        else:
            # A month of margin on each side: a month-end rule needs the whole month to decide.
            first = (start - pd.Timedelta(days=32)).tz_convert(spec.timezone).date()
            last = (end + pd.Timedelta(days=32)).tz_convert(spec.timezone).date()
            holidays = _holiday_dates(spec.country, None, range(first.year, last.year + 1))
            occurrences = []
            for day in _rule_days(spec, first, last, holidays):
                s = _localize(day, spec.time, spec.timezone)
                occurrences.append((s, s + pd.Timedelta(seconds=spec.duration)))
        for s, e in occurrences:
            if s < end and e > start:
                out.append(CalendarEvent(spec.name, spec.kind, s, e, spec.timezone, spec.expected_uplift, spec.source))
    return out


def public_holidays(country: str, subdiv: str | None, start: Any, end: Any, timezone: str = "UTC") -> list[CalendarEvent]:
    """One all-day (local midnight to midnight) event per public holiday."""
    start, end = _utc(start), _utc(end)
    check_timezone(timezone)
    dates = _holiday_dates(country, subdiv, range(start.year - 1, end.year + 2))
    import holidays as holidays_lib

    names = holidays_lib.country_holidays(country, subdiv=subdiv, years=range(start.year - 1, end.year + 2))
    source = f"holidays:{country}" + (f"-{subdiv}" if subdiv else "")
    out = []
    for day in sorted(dates):
        s = _localize(day, "00:00", timezone)
        e = _localize(day + dt.timedelta(days=1), "00:00", timezone)
        if s < end and e > start:
            out.append(CalendarEvent(str(names.get(day)), "holiday", s, e, timezone, None, source))
    return out


def business_calendar(*, start: Any, end: Any, country: str | None = None, subdiv: str | None = None,
                      timezone: str = "UTC", folder: str | Path | None = None) -> list[CalendarEvent]:
    events = public_holidays(country, subdiv, start, end, timezone) if country else []
    if folder is not None and Path(folder).exists():
        events += expand(load_calendar_dir(folder), start, end)
    return sorted(events, key=lambda e: (e.start, e.name))


def events_frame(events: list[CalendarEvent]) -> pd.DataFrame:
    frame = pd.DataFrame([e.__dict__ for e in events], columns=COLUMNS)
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["expected_uplift"] = frame["expected_uplift"].astype("float64")
    return frame
