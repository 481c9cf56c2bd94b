"""Business calendars: public holidays and the business's own events, as UTC intervals.

A predictive scaler that knows only daily and weekly cycles is surprised by every holiday,
month-end close and sale. Events are written in YAML in their own time zone (a sale starts at
midnight in New York, not in UTC), either dated or as a recurring rule, with the uplift the
business expects; holidays come from the ``holidays`` package.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import holidays as holidays_lib
import numpy as np
import pandas as pd
import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from shaper_pipelines.lib.durations import Duration
from shaper_pipelines.lib.timegrid import check_timezone

EVENT_KINDS = ("holiday", "sale", "month_end", "quarter_end", "release", "campaign", "custom")
RULES = ("last_business_day_of_month", "last_business_day_of_quarter", "first_business_day_of_month",
         "weekly", "daily", "monthly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_EVENT_SECONDS = 31 * 86400
COLUMNS = ["name", "kind", "start", "end", "timezone", "expected_uplift", "source"]
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_CHOICES = {"kind": EVENT_KINDS, "rule": RULES, "weekday": WEEKDAYS}
Zone = Annotated[str, AfterValidator(check_timezone)]


class CalendarError(ValueError):
    """A calendar that cannot be used; the message names the file, the event and the field."""


class _FieldError(ValueError):
    """A check across fields that still belongs to one field, so the message can name it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CalendarEvent:
    """One occurrence: ``[start, end)`` in UTC, plus the zone it was written in."""

    name: str
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    timezone: str
    expected_uplift: float | None
    source: str


class EventSpec(BaseModel):
    """One event as written: dated (``start`` and ``end`` or ``duration``) or recurring (``rule``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=128)
    kind: str
    timezone: Zone = "UTC"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    duration: Duration | None = None
    rule: str | None = None
    time: str | None = None
    weekday: str | None = None
    day: int | None = Field(default=None, ge=1, le=31)
    country: str | None = None
    subdiv: str | None = None
    expected_uplift: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)
    source: str = ""

    @field_validator("kind", "rule", "weekday")
    @classmethod
    def _one_of(cls, value: str | None, info: ValidationInfo) -> str | None:
        choices = _CHOICES[info.field_name]
        if value is not None and value.lower() not in choices:
            raise ValueError(f"{info.field_name} {value!r} is not one of {', '.join(choices)}")
        return None if value is None else value.lower()

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_EVENT_SECONDS:
            raise ValueError("duration must be above 0 and at most 31 days")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if isinstance(value, int):
            # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080.
            raise ValueError(f'time must be quoted text such as "18:00" (YAML read {value!r})')
        if value is not None and not _TIME.fullmatch(str(value).strip()):
            raise ValueError(f"time {value!r} is not HH:MM (or HH:MM:SS) between 00:00 and 23:59")
        return value

    @model_validator(mode="after")
    def _shape(self) -> "EventSpec":
        if self.country is not None or self.subdiv is not None:
            if not (self.rule or "").endswith(("_of_month", "_of_quarter")):
                raise _FieldError("country", "country only applies to business-day rules")
            try:
                _check_region(self.country or "", self.subdiv)
            except CalendarError as exc:
                raise _FieldError("country", str(exc)) from None
        if self.rule is None:
            for field in ("time", "weekday", "day"):
                if getattr(self, field) is not None:
                    raise _FieldError(field, f"{field} only applies to an event with a rule")
            if self.start is None:
                raise _FieldError("start", "a dated event needs start (a recurring one needs rule)")
            if (self.end is None) == (self.duration is None):
                raise _FieldError("end", "a dated event needs exactly one of end and duration")
            if self.end is not None:
                length = (_in_zone(self.end, self.timezone) - _in_zone(self.start, self.timezone)).total_seconds()
                if length <= 0:
                    raise _FieldError("end", "end is not after start")
                if length > MAX_EVENT_SECONDS:
                    raise _FieldError("end", "an event lasts at most 31 days")
            return self
        if self.start is not None or self.end is not None:
            raise _FieldError("start" if self.start is not None else "end",
                              "a recurring event has a rule and no start or end")
        if self.duration is None:
            raise _FieldError("duration", f"rule {self.rule} needs duration")
        if (self.rule == "weekly") != (self.weekday is not None):
            raise _FieldError("weekday", "rule weekly needs weekday, and only rule weekly takes one")
        if (self.rule == "monthly") != (self.day is not None):
            raise _FieldError("day", "rule monthly needs day, and only rule monthly takes one")
        return self


class _CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: Zone = "UTC"
    events: list[Any]


def _describe(exc: ValidationError) -> str:
    """``field X: message`` for every problem, with the field a cross-field check blamed."""
    parts = []
    for err in exc.errors():
        cause = err.get("ctx", {}).get("error")
        field = cause.field if isinstance(cause, _FieldError) else ".".join(str(p) for p in err["loc"])
        parts.append(f"field {field or 'event'}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def load_calendar_file(path: str | Path) -> list[EventSpec]:
    """Every event in a calendar YAML file, validated; one bad event fails the whole file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        document = _CalendarFile.model_validate(raw if isinstance(raw, dict) else {"events": None})
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CalendarError(f"file {path}: cannot read: {exc}") from None
    except ValidationError as exc:
        raise CalendarError(f"file {path}: {_describe(exc)} (expected timezone: and an events: list)") from None
    specs: list[EventSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(document.events):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"file {path}, event {i} ({name!r})"
        if not isinstance(entry, dict):
            raise CalendarError(f"{where}: an event is a mapping of fields, not {entry!r}")
        try:
            spec = EventSpec.model_validate({"timezone": document.timezone, **entry, "source": str(path)})
        except ValidationError as exc:
            raise CalendarError(f"{where}, {_describe(exc)}") from None
        if spec.name in seen:
            raise CalendarError(f"{where}, field name: event {seen[spec.name]} has the same name")
        seen[spec.name] = i
        specs.append(spec)
    return specs


def load_calendar_dir(folder: str | Path) -> list[EventSpec]:
    """Events of every ``*.yaml``/``*.yml`` file in ``folder``, in file-name order; names must be unique."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalendarError(f"calendar folder {folder} does not exist")
    specs: list[EventSpec] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        for i, spec in enumerate(load_calendar_file(path)):
            clash = next((s.source for s in specs if s.name == spec.name), None)
            if clash:
                raise CalendarError(f"file {path}, event {i} ({spec.name!r}), field name: also defined in {clash}")
            specs.append(spec)
    return specs


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _in_zone(value: dt.datetime, tz: str) -> pd.Timestamp:
    """UTC instant of ``value``: naive values are wall-clock time in ``tz``."""
    return _localize(pd.DatetimeIndex([value]), tz)[0] if value.tzinfo is None else _utc(value)


def _localize(local: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    # A wall-clock time skipped by DST moves forward to the first valid instant; one that
    # happens twice takes the first occurrence, when the clock reaches it first.
    return local.tz_localize(tz, ambiguous=np.ones(len(local), dtype=bool),
                             nonexistent="shift_forward").tz_convert("UTC")


def _check_region(country: str, subdiv: str | None) -> None:
    """CalendarError unless the holidays package knows the country and subdivision."""
    supported = holidays_lib.list_supported_countries()
    if country not in supported:
        raise CalendarError(f"no public holidays known for country {country!r}; "
                            "use an ISO 3166 code such as 'US' or 'DE'")
    if subdiv is not None and subdiv not in supported[country]:
        raise CalendarError(f"country {country} has no subdivision {subdiv!r}; "
                            f"known: {', '.join(supported[country])}")


@lru_cache(maxsize=64)
def _holidays(country: str, subdiv: str | None, first_year: int, last_year: int) -> dict[dt.date, str]:
    """Holiday names by date; several holidays on one day share one name joined by ``; ``."""
    _check_region(country, subdiv)
    return dict(holidays_lib.country_holidays(country, subdiv=subdiv, years=range(first_year, last_year + 1)))


def is_business_day(date: Any, country: str | None = None, subdiv: str | None = None) -> bool:
    """Monday to Friday and, when ``country`` is given, not one of its public holidays."""
    day = pd.Timestamp(date).date()
    return day.weekday() < 5 and not (country and day in _holidays(country, subdiv, day.year, day.year))


def _rule_mask(spec: EventSpec, days: pd.DatetimeIndex) -> np.ndarray:
    """Which of ``days`` (whole months of local dates) an occurrence of the rule starts on."""
    if spec.rule == "daily":
        return np.ones(len(days), dtype=bool)
    if spec.rule == "weekly":
        return np.asarray(days.day_of_week == WEEKDAYS.index(spec.weekday))
    if spec.rule == "monthly":  # like cron: a month without that day has no occurrence
        return np.asarray(days.day == spec.day)
    business = np.asarray(days.day_of_week < 5)
    if spec.country:
        dates = np.array(list(_holidays(spec.country, spec.subdiv, days[0].year, days[-1].year)),
                         dtype="datetime64[D]")
        business &= ~np.isin(days.to_numpy().astype("datetime64[D]"), dates)
    index = np.flatnonzero(business)
    if len(index) == 0:
        return business
    month = np.asarray(days.year * 12 + days.month)[index]
    new_month = month[1:] != month[:-1]
    keep = np.r_[True, new_month] if spec.rule == "first_business_day_of_month" else np.r_[new_month, True]
    picked = index[keep]
    if spec.rule == "last_business_day_of_quarter":
        picked = picked[np.asarray(days.month)[picked] % 3 == 0]
    mask = np.zeros(len(days), dtype=bool)
    mask[picked] = True
    return mask


def _occurrences(spec: EventSpec, start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """UTC starts and ends of the spec's occurrences near ``[start, end)`` (a superset)."""
    if spec.rule is None:
        first = _in_zone(spec.start, spec.timezone)
        last = first + pd.Timedelta(seconds=spec.duration) if spec.end is None else _in_zone(spec.end, spec.timezone)
        return pd.DatetimeIndex([first]), pd.DatetimeIndex([last])
    length = pd.Timedelta(seconds=spec.duration)
    # Whole local months: a month-end rule must see every day of its month, and an occurrence
    # that began up to one duration before ``start`` still overlaps the window.
    lo = (start - length - pd.Timedelta(days=1)).tz_convert(spec.timezone).tz_localize(None)
    hi = (end + pd.Timedelta(days=1)).tz_convert(spec.timezone).tz_localize(None)
    days = pd.date_range(lo.to_period("M").start_time, hi.to_period("M").end_time.normalize(), freq="D")
    hours, minutes, seconds = _TIME.fullmatch((spec.time or "00:00").strip()).groups()
    offset = pd.Timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds or 0))
    starts = _localize(days[_rule_mask(spec, days)] + offset, spec.timezone)
    return starts, starts + length


def expand(specs: list[EventSpec], start: Any, end: Any) -> list[CalendarEvent]:
    """Occurrences of every spec that overlap ``[start, end)``, sorted by start then name.
    Durations are elapsed time, so a 6h batch stays 6h across a DST change."""
    start, end = _utc(start), _utc(end)
    out = []
    for spec in specs:
        starts, ends = _occurrences(spec, start, end)
        keep = (starts < end) & (ends > start)
        out += [CalendarEvent(spec.name, spec.kind, s, e, spec.timezone, spec.expected_uplift, spec.source)
                for s, e in zip(starts[keep], ends[keep])]
    return sorted(out, key=lambda e: (e.start, e.name))


def public_holidays(country: str, subdiv: str | None, start: Any, end: Any,
                    timezone: str = "UTC") -> list[CalendarEvent]:
    """One all-day event (local midnight to midnight in ``timezone``) per holiday date that
    overlaps ``[start, end)``; holidays sharing a date are one event, so load is not counted twice."""
    start, end = _utc(start), _utc(end)
    try:
        check_timezone(timezone)
    except ValueError as exc:
        raise CalendarError(str(exc)) from None
    lo, hi = start.tz_convert(timezone), end.tz_convert(timezone)
    names = _holidays(country, subdiv, lo.year, hi.year)
    days = pd.DatetimeIndex(sorted(names))
    starts, ends = _localize(days, timezone), _localize(days + pd.Timedelta(days=1), timezone)
    keep = (starts < end) & (ends > start)
    source = f"holidays:{country}" + (f"-{subdiv}" if subdiv else "")
    return [CalendarEvent(str(names[d.date()]), "holiday", s, e, timezone, None, source)
            for d, s, e in zip(days[keep], starts[keep], ends[keep])]


def business_calendar(*, start: Any, end: Any, country: str | None = None, subdiv: str | None = None,
                      timezone: str = "UTC", folder: str | Path | None = None) -> list[CalendarEvent]:
    """Public holidays of ``country`` (if given) and the events of ``folder`` (if given) that
    overlap ``[start, end)``, sorted by start then name."""
    events = public_holidays(country, subdiv, start, end, timezone) if country else []
    if folder is not None:
        events += expand(load_calendar_dir(folder), start, end)
    return sorted(events, key=lambda e: (e.start, e.name))


def events_frame(events: list[CalendarEvent]) -> pd.DataFrame:
    """One row per event with ``COLUMNS``; start and end are tz-aware UTC, uplift is float (NaN = unknown)."""
    frame = pd.DataFrame([asdict(e) for e in events], columns=COLUMNS)
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["expected_uplift"] = frame["expected_uplift"].astype("float64")
    return frame
