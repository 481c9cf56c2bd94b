"""``shaper forecast``, ``shaper plan`` and ``shaper replay``: the command-line contract on history
files. Results go to the named file (or standard output); what was repaired, which model won and
progress go to standard error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaper_pipelines.lib.action_budget import DEFAULT_MAX_ACTIONS, DEFAULT_MERGE, MERGES, segments


def _duration(text: str):
    import pandas as pd

    from shaper_pipelines.lib.durations import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return pd.Timedelta(seconds=seconds)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _fraction(text: str) -> float:
    value = _positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def _zone(text: str) -> str:
    from shaper_pipelines.lib.timegrid import check_timezone

    try:
        return check_timezone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_actions(text: str) -> int | None:
    if text == "unlimited":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or 'unlimited'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _calendar_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calendar", metavar="REGION",
                        help="public holidays of this ISO country, optionally with a subdivision (US, US-DC, "
                             "DE-BY): holidays and the working days around them are forecast from like days")
    parser.add_argument("--events", metavar="DIR", type=Path,
                        help="business events (calendar YAML files, as profiles_data/calendars): each applies "
                             "its measured effect, or its expected_uplift until the history has occurrences")
    parser.add_argument("--timezone", metavar="ZONE", default="UTC", type=_zone,
                        help="the zone calendar days are counted in (default UTC). Timestamps with an offset are "
                             "converted to it; naive timestamps are taken as that zone's wall clock as they are")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("forecast", help="forecast a history file: timestamp,yhat,yhat_lower,yhat_upper per step")
    f.add_argument("--history", required=True, type=Path, help="timestamp,value (ISO) or ts,value (Unix seconds) CSV")
    f.add_argument("--horizon", required=True, type=_duration, help="how far ahead, e.g. 24h, 2d")
    f.add_argument("--output", required=True, help="CSV to write ('-' for standard output)")
    _calendar_options(f)
    f.add_argument("--models", help="comma-separated candidates (default: the fast ones; add 'prophet')")
    f.set_defaults(func=_forecast)

    p = sub.add_parser("plan", help="a scaling floor for a history file: timestamp,desired_capacity per step")
    p.add_argument("--history", required=True, type=Path)
    p.add_argument("--horizon", required=True, type=_duration)
    p.add_argument("--capacity-per-instance", required=True, type=_positive,
                   help="load one instance serves at 100 %% utilisation, in the history's unit")
    p.add_argument("--target-utilization", type=_fraction, default=0.7)
    p.add_argument("--warmup", type=_duration, default="300s", help="how long an instance takes to serve")
    p.add_argument("--min-capacity", type=int, default=1)
    p.add_argument("--max-capacity", type=int, default=None)
    p.add_argument("--max-actions", type=_max_actions, default=DEFAULT_MAX_ACTIONS, metavar="N",
                   help="at most N changes of the floor per 48 h of plan, pro rata for shorter plans: each change "
                        "is one AWS scheduled action, and a group holds at most 125 (default %(default)s; "
                        "'unlimited' for comparison only)")
    p.add_argument("--merge", choices=MERGES, default=DEFAULT_MERGE,
                   help="how changes are merged to fit the budget (default %(default)s: the cheapest floor "
                        "never below the unlimited one)")
    _calendar_options(p)
    p.add_argument("--output", required=True, help="CSV to write ('-' for standard output)")
    p.set_defaults(func=_plan)

    r = sub.add_parser("replay", help="judge reactive tracking, seasonal naive, Prophet and shaper on a trace "
                                      "(capacity-replay protocol)")
    r.add_argument("--trace", required=True, type=Path)
    r.add_argument("--plot", type=Path, help="PNG to write (default: <trace name>-replay.png here)")
    r.add_argument("--no-prophet", action="store_true", help="skip the Prophet baseline (slow on long traces)")
    r.set_defaults(func=_replay)


def _say(message: str) -> None:
    print(f"shaper: {message}", file=sys.stderr, flush=True)


def _load(path: Path, horizon, with_report: bool = False):
    """The regular history of ``path`` (its grid bounded by ``lib.history.MAX_GRID_STEPS``) and a
    ``horizon`` checked against it (``lib.forecast.check_horizon``), before any model or plan."""
    import pandas as pd

    from shaper_pipelines.lib.forecast import check_horizon
    from shaper_pipelines.lib.history import load_history

    check_horizon(horizon, step=60.0)  # the absolute bounds, before the file is read
    series, report = load_history(path)
    step = pd.Timedelta(seconds=report.step_seconds)
    check_horizon(horizon, report.step_seconds, series.index[-1] - series.index[0] + step)
    _say(f"{path.name}: {report.points} steps of {report.step_seconds:g}s "
         f"({series.index[0]:%Y-%m-%d %H:%M} .. {series.index[-1]:%Y-%m-%d %H:%M} UTC); {report.summary()}")
    return (series, report) if with_report else series


def _write(frame, output: str) -> None:
    from shaper_pipelines.cli.output import write_output

    text = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ", float_format="%.6g")
    write_output(text, output)
    if output != "-":
        _say(f"wrote {len(frame)} rows to {output}")


def _forecast(args) -> int:
    from shaper_pipelines.lib.forecast import forecast

    series, report = _load(args.history, args.horizon, with_report=True)
    calendar = _calendar(args, series, report)
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    result = forecast(series, args.horizon, models=models, calendar=calendar)
    for note in result.notes:
        _say(note)
    _say(f"model: {result.model}; backtest MAE {result.mase:.3f}x seasonal naive's")
    _write(result.frame[["timestamp", "yhat", "yhat_lower", "yhat_upper"]], args.output)
    return 0


def _calendar(args, series, report):
    """The DayCalendar the calendar options ask for, or None."""
    if not (args.calendar or args.events):
        return None
    from shaper_pipelines.lib.day_kinds import from_region

    calendar = from_region(args.calendar or "", series.index[0], series.index[-1] + args.horizon,
                           zone=args.timezone, naive=report.naive_timestamps, folder=args.events)
    _say(f"calendar: {len(calendar.holidays)} holiday date(s), {len(calendar.events)} event occurrence(s); "
         + (f"naive timestamps: days are the file's own dates ({args.timezone} wall clock)"
            if report.naive_timestamps else f"days counted in {args.timezone}"))
    return calendar


def _plan(args) -> int:
    from shaper_pipelines.lib.planning import make_plan

    series, report = _load(args.history, args.horizon, with_report=True)
    calendar = _calendar(args, series, report)
    plan = make_plan(series, args.horizon, capacity_per_instance=args.capacity_per_instance,
                     forecast_options={"calendar": calendar} if calendar is not None else None,
                     target_utilization=args.target_utilization, warmup=args.warmup,
                     min_capacity=args.min_capacity, max_capacity=args.max_capacity,
                     max_actions=args.max_actions, merge=args.merge)
    for note in plan.notes:
        _say(note)
    _say(f"floor: {plan.rule.why}")
    frame = plan.frame
    _say(f"{len(frame)} steps, {segments(frame['desired_capacity'].to_numpy())} change(s) of the floor "
         f"(scheduled actions), desired capacity {frame['desired_capacity'].min()}..{frame['desired_capacity'].max()}")
    _write(frame, args.output)
    return 0


def _replay(args) -> int:
    from shaper_pipelines.lib import replay, replay_policies
    from shaper_pipelines.lib.history import read_history_csv

    trace = replay.prepare(read_history_csv(args.trace))
    _say(f"{args.trace.name}: {len(trace.demand)} five-minute steps, c = {trace.c:.6g} per instance, "
         f"tested on the last {trace.test_days} day(s)")
    if trace.test_days < replay.TEST_DAYS:
        _say(f"the trace is too short for {replay.TEST_DAYS} test days after one of history; "
             f"tested on {trace.test_days}")
    results = replay_policies.run(trace, prophet=not args.no_prophet, progress=_say)
    print(replay_policies.table(results))
    plot = args.plot or Path(f"{args.trace.stem}-replay.png")
    plot.write_bytes(replay_policies.plot_png(trace, results, f"capacity replay: {args.trace.name}"))
    _say(f"plot: {plot}")
    return 0
