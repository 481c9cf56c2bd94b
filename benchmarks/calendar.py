"""Calendar-aware forecasting on the bike trace: holidays, the days after them and the ordinary
days of the same weeks, day-ahead, against seasonal naive and Prophet with the same holidays.

Data: ``data/real/bike/capital_bikeshare_hourly.csv`` (hourly rentals, Washington D.C.). Its
timestamps are naive local time (America/New_York wall clock, one row per local hour, no DST
jumps). shaper reads naive timestamps as UTC, so a "UTC day" of the series *is* the local day in
D.C.: every origin here is local midnight, labelled 00:00 UTC, which is what ``shaper forecast``
sees when given the file. No zone conversion is done anywhere.

Days judged: every D.C. public holiday inside the series (``holidays`` package, US with subdiv DC,
observed days included; the bike README's list) with at least two weeks of history before it, the
day after each (unless itself a holiday), and every other day of the same Monday-to-Sunday weeks.
For each day, with the history before its local midnight:

- seasonal naive: the same hour a week earlier (the reference; ratios are MAE / its MAE);
- shaper: ``lib.forecast.forecast`` called as ``shaper forecast --calendar US-DC --horizon 24h``
  does (``cli/forecasting.py::_forecast``): the history regularised as ``load_history`` does, the
  calendar from ``from_region("US-DC", ..., naive=True)`` (the file's timestamps are naive);
- Prophet with defaults plus ``holidays=`` the same frame shaper's calendar gives, twice: fitted
  on the last PROPHET_WEEKS weeks of history only (short fits, but it rarely sees a past holiday),
  and on all the history before the origin (it can learn a holiday's effect from earlier
  holidays, at several seconds a fit).

Truth is the source's own rows of the day: hours missing from the source are not scored.
Nothing is tuned to this file; every figure is measured in the run.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks.common import REAL_DATA, publish
from shaper_pipelines.lib.day_kinds import DayCalendar, from_region
from shaper_pipelines.lib.forecast import Context, fit_prophet, forecast
from shaper_pipelines.lib.history import read_history_csv, regularise

TRACE = REAL_DATA / "bike" / "capital_bikeshare_hourly.csv"
COUNTRY, SUBDIV = "US", "DC"  # the days judged: D.C.'s public holidays, as the trace's README lists them
REGION = "US-DC"  # shaper's calendar: the CLI's --calendar US-DC
MIN_HISTORY = pd.Timedelta(days=14)
PROPHET_WEEKS = 8
HORIZON = pd.Timedelta(hours=24)
DAY = pd.Timedelta(days=1)
KINDS = ("holiday", "day after", "ordinary")
METHODS = ("seasonal naive", "shaper", "prophet", "prophet, all history")


@dataclass
class Day:
    date: pd.Timestamp  # local midnight, labelled UTC as shaper reads the file
    kind: str
    name: str = ""
    mae: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    shaper_model: str = ""
    shaper_notes: list[str] = field(default_factory=list)
    hours: int = 0
    in_calendar: bool = False  # the day is in shaper's calendar
    served: str = ""  # what served the day in shaper's forecast (its metadata)


def judged_days(first: pd.Timestamp, last: pd.Timestamp) -> list[Day]:
    import holidays

    names = holidays.country_holidays(COUNTRY, subdiv=SUBDIV, years=range(first.year, last.year + 1))
    hol = {pd.Timestamp(d, tz="UTC"): str(n) for d, n in names.items()}
    inside = sorted(d for d in hol if first + MIN_HISTORY <= d and d + DAY <= last)
    days: dict[pd.Timestamp, Day] = {}
    for d in inside:
        days[d] = Day(d, "holiday", hol[d])
    for d in inside:
        after = d + DAY
        if after not in hol and after + DAY <= last:
            days.setdefault(after, Day(after, "day after", f"after {hol[d]}"))
    for d in inside:
        monday = d - pd.Timedelta(days=d.weekday())
        for k in range(7):
            o = monday + pd.Timedelta(days=k)
            if o not in days and o not in hol and first + MIN_HISTORY <= o and o + DAY <= last:
                days[o] = Day(o, "ordinary", f"week of {hol[d]}")
    return sorted(days.values(), key=lambda x: x.date)


def history_before(raw: pd.Series, origin: pd.Timestamp) -> pd.Series:
    """The regular series ``shaper forecast`` would read from the rows before ``origin``
    (``load_history``: every gap interpolated)."""
    series, _ = regularise(raw[raw.index < origin], 3600.0, max_fill=pd.Timedelta(days=3650))
    return series


def seasonal_naive(series: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    return series.reindex(index - pd.Timedelta(days=7)).to_numpy()


def shaper_forecast(series: pd.Series, origin: pd.Timestamp):
    # the CLI's forecast starts one step after the history's last row; ask for enough to cover the day
    horizon = origin + HORIZON - series.index[-1]
    calendar = from_region(REGION, series.index[0], series.index[-1] + horizon, naive=True)
    result = forecast(series, horizon, models=None, calendar=calendar)
    frame = result.frame.set_index("timestamp")
    return frame["yhat"], result, calendar


def prophet_forecast(series: pd.Series, origin: pd.Timestamp, calendar: DayCalendar,
                     weeks: int | None = PROPHET_WEEKS) -> pd.Series:
    recent = series if weeks is None else series[series.index >= origin - pd.Timedelta(weeks=weeks)]
    ctx = Context(step=3600.0, period=24, start=recent.index[0], calendar=calendar)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model = fit_prophet(recent.to_numpy(dtype=float), ctx)
        future = pd.date_range(origin, periods=24, freq="h")
        yhat = model.predict(pd.DataFrame({"ds": future.tz_localize(None)}))["yhat"].to_numpy()
    return pd.Series(yhat, index=future)


def gmean(xs) -> float:
    xs = [x for x in xs if np.isfinite(x) and x > 0]
    return float(np.exp(np.mean(np.log(xs)))) if xs else float("nan")


def run(progress=print) -> list[Day]:
    raw = read_history_csv(TRACE)
    first, last = raw.index[0].normalize(), raw.index[-1].normalize() + DAY
    days = judged_days(first, last)
    progress(f"{TRACE.name}: {len(raw)} rows {raw.index[0]:%Y-%m-%d} .. {raw.index[-1]:%Y-%m-%d}; "
             f"{len(days)} days to forecast")
    for i, day in enumerate(days):
        origin = day.date
        index = pd.date_range(origin, periods=24, freq="h")
        truth = raw[(raw.index >= origin) & (raw.index < origin + DAY)]
        day.hours = len(truth)
        series = history_before(raw, origin)

        t = time.perf_counter()
        naive = pd.Series(seasonal_naive(series, index), index=index)
        day.seconds["seasonal naive"] = time.perf_counter() - t

        t = time.perf_counter()
        yhat, result, calendar = shaper_forecast(series, origin)
        day.seconds["shaper"] = time.perf_counter() - t
        day.shaper_model = result.model
        day.shaper_notes = list(result.notes)
        day.in_calendar = origin.date() in calendar.holidays
        day.served = "; ".join(f"{r['model']}" for r in result.served if r.get("date") == str(origin.date()))

        t = time.perf_counter()
        prophet = prophet_forecast(series, origin, calendar)
        day.seconds["prophet"] = time.perf_counter() - t

        t = time.perf_counter()
        prophet_all = prophet_forecast(series, origin, calendar, weeks=None)
        day.seconds["prophet, all history"] = time.perf_counter() - t

        for m, pred in (("seasonal naive", naive), ("shaper", yhat), ("prophet", prophet),
                        ("prophet, all history", prophet_all)):
            p = pred.reindex(truth.index).to_numpy(dtype=float)
            day.mae[m] = float(np.mean(np.abs(p - truth.to_numpy(dtype=float))))
        progress(f"[{i + 1}/{len(days)}] {origin:%Y-%m-%d %a} {day.kind:9s} {day.name[:34]:34s} "
                 f"naive MAE {day.mae['seasonal naive']:6.1f}  shaper {ratio(day, 'shaper'):.2f}  "
                 f"prophet {ratio(day, 'prophet'):.2f} / all {ratio(day, 'prophet, all history'):.2f}  "
                 f"({day.seconds['prophet']:.1f}s, {day.seconds['prophet, all history']:.1f}s)")
    return days


def ratio(day: Day, method: str) -> float:
    base = day.mae["seasonal naive"]
    return day.mae[method] / base if base > 0 else float("nan")


def report(days: list[Day], wall: float) -> str:
    lines = [
        (f"Day-ahead forecasts of hourly bike rentals in Washington D.C. (`data/real/bike`), one origin at each "
        f"judged day's local midnight (the file's naive timestamps are D.C. wall-clock time; shaper reads them "
        f"as UTC, so its days are the local days). Days: the {sum(d.kind == 'holiday' for d in days)} D.C. public "
        f"holidays in the series with two weeks of history (`holidays`, US subdiv DC, observed days included), "
        f"the day after each, and the other days of the same Monday-Sunday weeks (weekends included). MAE over "
        f"the day's hours present in the source, against seasonal naive's (the same hour a week earlier); lower is better, "
        f"geometric mean over the days."),
        "",
        (f"shaper is `lib.forecast.forecast` called as `shaper forecast --calendar US-DC --horizon 24h` does; "
        f"Prophet has default settings plus the same holidays as `holidays=`, fitted twice: on the last "
        f"{PROPHET_WEEKS} weeks of history only (column \"{PROPHET_WEEKS} weeks\") and on all the history before "
         f"the origin (column \"all\"). "
        f"The last column says what served each holiday in shaper's forecast: like days, or today's ordinary "
        f"model when it did better on past holidays (`lib/day_choice.py`)."),
        "",
        f"| day kind | days | shaper | Prophet ({PROPHET_WEEKS} weeks) | Prophet (all) | seasonal naive MAE (mean, rentals/h) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    groups = [
        ("holiday", [d for d in days if d.kind == "holiday"]),
        ("holiday, on a weekday", [d for d in days if d.kind == "holiday" and d.date.weekday() < 5]),
        ("holiday, on a weekend", [d for d in days if d.kind == "holiday" and d.date.weekday() >= 5]),
        ("day after", [d for d in days if d.kind == "day after"]),
        ("ordinary", [d for d in days if d.kind == "ordinary"]),
        ("ordinary, Monday-Friday", [d for d in days if d.kind == "ordinary" and d.date.weekday() < 5]),
        ("ordinary, weekend", [d for d in days if d.kind == "ordinary" and d.date.weekday() >= 5]),
    ]
    for label, sel in groups:
        if not sel:
            continue
        lines.append(f"| {label} | {len(sel)} | {gmean(ratio(d, 'shaper') for d in sel):.3f} | "
                     f"{gmean(ratio(d, 'prophet') for d in sel):.3f} | "
                     f"{gmean(ratio(d, 'prophet, all history') for d in sel):.3f} | "
                     f"{np.mean([d.mae['seasonal naive'] for d in sel]):.1f} |")
    lines += ["", ("Per holiday (ratio to seasonal naive's MAE on the holiday, and on the day after it); "
                  "shaper's model on the holiday:"), "",
              (f"| date | holiday | shaper | Prophet ({PROPHET_WEEKS} weeks) | Prophet (all) | day after: shaper | "
              f"day after: Prophet ({PROPHET_WEEKS} weeks) | day after: Prophet (all) | shaper's model |"),
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    by_date = {d.date: d for d in days}
    for d in days:
        if d.kind != "holiday":
            continue
        after = by_date.get(d.date + DAY)
        a = (f"{ratio(after, 'shaper'):.2f} | {ratio(after, 'prophet'):.2f} | "
             f"{ratio(after, 'prophet, all history'):.2f}" if after and after.kind == "day after" else "- | - | -")
        model = d.served or d.shaper_model
        name = d.name + ("" if d.in_calendar else " (not in shaper's calendar)")
        lines.append(f"| {d.date:%Y-%m-%d %a} | {name} | {ratio(d, 'shaper'):.2f} | {ratio(d, 'prophet'):.2f} | "
                     f"{ratio(d, 'prophet, all history'):.2f} | {a} | {model} |")
    lines += ["", "| method | seconds per forecast (median) |", "|---|---:|"]
    for m in METHODS:
        lines.append(f"| {m} | {np.median([d.seconds[m] for d in days]):.3f} |")
    lines += ["", f"{len(days)} forecasts per method, whole run {wall:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    started = time.perf_counter()
    days = run(progress=lambda s: print(s, file=sys.stderr, flush=True))
    publish("calendar", report(days, time.perf_counter() - started))


if __name__ == "__main__":
    main()
