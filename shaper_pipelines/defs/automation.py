"""When the loop re-runs itself, and the sensor that evaluates it (on by default).

The daily loop is: history_schedule lands yesterday -> every series' forecast re-fits and the
day's accuracy is judged -> once no forecast is still running, the utilisation forecast, the plan
and the export (one run) -> plan_apply_sensor: one apply, a dry run unless the operator switched
it to live. Each condition is written so that one new history day asks for exactly one run per
forecast series, one accuracy day, one plan run and one apply (benchmarks/daily_loop.py counts).
"""

import dagster as dg

from shaper_pipelines.settings import get_settings

HISTORY = dg.AssetSelection.groups("history")
CALENDAR = dg.AssetSelection.assets("business_calendar")
FORECASTS = dg.AssetSelection.assets("demand_forecast")


def after_inputs(label: str, ignore: dg.AssetSelection | None = None, missing: bool = True) -> dg.AutomationCondition:
    """Run once after an input changed (or, with ``missing``, when the asset is found never made),
    when no input is missing or still being computed. A change is remembered until handled
    (``since_last_handled``), so five forecasts finishing on five ticks make one plan, not five.
    Inputs in ``ignore`` are read but do not trigger. History before the first backfill is never
    "missing": a fit reads what there is."""
    updated = dg.AutomationCondition.any_deps_updated()
    if ignore is not None:
        updated = updated.ignore(ignore)
    trigger = updated.since_last_handled()
    if missing:  # never made (a new deployment, a new series): made once; a failed attempt waits for a change
        trigger = trigger | (dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed())
    return (trigger
            & ~dg.AutomationCondition.any_deps_missing().ignore(HISTORY)
            & ~dg.AutomationCondition.any_deps_in_progress()
            & ~dg.AutomationCondition.in_progress()).with_label(label)


# The calendar moves with the date: made once, then every morning before history lands. It is
# read by the forecasts and plans when they next run; its own refresh triggers neither (that would
# re-fit and re-plan twice a day).
CALENDAR_DAILY = ((dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed()
                   & ~dg.AutomationCondition.in_progress())
                  | dg.AutomationCondition.on_cron("0 5 * * *")).with_label("daily at 05:00 UTC, and when missing")
# A forecast re-fits when its series' history changes.
REFIT = after_inputs("re-fit when history lands", ignore=CALENDAR)
# A day is judged when its own history lands. The forecasts it judges were issued before the
# day began, so a new forecast (issued after it) is no reason to judge it again; and past days
# never judged are not judged all at once when the daemon starts.
JUDGE = after_inputs("judge a day when its history lands", ignore=FORECASTS, missing=False)
# Plans read history only for backtests at past origins; they follow the forecasts, which follow
# history, so history landing alone does not re-plan (it would plan twice: before and after the
# forecasts).
REPLAN = after_inputs("re-plan when the forecasts or the capacity model change", ignore=HISTORY | CALENDAR)
# What one instance serves changes when a rehearsal ends.
REMEASURE = after_inputs("re-fit when a rehearsal ends")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "shaper_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=get_settings().sensor_interval_seconds,
    # Plain runs, not a backfill: a backfill holds the day's accuracy until every forecast in it has
    # finished (they share it), and never runs it if one forecast fails; the accuracy does not need them.
    emit_backfills=False,
    description="Evaluates every asset's automation condition: forecasts re-fit when history lands, the day is "
                "judged, plans and the Prometheus export follow the forecasts. It only reads, forecasts and "
                "plans, so it is on by default; applying (plan_apply_sensor) is a dry run until an operator "
                "switches scaling to live, and rehearsals (which make real load) are off until turned on.",
)
