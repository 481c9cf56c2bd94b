"""The calendar sensor: every business event within the lead time gets one rehearsal and one
re-plan, and never a second, even when the sensor starts again from its stored cursor."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd


def _events(*rows):
    return pd.DataFrame([{"name": n, "kind": "sale", "start": pd.Timestamp(s, tz="UTC"),
                          "end": pd.Timestamp(s, tz="UTC") + pd.Timedelta(hours=2)} for n, s in rows])


def test_each_event_is_rehearsed_and_replanned_once():
    from shaper_pipelines.defs.calendar.sensors import requests_for

    events = _events(("Black Friday sale", "2026-11-27 14:00"), ("Release 4.2", "2026-11-27 16:00"))
    first, handled = requests_for(events, set())
    assert [r.job_name for r in first] == ["load_simulation_job", "plan_job"] * 2
    assert first[0].run_config["ops"]["select_profiles"]["config"]["events"] == ["Black_Friday_sale"]
    assert first[0].run_key == "rehearse:Black Friday sale@2026-11-27T14:00Z"
    again, more = requests_for(events, handled)
    assert again == [] and more == set()


def test_the_sensor_keeps_its_handled_events_in_the_cursor(monkeypatch):
    """As the daemon runs it: the cursor it stores is the one it is given after a restart."""
    from shaper_pipelines.defs.calendar import sensors

    now = pd.Timestamp.now(tz="UTC")
    soon = _events(("Quarter-end close", (now + pd.Timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")))
    monkeypatch.setattr(sensors, "upcoming_events", lambda _now, _lead: soon)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance)
        first = sensors.calendar_rehearsal_sensor(context)
        assert len(first) == 2
        restarted = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        second = sensors.calendar_rehearsal_sensor(restarted)
        assert isinstance(second, dg.SkipReason)
        assert json.loads(restarted.cursor) == [f"Quarter-end close@{soon['start'][0]:%Y-%m-%dT%H:%MZ}"]


def test_upcoming_events_come_from_the_project_calendar():
    from shaper_pipelines.defs.calendar.sensors import upcoming_events

    now = pd.Timestamp.now(tz="UTC")
    events = upcoming_events(now, pd.Timedelta(days=40))
    assert len(events) > 0 and (events["kind"] != "holiday").all()
    assert (events["start"] >= now).all()
