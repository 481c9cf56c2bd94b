"""The business calendar as an asset: holidays and the business's own events around today."""

import dagster as dg
import pandas as pd

from shaper_pipelines.defs.automation import CALENDAR_DAILY
from shaper_pipelines.lib import clock


class CalendarConfig(dg.Config):
    country: str = "US"  # public holidays from the holidays package; empty for none
    subdivision: str = ""  # e.g. CA for California, BY for Bavaria
    timezone: str = "America/New_York"  # where holidays start and end
    past_days: int = 90  # history the uplift of each event kind is measured on
    future_days: int = 60  # how far ahead profiles are derived


@dg.asset(group_name="calendar", kinds={"python", "yaml"}, owners=["team:platform"],
          automation_condition=CALENDAR_DAILY)
def business_calendar(context: dg.AssetExecutionContext, config: CalendarConfig) -> pd.DataFrame:
    """Public holidays and custom business events (profiles_data/calendars/*.yaml: sales,
    month-end and quarter-end processing, releases, campaigns, recurring rules) from
    ``past_days`` ago to ``future_days`` ahead, one row per occurrence with UTC start and end
    and the expected uplift."""
    from shaper_pipelines.lib.calendars import business_calendar as build, events_frame
    from shaper_pipelines.settings import project_root

    today = clock.now().floor("D")
    events = build(start=today - pd.Timedelta(days=config.past_days), end=today + pd.Timedelta(days=config.future_days),
                   country=config.country or None, subdiv=config.subdivision or None, timezone=config.timezone,
                   folder=project_root() / "profiles_data" / "calendars")
    frame = events_frame(events)
    upcoming = frame[frame["start"] >= today].head(25)
    table = "\n".join(
        ["| event | kind | starts (UTC) | hours | expected uplift |", "|---|---|---|---:|---:|"]
        + [f"| {r.name} | {r.kind} | {r.start:%Y-%m-%d %H:%M} | {(r.end - r.start).total_seconds() / 3600:g} | "
           f"{'' if pd.isna(r.expected_uplift) else f'{r.expected_uplift:g}'} |" for r in upcoming.itertuples()]
    )
    context.add_output_metadata({
        "events": dg.MetadataValue.int(len(frame)),
        "by_kind": dg.MetadataValue.json(frame["kind"].value_counts().to_dict()),
        "upcoming": dg.MetadataValue.md(table),
    })
    return frame
