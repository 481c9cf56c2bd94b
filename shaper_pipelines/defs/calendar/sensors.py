"""Rehearse before the calendar says load is coming: some hours before each business event, a
simulation of the event's profile and a re-plan, once per event - also across daemon restarts,
because the events already handled live in the sensor's cursor (and each run has a run key)."""

import json

import dagster as dg
import pandas as pd

from shaper_pipelines.defs.calendar.assets import CalendarConfig
from shaper_pipelines.defs.plan.assets import plan_job
from shaper_pipelines.defs.simulation.jobs import load_simulation_job
from shaper_pipelines.settings import get_settings

# Read when the code location loads: the sensor's description states them.
LEAD = pd.Timedelta(hours=get_settings().rehearsal_lead_hours)
INTENSITY = get_settings().rehearsal_intensity  # a rehearsal, not the real thing


def upcoming_events(now: pd.Timestamp, lead: pd.Timedelta) -> pd.DataFrame:
    """Business events (holidays left out: there is no load to rehearse) starting within ``lead``."""
    from shaper_pipelines.lib.calendars import business_calendar, events_frame
    from shaper_pipelines.settings import project_root

    cfg = CalendarConfig()
    frame = events_frame(business_calendar(start=now, end=now + lead, country=cfg.country or None,
                                           subdiv=cfg.subdivision or None, timezone=cfg.timezone,
                                           folder=project_root() / "profiles_data" / "calendars"))
    return frame[(frame["kind"] != "holiday") & (frame["start"] >= now) & (frame["start"] < now + lead)]


def requests_for(events: pd.DataFrame, handled: set[str]) -> tuple[list[dg.RunRequest], set[str]]:
    """Two runs per event not handled yet: its rehearsal and a re-plan."""
    from shaper_pipelines.lib.derive import _event_name

    requests, new = [], set()
    for e in events.itertuples():
        key = f"{e.name}@{e.start:%Y-%m-%dT%H:%MZ}"
        if key in handled or key in new:
            continue
        new.add(key)
        why = {"shaper/calendar_event": key}
        requests.append(dg.RunRequest(
            run_key=f"rehearse:{key}", job_name=load_simulation_job.name, tags=why,
            run_config={"ops": {"select_profiles": {"config": {"events": [_event_name(e.name)],
                                                                 "intensity": INTENSITY}}}}))
        requests.append(dg.RunRequest(run_key=f"replan:{key}", job_name=plan_job.name, tags=why))
    return requests, new


@dg.sensor(jobs=[load_simulation_job, plan_job], minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description=f"{LEAD} before each business-calendar event: rehearse its profile (at "
                       f"{INTENSITY:g} intensity) and re-plan, once per event. Stopped by default: it makes real load.")
def calendar_rehearsal_sensor(context: dg.SensorEvaluationContext):
    now = pd.Timestamp.now(tz="UTC")
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    events = upcoming_events(now, LEAD)
    requests, new = requests_for(events, handled)
    # Keep the cursor small: an event that has started can no longer be rehearsed twice.
    keep = {k for k in handled | new if pd.Timestamp(k.rsplit("@", 1)[1]) >= now - pd.Timedelta(days=2)}
    context.update_cursor(json.dumps(sorted(keep)))
    if not requests:
        return dg.SkipReason(f"no business event starts within {LEAD} that was not rehearsed already")
    return requests
