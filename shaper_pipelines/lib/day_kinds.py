"""Which kind of day each day of a series is: a working day, a weekend day, a public holiday, the
working day right before or after one, and which business events cover which steps.

Days are the series' own local days. A history's timestamps come in one of two clocks:

- with an offset (or Unix seconds): real instants; a day is a day in ``zone`` (``--timezone``,
  or the calendar's ``timezone``), so a New York service's Thanksgiving starts at 05:00 UTC;
- naive (no offset, as many exports write local time): they are read as they are, already the
  local wall clock (shaper labels them UTC without moving them), so a day is the label's date and
  ``zone`` only places events written for other zones on that clock.

Pure logic: the forecaster (``lib.forecast``) and the like-days model (``lib.like_days``) use it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

WORKDAY, WEEKEND, HOLIDAY, AFTER, BEFORE = "workday", "weekend", "holiday", "after holiday", "before holiday"
# The day kinds that are calendar days (forecast as like days when that wins on past occurrences).
CALENDAR_KINDS = (HOLIDAY, AFTER, BEFORE)
_OBSERVED = re.compile(r"\s*\((observed|estimated)\)", re.I)


def weekday(dates) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 of datetime64[D] dates (1970-01-01 was a Thursday)."""
    return (np.asarray(dates, dtype="datetime64[D]").astype("int64") + 3) % 7


def holiday_kind(name: str) -> str:
    """The holiday a name belongs to, whichever year or observed day: "Christmas Day (observed)"
    is Christmas Day, so its occurrences are learnt together."""
    return _OBSERVED.sub("", name).split(";")[0].strip()


@dataclass(frozen=True)
class DayCalendar:
    """Public holidays (by local date) and business events (UTC instants) on a series' clock."""

    zone: str = "UTC"
    naive: bool = False  # the series' labels are already the local wall clock (see module doc)
    holidays: dict[dt.date, str] = field(default_factory=dict)
    # name, kind, start, end (tz-aware UTC), expected_uplift (NaN: unknown); no holidays here
    events: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["name", "kind", "start", "end", "expected_uplift"]))

    def local(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """The local wall clock (naive) of series labels."""
        if index.tz is None:
            return index
        return index.tz_localize(None) if self.naive else index.tz_convert(self.zone).tz_localize(None)

    def dates(self, index: pd.DatetimeIndex) -> np.ndarray:
        """The local date of each label, as datetime64[D]."""
        return self.local(index).to_numpy().astype("datetime64[D]")

    def to_labels(self, instants: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
        """UTC instants (event starts and ends) on the series' clock."""
        index = pd.DatetimeIndex(instants)
        if not self.naive:
            return index
        return index.tz_convert(self.zone).tz_localize(None).tz_localize("UTC")

    def kinds(self, dates: np.ndarray) -> np.ndarray:
        """The kind of each local date (datetime64[D]): a holiday first, then the working day just
        before or after a holiday, then weekend or working day."""
        dates = np.asarray(dates, dtype="datetime64[D]")
        hol = np.array(sorted(self.holidays), dtype="datetime64[D]")
        is_hol = np.isin(dates, hol)
        day = weekday(dates)
        out = np.where(day >= 5, WEEKEND, WORKDAY).astype(object)
        work = ~is_hol & (day < 5)
        out[work & np.isin(dates - 1, hol)] = AFTER
        out[work & np.isin(dates + 1, hol) & (out == WORKDAY)] = BEFORE
        out[is_hol] = HOLIDAY
        return out

    def name(self, date: np.datetime64) -> str:
        return self.holidays.get(pd.Timestamp(date).date(), "")

    def business(self, days: pd.DatetimeIndex) -> np.ndarray:
        """Whether each label's local day is a business day (Monday to Friday, not a holiday)."""
        kinds = self.kinds(self.dates(days))
        return np.isin(kinds, (WORKDAY, AFTER, BEFORE))

    def event_steps(self, index: pd.DatetimeIndex) -> dict[str, np.ndarray]:
        """For each event name, which labels of ``index`` its occurrences cover."""
        out: dict[str, np.ndarray] = {}
        if self.events.empty or len(index) == 0:
            return out
        # One unit for both sides: pandas keeps the unit it parsed (seconds, microseconds...).
        starts = self.to_labels(self.events["start"]).as_unit("us")
        ends = self.to_labels(self.events["end"]).as_unit("us")
        values = index.as_unit("us").asi8
        for name, s, e in zip(self.events["name"], starts.asi8, ends.asi8):
            lo, hi = np.searchsorted(values, [s, e])
            if hi > lo:
                mask = out.setdefault(str(name), np.zeros(len(index), dtype=bool))
                mask[lo:hi] = True
        return out

    def uplift(self, name: str) -> float:
        """An event's configured uplift, 1.0 when it has none."""
        rows = self.events.loc[self.events["name"] == name, "expected_uplift"].dropna()
        return float(rows.iloc[0]) if len(rows) else 1.0

    def prophet_holidays(self) -> pd.DataFrame:
        """Prophet's ds/holiday frame: every holiday date, and every day an event starts on."""
        rows = [{"ds": pd.Timestamp(d), "holiday": holiday_kind(n)} for d, n in self.holidays.items()]
        if not self.events.empty:
            for r, start in zip(self.events.itertuples(), self.to_labels(self.events["start"])):
                rows.append({"ds": start.tz_localize(None).normalize(), "holiday": str(r.name)})
        return pd.DataFrame(rows, columns=["ds", "holiday"]).drop_duplicates()

    @property
    def empty(self) -> bool:
        return not self.holidays and self.events.empty


def parse_region(text: str) -> tuple[str, str | None]:
    """``US`` or ``US-DC`` (ISO 3166-1, optionally with an ISO 3166-2 subdivision) -> country, subdivision."""
    country, _, subdiv = text.strip().partition("-")
    return country.upper(), (subdiv.upper() or None)


def from_events(events: pd.DataFrame, zone: str | None = None, naive: bool = False) -> DayCalendar:
    """A DayCalendar from a business calendar frame (``lib.calendars.events_frame``): a holiday
    event names every local day of ``zone`` it covers for at least half a day; every other event
    is an event. ``zone`` defaults to the zone the holidays were written in (the calendar
    asset's ``timezone``), else UTC."""
    if zone is None:
        zones = events.loc[events["kind"] == "holiday", "timezone"] if "timezone" in events else []
        zone = str(zones.iloc[0]) if len(zones) else "UTC"
    holidays: dict[dt.date, str] = {}
    hol = events[events["kind"] == "holiday"]
    for e in hol.itertuples():
        start, end = e.start.tz_convert(zone), e.end.tz_convert(zone)
        for day in pd.date_range(start.normalize(), end, freq="D", inclusive="left"):
            if min(end, day + pd.Timedelta(days=1)) - max(start, day) >= pd.Timedelta(hours=12):
                holidays[day.date()] = str(e.name)
    others = events[events["kind"] != "holiday"][["name", "kind", "start", "end", "expected_uplift"]]
    return DayCalendar(zone=zone, naive=naive, holidays=holidays, events=others.reset_index(drop=True))


def from_region(region: str, start: pd.Timestamp, end: pd.Timestamp, *, zone: str = "UTC", naive: bool = False,
                folder=None) -> DayCalendar:
    """The public holidays of ``region`` (``US``, ``US-DC``; see ``parse_region``) from ``start``
    to ``end``, plus the events of a calendar folder (``profiles_data/calendars``) if given."""
    from shaper_pipelines.lib.calendars import business_calendar, events_frame

    country, subdiv = parse_region(region) if region else (None, None)
    # A day either side, so the days before the first and after the last date have their kinds.
    events = business_calendar(start=start - pd.Timedelta(days=2), end=end + pd.Timedelta(days=2),
                               country=country, subdiv=subdiv, timezone=zone, folder=folder)
    return from_events(events_frame(events), zone=zone, naive=naive)
