"""Business calendars: holidays, dated and recurring events, time zones, and validation."""

from __future__ import annotations

import pandas as pd
import pytest

from shaper_pipelines.lib.calendars import (
    CalendarError, business_calendar, events_frame, expand, load_calendar_file, public_holidays,
)
from shaper_pipelines_tests.conftest import PROJECT

CALENDARS = PROJECT / "profiles_data" / "calendars"


def test_us_holidays_are_all_day_in_local_time():
    events = public_holidays("US", None, "2026-11-01", "2026-12-01", "America/New_York")
    thanksgiving = [e for e in events if e.start.date() == pd.Timestamp("2026-11-26").date()]
    assert len(thanksgiving) == 1
    assert thanksgiving[0].start == pd.Timestamp("2026-11-26 05:00", tz="UTC")
    assert thanksgiving[0].end == pd.Timestamp("2026-11-27 05:00", tz="UTC")
    assert thanksgiving[0].kind == "holiday" and thanksgiving[0].source == "holidays:US"


def test_subdivisions_and_unknown_countries():
    bavaria = public_holidays("DE", "BY", "2026-01-01", "2026-01-10", "Europe/Berlin")
    assert any(e.start == pd.Timestamp("2026-01-05 23:00", tz="UTC") for e in bavaria)  # Epiphany
    assert not public_holidays("DE", "BE", "2026-01-05", "2026-01-08", "Europe/Berlin")
    with pytest.raises(CalendarError, match="no public holidays known for XX"):
        public_holidays("XX", None, "2026-01-01", "2026-02-01")


def test_the_demo_calendar_expands_with_rules_and_daylight_saving():
    frame = events_frame(business_calendar(start="2026-10-01", end="2027-01-01", country="US",
                                           timezone="America/New_York", folder=CALENDARS))
    month_end = frame[frame["name"] == "month-end-close"]
    # Last business days: Wed 30 Sep (its batch runs into 1 October), Fri 30 Oct, Mon 30 Nov,
    # Thu 31 Dec; 18:00 New York is 22:00 UTC in summer time, 23:00 UTC after 1 November.
    assert list(month_end["start"]) == [pd.Timestamp(t, tz="UTC") for t in
                                        ("2026-09-30 22:00", "2026-10-30 22:00", "2026-11-30 23:00",
                                         "2026-12-31 23:00")]
    assert (month_end["end"] - month_end["start"] == pd.Timedelta(hours=6)).all()
    quarter = frame[frame["name"] == "quarter-end-close"]
    assert list(quarter["start"]) == [pd.Timestamp("2026-09-30 22:00", tz="UTC"),
                                      pd.Timestamp("2026-12-31 23:00", tz="UTC")]
    mondays = frame[frame["name"] == "weekly-report"]["start"]
    assert len(mondays) == 13 and all(t.tz_convert("America/New_York").hour == 9 for t in mondays)
    sale = frame[frame["name"] == "black-friday-sale"].iloc[0]
    assert sale["start"] == pd.Timestamp("2026-11-27 05:00", tz="UTC") and sale["expected_uplift"] == 2.5
    assert list(frame.columns) == ["name", "kind", "start", "end", "timezone", "expected_uplift", "source"]
    assert str(frame["start"].dtype).startswith("datetime64") and frame["start"].dt.tz is not None


def test_a_holiday_moves_the_last_business_day(tmp_path):
    # 31 May 2027 is Memorial Day (a Monday), so May's last business day is Friday 28 May.
    f = tmp_path / "c.yaml"
    f.write_text("events:\n  - {name: close, kind: month_end, rule: last_business_day_of_month, time: '18:00',"
                 " duration: 1h, country: US, timezone: UTC}\n")
    starts = [e.start for e in expand(load_calendar_file(f), "2027-05-01", "2027-06-01")]
    assert starts == [pd.Timestamp("2027-05-28 18:00", tz="UTC")]


@pytest.mark.parametrize("event, field, words", [
    ("{name: a, kind: party, start: 2026-01-01T00:00, duration: 1h}", "kind", "Input should be"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, timezone: Moon/Base}", "timezone", "time zone"),
    ("{name: a, kind: sale, start: 2026-01-02T00:00, end: 2026-01-01T00:00}", "event", "end is not after start"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, expected_uplift: -1}", "expected_uplift", "greater than 0"),
    ("{name: a, kind: sale, rule: fortnightly, duration: 1h}", "rule", "Input should be"),
    ("{name: a, kind: custom, rule: weekly, duration: 1h}", "event", "needs weekday"),
    ("{name: a, kind: custom, rule: daily, time: '25:00', duration: 1h}", "time", "not HH:MM"),
    ("{name: a, kind: custom, rule: daily, duration: 40d}", "duration", "31 days"),
])
def test_bad_events_name_file_event_and_field(tmp_path, event, field, words):
    f = tmp_path / "bad.yaml"
    f.write_text(f"events:\n  - {{name: fine, kind: sale, start: 2026-01-01T00:00, duration: 1h}}\n  - {event}\n")
    with pytest.raises(CalendarError) as err:
        load_calendar_file(f)
    text = str(err.value)
    assert str(f) in text and "event 1 ('a')" in text and words in text
    assert field == "event" or f"field {field}" in text
