"""Business calendars: holidays, dated and recurring events, time zones, and validation."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest

from shaper_pipelines.lib.calendars import (
    EVENT_KINDS, CalendarError, CalendarEvent, business_calendar, events_frame, expand, is_business_day,
    load_calendar_dir, load_calendar_file, public_holidays,
)
from shaper_pipelines_tests.conftest import PROJECT

CALENDARS = PROJECT / "profiles_data" / "calendars"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def calendar(tmp_path, *events: str, header: str = "", name: str = "c.yaml"):
    """A calendar file with one flow-style event per line."""
    path = tmp_path / name
    path.write_text(header + "events:\n" + "".join(f"  - {e}\n" for e in events))
    return path


def starts(path, start, end) -> list[pd.Timestamp]:
    return [e.start for e in expand(load_calendar_file(path), start, end)]


def test_us_holidays_are_all_day_in_local_time():
    events = public_holidays("US", None, "2026-11-01", "2026-12-01", "America/New_York")
    thanksgiving = [e for e in events if e.name == "Thanksgiving Day"]
    assert len(thanksgiving) == 1
    assert thanksgiving[0].start == utc("2026-11-26 05:00") and thanksgiving[0].end == utc("2026-11-27 05:00")
    assert thanksgiving[0].kind == "holiday" and thanksgiving[0].source == "holidays:US"
    assert thanksgiving[0].expected_uplift is None and thanksgiving[0].timezone == "America/New_York"
    assert [e.name for e in events] == ["Veterans Day", "Thanksgiving Day"]


def test_subdivisions_add_their_own_holidays():
    california = public_holidays("US", "CA", "2026-03-01", "2026-04-01", "America/Los_Angeles")
    assert [(e.name, e.start, e.source) for e in california] == [
        ("Cesar Chavez Day", utc("2026-03-31 07:00"), "holidays:US-CA")]
    assert not public_holidays("US", None, "2026-03-01", "2026-04-01", "America/Los_Angeles")
    bavaria = public_holidays("DE", "BY", "2026-01-01", "2026-01-10", "Europe/Berlin")
    assert ("Epiphany", utc("2026-01-05 23:00")) in [(e.name, e.start) for e in bavaria]
    assert not public_holidays("DE", "BE", "2026-01-05", "2026-01-08", "Europe/Berlin")


def test_unknown_countries_subdivisions_and_zones_are_clear_errors():
    with pytest.raises(CalendarError, match="no public holidays known for country 'XX'"):
        public_holidays("XX", None, "2026-01-01", "2026-02-01")
    with pytest.raises(CalendarError, match="country US has no subdivision 'ZZ'; known: AK, AL"):
        public_holidays("US", "ZZ", "2026-01-01", "2026-02-01")
    with pytest.raises(CalendarError, match="unknown time zone 'Mars/Olympus'"):
        public_holidays("US", None, "2026-01-01", "2026-02-01", "Mars/Olympus")


def test_the_demo_calendar_expands_with_rules_and_daylight_saving():
    frame = events_frame(business_calendar(start="2026-10-01", end="2027-01-01", country="US",
                                           timezone="America/New_York", folder=CALENDARS))
    month_end = frame[frame["name"] == "month-end-close"]
    # Last business days: Wed 30 Sep (its batch runs into 1 October), Fri 30 Oct, Mon 30 Nov,
    # Thu 31 Dec; 18:00 New York is 22:00 UTC in summer time, 23:00 UTC after 1 November.
    assert list(month_end["start"]) == [utc(t) for t in ("2026-09-30 22:00", "2026-10-30 22:00",
                                                         "2026-11-30 23:00", "2026-12-31 23:00")]
    assert (month_end["end"] - month_end["start"] == pd.Timedelta(hours=6)).all()
    assert (month_end["expected_uplift"] == 1.4).all() and (month_end["kind"] == "month_end").all()
    quarter = frame[frame["name"] == "quarter-end-close"]
    assert list(quarter["start"]) == [utc("2026-09-30 22:00"), utc("2026-12-31 23:00")]
    assert list(quarter["end"]) == [utc("2026-10-01 06:00"), utc("2027-01-01 07:00")]
    mondays = frame[frame["name"] == "weekly-report"]["start"]
    local = [t.tz_convert("America/New_York") for t in mondays]
    assert len(mondays) == 13 and all(t.hour == 9 and t.weekday() == 0 for t in local)
    sale = frame[frame["name"] == "black-friday-sale"].iloc[0]
    assert (sale["start"], sale["end"]) == (utc("2026-11-27 05:00"), utc("2026-12-01 04:59"))
    assert sale["expected_uplift"] == 2.5 and sale["source"] == str(CALENDARS / "business_events.yaml")
    assert "spring-campaign" not in set(frame["name"]) and "Thanksgiving Day" in set(frame["name"])
    assert list(frame["start"]) == sorted(frame["start"])
    assert set(frame["kind"]) <= set(EVENT_KINDS)


def test_the_demo_calendar_has_every_kind_of_event():
    specs = {s.name: s for s in load_calendar_dir(CALENDARS)}
    assert {s.kind for s in specs.values()} == {"sale", "campaign", "release", "month_end", "quarter_end", "custom"}
    (campaign,) = expand([specs["spring-campaign"]], "2027-01-01", "2027-12-31")
    assert campaign.start == utc("2027-03-15 12:00") and campaign.end - campaign.start == pd.Timedelta(days=7)


def test_a_holiday_moves_the_last_business_day(tmp_path):
    # Memorial Day is Monday 31 May 2027, and New Year's Day 2028 (a Saturday) is observed on
    # Friday 31 December 2027: both months end their business on the day before.
    rule = "kind: month_end, rule: last_business_day_of_month, time: '18:00', duration: 1h"
    with_us = calendar(tmp_path, f"{{name: close, {rule}, country: US}}", name="us.yaml")
    without = calendar(tmp_path, f"{{name: close, {rule}}}", name="plain.yaml")
    assert starts(with_us, "2027-05-01", "2027-06-01") == [utc("2027-05-28 18:00")]
    assert starts(with_us, "2027-12-01", "2028-01-01") == [utc("2027-12-30 18:00")]
    assert starts(without, "2027-12-01", "2028-01-01") == [utc("2027-12-31 18:00")]
    # The 2026 demo months are untouched: 31 December 2026 is still a business day.
    assert starts(with_us, "2026-12-01", "2027-01-01") == [utc("2026-12-31 18:00")]
    # A subdivision counts too: Cesar Chavez Day, Tuesday 31 March 2026, in California.
    quarter = calendar(tmp_path, "{name: q, kind: quarter_end, rule: last_business_day_of_quarter, duration: 1h,"
                                 " country: US, subdiv: CA}", name="ca.yaml")
    assert starts(quarter, "2026-01-01", "2026-07-01") == [utc("2026-03-30"), utc("2026-06-30")]


def test_is_business_day():
    assert is_business_day("2026-12-31", "US") and is_business_day(dt.date(2027, 12, 31))
    assert not is_business_day(dt.date(2027, 12, 31), "US")
    assert not is_business_day(pd.Timestamp("2026-11-26"), "US")
    assert not is_business_day("2026-11-28")  # a Saturday
    assert not is_business_day("2026-03-31", "US", "CA") and is_business_day("2026-03-31", "US")


def test_local_times_follow_daylight_saving(tmp_path):
    path = calendar(
        tmp_path,
        "{name: batch, kind: custom, rule: daily, time: '18:00', duration: 6h}",
        "{name: early, kind: custom, rule: daily, time: '02:30', duration: 1h}",
        header="timezone: America/New_York\n")
    events = expand(load_calendar_file(path), "2027-03-13T06:00", "2027-03-15")
    batch = [e.start for e in events if e.name == "batch"]
    assert batch == [utc("2027-03-13 23:00"), utc("2027-03-14 22:00")]
    # 02:30 does not exist on 14 March 2027 in New York: it moves to 03:00 EDT.
    early = [e.start for e in events if e.name == "early"]
    assert early == [utc("2027-03-13 07:30"), utc("2027-03-14 07:00")]
    assert all(e.end - e.start == pd.Timedelta(hours=1) for e in events if e.name == "early")


def test_weekly_rule_with_its_own_time_zone(tmp_path):
    path = calendar(tmp_path, "{name: report, kind: custom, rule: weekly, weekday: Monday, time: '09:00',"
                              " duration: 1h, timezone: Europe/London}", header="timezone: America/New_York\n")
    events = expand(load_calendar_file(path), "2026-10-01", "2026-11-10")
    assert [e.start for e in events] == [utc(t) for t in (
        "2026-10-05 08:00", "2026-10-12 08:00", "2026-10-19 08:00", "2026-10-26 09:00",
        "2026-11-02 09:00", "2026-11-09 09:00")]
    assert {e.timezone for e in events} == {"Europe/London"}


def test_monthly_and_first_business_day_rules(tmp_path):
    path = calendar(tmp_path,
                    "{name: billing, kind: custom, rule: monthly, day: 31, time: '06:00', duration: 2h}",
                    "{name: opening, kind: custom, rule: first_business_day_of_month, duration: 1h, country: US}")
    events = expand(load_calendar_file(path), "2027-01-01", "2027-05-01")
    assert [e.start for e in events if e.name == "billing"] == [utc("2027-01-31 06:00"), utc("2027-03-31 06:00")]
    # 1 January 2027 is New Year's Day (a Friday), so January opens on Monday the 4th.
    assert [e.start.date() for e in events if e.name == "opening"] == [
        dt.date(2027, 1, 4), dt.date(2027, 2, 1), dt.date(2027, 3, 1), dt.date(2027, 4, 1)]


def test_expand_keeps_occurrences_that_overlap_the_window(tmp_path):
    path = calendar(tmp_path, "{name: batch, kind: custom, rule: daily, time: '22:00', duration: 6h}",
                    "{name: launch, kind: release, start: 2026-06-01T12:00, duration: 90m, timezone: UTC}")
    events = expand(load_calendar_file(path), dt.datetime(2026, 6, 1, 3), pd.Timestamp("2026-06-01T13:00Z"))
    assert [(e.name, e.start) for e in events] == [("batch", utc("2026-05-31 22:00")), ("launch", utc("2026-06-01 12:00"))]
    assert events[1].end == utc("2026-06-01 13:30")
    assert expand(load_calendar_file(path), "2026-06-01T04:00", "2026-06-01T12:00") == []


def test_a_bare_date_is_local_midnight_and_an_offset_is_kept(tmp_path):
    path = calendar(tmp_path, "{name: day, kind: campaign, start: 2026-07-01, duration: 1d}",
                    "{name: fixed, kind: release, start: '2026-07-01T12:00+02:00', end: '2026-07-01T13:00+02:00'}",
                    header="timezone: Asia/Tokyo\n")
    events = expand(load_calendar_file(path), "2026-06-01", "2026-08-01")
    assert [(e.name, e.start, e.end) for e in events] == [
        ("day", utc("2026-06-30 15:00"), utc("2026-07-01 15:00")),
        ("fixed", utc("2026-07-01 10:00"), utc("2026-07-01 11:00"))]


def test_a_year_of_daily_events_expands_quickly(tmp_path):
    specs = load_calendar_file(calendar(tmp_path, "{name: d, kind: custom, rule: daily, time: '12:00', duration: 1h,"
                                                  " timezone: Europe/Berlin}"))
    expand(specs, "2026-01-01", "2026-02-01")
    began = time.perf_counter()
    events = expand(specs, "2026-01-01", "2027-01-01")
    assert time.perf_counter() - began < 0.2
    assert len(events) == 365 and events[0].start == utc("2026-01-01 11:00") and events[-1].start == utc("2026-12-31 11:00")


@pytest.mark.parametrize("event, field, words", [
    ("{name: a, kind: party, start: 2026-01-01T00:00, duration: 1h}", "kind", "'party' is not one of holiday"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, timezone: Moon/Base}", "timezone", "unknown time zone"),
    ("{name: a, kind: sale, start: 2026-01-02T00:00, end: 2026-01-01T00:00}", "end", "end is not after start"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, end: 2026-03-01T00:00}", "end", "at most 31 days"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00}", "end", "exactly one of end and duration"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, expected_uplift: -1}", "expected_uplift", "greater than 0"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, expected_uplift: .inf}", "expected_uplift", "finite"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, expected_uplift: 500}", "expected_uplift", "or equal to 100"),
    ("{name: a, kind: sale, rule: fortnightly, duration: 1h}", "rule", "'fortnightly' is not one of"),
    ("{name: a, kind: custom, rule: weekly, duration: 1h}", "weekday", "rule weekly needs weekday"),
    ("{name: a, kind: custom, rule: weekly, weekday: funday, duration: 1h}", "weekday", "not one of monday"),
    ("{name: a, kind: custom, rule: daily, time: '25:00', duration: 1h}", "time", "not HH:MM"),
    ("{name: a, kind: custom, rule: daily, time: 18:00, duration: 1h}", "time", "quoted"),
    ("{name: a, kind: custom, rule: daily, duration: 40d}", "duration", "31 days"),
    ("{name: a, kind: custom, rule: daily, duration: 0s}", "duration", "above 0"),
    ("{name: a, kind: custom, rule: daily, duration: soon}", "duration", "not a duration"),
    ("{name: a, kind: custom, rule: daily}", "duration", "needs duration"),
    ("{name: a, kind: custom, rule: daily, duration: 1h, start: 2026-01-01T00:00}", "start", "no start or end"),
    ("{name: a, kind: custom, rule: monthly, duration: 1h}", "day", "needs day"),
    ("{name: a, kind: custom, rule: last_business_day_of_month, duration: 1h, country: XX}", "country", "'XX'"),
    ("{name: a, kind: custom, rule: daily, duration: 1h, country: US}", "country", "business-day rules"),
    ("{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h, colour: red}", "colour", "Extra inputs"),
    ("{name: fine, kind: sale, start: 2026-02-01T00:00, duration: 1h}", "name", "event 0 has the same name"),
])
def test_bad_events_name_file_event_and_field(tmp_path, event, field, words):
    path = calendar(tmp_path, "{name: fine, kind: sale, start: 2026-01-01T00:00, duration: 1h}", event)
    with pytest.raises(CalendarError) as err:
        load_calendar_file(path)
    text = str(err.value)
    name = event.split(",")[0].removeprefix("{name: ")
    assert text.startswith(f"file {path}, event 1 ('{name}'), field {field}: ")
    assert words in text


def test_file_level_problems_name_the_file(tmp_path):
    bad_zone = calendar(tmp_path, "{name: a, kind: sale, start: 2026-01-01T00:00, duration: 1h}",
                        header="timezone: Nowhere/Land\n")
    with pytest.raises(CalendarError, match=rf"file {bad_zone}: field timezone: unknown time zone"):
        load_calendar_file(bad_zone)
    no_events = tmp_path / "empty.yaml"
    no_events.write_text("timezone: UTC\n")
    with pytest.raises(CalendarError, match=rf"file {no_events}: field events"):
        load_calendar_file(no_events)
    broken = tmp_path / "broken.yaml"
    broken.write_text("events: [\n")
    with pytest.raises(CalendarError, match=rf"file {broken}: cannot read"):
        load_calendar_file(broken)


def test_one_bad_event_fails_the_whole_file_and_folder(tmp_path):
    calendar(tmp_path, "{name: good, kind: sale, start: 2026-01-01T00:00, duration: 1h}", name="a.yaml")
    bad = calendar(tmp_path, "{name: ok, kind: sale, start: 2026-01-01T00:00, duration: 1h}",
                   "{name: broken, kind: sale, start: 2026-01-01T00:00, duration: -1h}", name="b.yml")
    with pytest.raises(CalendarError, match=r"event 1 \('broken'\), field duration"):
        load_calendar_file(bad)
    with pytest.raises(CalendarError, match="b.yml"):
        load_calendar_dir(tmp_path)
    with pytest.raises(CalendarError, match="b.yml"):
        business_calendar(start="2026-01-01", end="2026-02-01", folder=tmp_path)
    bad.unlink()
    assert [s.name for s in load_calendar_dir(tmp_path)] == ["good"]


def test_event_names_are_unique_across_files(tmp_path):
    first = calendar(tmp_path, "{name: sale, kind: sale, start: 2026-01-01T00:00, duration: 1h}", name="a.yaml")
    second = calendar(tmp_path, "{name: other, kind: sale, start: 2026-01-01T00:00, duration: 1h}",
                      "{name: sale, kind: sale, start: 2026-03-01T00:00, duration: 1h}", name="b.yaml")
    with pytest.raises(CalendarError, match=rf"file {second}, event 1 \('sale'\), field name: also defined in {first}"):
        load_calendar_dir(tmp_path)
    with pytest.raises(CalendarError, match="does not exist"):
        load_calendar_dir(tmp_path / "missing")


def test_events_frame_columns_and_dtypes():
    event = CalendarEvent("x", "custom", utc("2026-01-01"), utc("2026-01-02"), "UTC", None, "test")
    frame = events_frame([event, CalendarEvent("y", "sale", utc("2026-01-03"), utc("2026-01-04"), "UTC", 2.0, "t")])
    columns = ["name", "kind", "start", "end", "timezone", "expected_uplift", "source"]
    assert list(frame.columns) == columns
    assert isinstance(frame["start"].dtype, pd.DatetimeTZDtype) and str(frame["end"].dt.tz) == "UTC"
    assert frame["expected_uplift"].dtype == "float64" and frame["expected_uplift"].isna().tolist() == [True, False]
    empty = events_frame([])
    assert list(empty.columns) == columns and len(empty) == 0
    assert isinstance(empty["start"].dtype, pd.DatetimeTZDtype) and empty["expected_uplift"].dtype == "float64"
    assert business_calendar(start="2026-01-01", end="2026-01-02") == []
