"""Load profiles derived from what happened and from what the calendar says will happen.

- history: the daily and weekly shape of a series, fitted as valley + swing x hour shape x
  weekday factor (a rank-one fit of the 7 x 24 table of means), so the profile rehearses the
  cycle the service actually lives with;
- calendar events: each event kind's uplift measured against the same hours of ordinary days,
  applied to the next occurrences;
- user behaviour: arrivals per hour of the week times the work per session;
- A/B and release scenarios: the baseline times a configured uplift, ramped with the rollout.

Everything here is plain pandas/numpy; profiles come out as validated ``Profile`` objects whose
lineage records their inputs, so re-deriving the same input gives the same content hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shaper_pipelines.lib.profile import Profile, parse_profile

RESOURCE_OF_METRIC = {"cpu": "cpu", "memory": "memory", "network_io": "network_io", "disk_io": "disk_io",
                      "requests": "network_io"}
UNIT_OF_METRIC = {"cpu": "cores", "memory": "bytes", "network_io": "bytes_per_second",
                  "disk_io": "bytes_per_second", "requests": "requests_per_second"}


@dataclass(frozen=True)
class WeeklyShape:
    """valley + (peak - valley) * hourly[hour] * weekday[weekday]: hourly and weekday max out at 1."""

    valley: float
    peak: float
    hourly: np.ndarray  # 24 levels in [0, 1]
    weekday: np.ndarray  # 7 factors in [0, 1], Monday first

    def at(self, index: pd.DatetimeIndex, tz: str = "UTC") -> np.ndarray:
        local = index.tz_convert(tz)
        hour = local.hour + local.minute / 60.0
        xs = np.arange(-0.5, 25.0, 1.0)
        ys = np.concatenate([[self.hourly[-1]], self.hourly, [self.hourly[0]]])
        return self.valley + (self.peak - self.valley) * np.interp(hour, xs, ys) * self.weekday[local.day_of_week]

    def pattern(self) -> dict:
        return {"kind": "peak_valley", "peak": _r(self.peak), "valley": _r(self.valley),
                "hourly_shape": [_r(v) for v in self.hourly], "weekday_factors": [_r(v) for v in self.weekday]}


def _r(value: float) -> float:
    # Six significant digits: enough for a load level, and stable across platforms for hashing.
    return float(f"{float(value):.6g}")


def fit_weekly_shape(series: pd.Series, tz: str = "UTC") -> WeeklyShape:
    """Fit the daily and weekly cycle of ``series`` (a UTC-indexed regular series)."""
    clean = series[np.isfinite(series.to_numpy(dtype=np.float64))]
    if len(clean) < 24:
        raise ValueError(f"history has {len(clean)} usable points; a daily shape needs at least a day")
    clean = _current_regime(clean, tz)
    local = clean.index.tz_convert(tz)
    # Medians: a burst or an outage in one week should not bend the shape of every week.
    table = clean.groupby([local.day_of_week, local.hour]).median().unstack()
    table = table.reindex(index=range(7), columns=range(24))
    # Hours never seen (a short history) borrow the mean of the same hour on other days.
    table = table.fillna(table.mean(axis=0)).fillna(float(clean.mean()))
    valley = float(np.nanmin(table.to_numpy()))
    swing = table.to_numpy() - valley
    hourly = swing.mean(axis=0)
    if hourly.max() <= 0:
        return WeeklyShape(valley, valley, np.zeros(24), np.ones(7))
    hourly = hourly / hourly.max()
    factors = swing @ hourly / (hourly @ hourly)
    seen = set(local.day_of_week)
    factors = np.array([factors[d] if d in seen else np.nan for d in range(7)])
    factors = np.where(np.isnan(factors), np.nanmean(factors), factors)
    top = float(factors.max())
    if top <= 0:
        return WeeklyShape(valley, valley, hourly, np.ones(7))
    return WeeklyShape(valley, valley + top, hourly, np.clip(factors / top, 0.0, 1.0))


def _current_regime(series: pd.Series, tz: str) -> pd.Series:
    """Drop whole days from before a level shift (a service not yet deployed, a migration): days
    whose mean is under a quarter or over four times the median day of the last week."""
    days = series.index.tz_convert(tz).normalize()
    daily = series.groupby(days).mean()
    recent = float(daily.iloc[-7:].median())
    if not np.isfinite(recent) or recent <= 0:
        return series
    keep = daily[(daily >= recent / 4) & (daily <= recent * 4)].index
    return series[np.isin(days, keep)]


def history_profile(target: str, metric: str, series: pd.Series, *, lineage: dict, tz: str = "UTC",
                    priority: int = 50) -> Profile:
    shape = fit_weekly_shape(series, tz)
    return parse_profile({
        "profile_id": _pid(f"hist-{target}-{metric}"),
        "resource_type": RESOURCE_OF_METRIC.get(metric, "cpu"),
        "unit": UNIT_OF_METRIC.get(metric, metric),
        "description": f"Daily and weekly cycle of {metric} on {target}, fitted to history.",
        "source": "historical", "duration": "7d", "priority": priority, "timezone": tz,
        "load_pattern": shape.pattern(),
        "trigger_conditions": [{"kind": "cron", "cron": "0 0 * * 1", "timezone": tz}],
        "lineage": {**lineage, "target": target, "metric": metric, "fit": "rank-one weekday x hour means"},
    })


@dataclass(frozen=True)
class Uplift:
    kind: str
    ratio: float | None  # event hours over the same hours of ordinary days
    occurrences: int  # past occurrences inside the history


def measure_uplift(series: pd.Series, events: pd.DataFrame, kind: str, tz: str = "UTC") -> Uplift:
    """How much higher ``series`` ran during past events of ``kind`` than at the same hours of the
    week on days without any event. None when history holds no occurrence."""
    past = events[(events["kind"] == kind) & (events["end"] <= series.index[-1]) & (events["start"] >= series.index[0])]
    if past.empty:
        return Uplift(kind, None, 0)
    in_event = np.zeros(len(series), dtype=bool)
    for start, end in zip(past["start"], past["end"]):
        in_event |= (series.index >= start) & (series.index < end)
    any_event = np.zeros(len(series), dtype=bool)
    for start, end in zip(events["start"], events["end"]):
        any_event |= (series.index >= start) & (series.index < end)
    local = series.index.tz_convert(tz)
    how = local.day_of_week * 24 + local.hour
    ordinary = pd.Series(series.to_numpy()[~any_event]).groupby(np.asarray(how)[~any_event]).mean()
    expected = ordinary.reindex(np.asarray(how)[in_event]).to_numpy()
    observed = series.to_numpy()[in_event]
    ok = np.isfinite(expected) & np.isfinite(observed)
    if not ok.any() or np.nansum(expected[ok]) <= 0:
        return Uplift(kind, None, len(past))
    return Uplift(kind, float(observed[ok].sum() / expected[ok].sum()), len(past))


def calendar_profiles(target: str, metric: str, series: pd.Series, events: pd.DataFrame, *, now: pd.Timestamp,
                      horizon: pd.Timedelta, lineage: dict, tz: str = "UTC") -> list[Profile]:
    """One profile per upcoming event within ``horizon``: the fitted baseline times the uplift
    measured for its kind (or the calendar's expected uplift when history holds none)."""
    if events.empty:
        return []
    shape = fit_weekly_shape(series, tz)
    upcoming = events[(events["start"] >= now) & (events["start"] < now + horizon)]
    measured: dict[str, Uplift] = {}
    out = []
    for row in upcoming.itertuples():
        if row.kind not in measured:
            measured[row.kind] = measure_uplift(series, events, row.kind, tz)
        uplift = measured[row.kind]
        ratio, how = uplift.ratio, "measured"
        if ratio is None:
            ratio, how = (row.expected_uplift if row.expected_uplift and np.isfinite(row.expected_uplift) else 1.0), \
                "configured" if row.expected_uplift else "none known"
        duration = (row.end - row.start).total_seconds()
        out.append(parse_profile({
            "profile_id": _pid(f"cal-{target}-{metric}-{row.name}-{row.start:%Y%m%d}"),
            "resource_type": RESOURCE_OF_METRIC.get(metric, "cpu"),
            "unit": UNIT_OF_METRIC.get(metric, metric),
            "description": f"{row.name} ({row.kind}) on {target}: baseline {metric} x {ratio:.3g} ({how} uplift).",
            "source": "calendar", "duration": max(60.0, duration), "priority": 75, "timezone": tz,
            "load_pattern": {"kind": "product", "patterns": [shape.pattern(), {"kind": "constant", "level": _r(ratio)}]},
            "trigger_conditions": [{"kind": "event", "event": _event_name(row.name)}],
            "lineage": {**lineage, "target": target, "metric": metric, "event": row.name, "event_kind": row.kind,
                        "event_start": row.start.isoformat(), "uplift": _r(ratio), "uplift_source": how,
                        "past_occurrences": uplift.occurrences},
        }))
    return out


@dataclass(frozen=True)
class Behaviour:
    """Users: sessions arriving per hour of the week, and what one session costs."""

    requests_per_session: float
    cpu_seconds_per_request: float
    bytes_per_request: float


def behaviour_profiles(target: str, requests: pd.Series, model: Behaviour, *, lineage: dict,
                       tz: str = "UTC") -> list[Profile]:
    """Network (requests/s) and CPU (cores) profiles from session arrivals per hour of the week,
    estimated from the request rate: arrivals = requests / requests per session."""
    local = requests.index.tz_convert(tz)
    hour_of_week = local.day_of_week * 24 + local.hour
    rate = requests.groupby(np.asarray(hour_of_week)).mean().reindex(range(168))
    rate = rate.interpolate(limit_direction="both").fillna(float(requests.mean()))
    sessions_per_hour = rate * 3600.0 / model.requests_per_session
    req_per_s = sessions_per_hour * model.requests_per_session / 3600.0
    # Replay starts at the profile's start, so anchor the week at Monday 00:00 with a cron trigger.
    common = {"source": "user_behaviour", "duration": "7d", "priority": 45, "timezone": tz,
              "trigger_conditions": [{"kind": "cron", "cron": "0 0 * * 1", "timezone": tz}]}
    info = {**lineage, "target": target, "requests_per_session": model.requests_per_session,
            "cpu_seconds_per_request": model.cpu_seconds_per_request,
            "peak_sessions_per_hour": _r(sessions_per_hour.max())}
    network = parse_profile({**common,
        "profile_id": _pid(f"users-{target}-network"), "resource_type": "network_io", "unit": "requests_per_second",
        "description": f"User sessions on {target}: arrivals per hour of the week x {model.requests_per_session:g} requests.",
        "load_pattern": {"kind": "replay", "values": [_r(v) for v in req_per_s], "step": "1h", "interpolate": True},
        "lineage": info})
    cpu = parse_profile({**common,
        "profile_id": _pid(f"users-{target}-cpu"), "resource_type": "cpu", "unit": "cores",
        "description": f"CPU of user sessions on {target}: request rate x {model.cpu_seconds_per_request:g} CPU-s.",
        "load_pattern": {"kind": "replay", "values": [_r(v * model.cpu_seconds_per_request) for v in req_per_s],
                         "step": "1h", "interpolate": True},
        "lineage": info})
    return [network, cpu]


@dataclass(frozen=True)
class Scenario:
    """An A/B test or a release: the share of traffic on the new path over time, and its cost."""

    name: str
    kind: str  # ab_test | release
    target: str
    metric: str
    uplift: float  # extra load per unit of traffic on the new path (0.3 = +30 %)
    rollout: list[tuple[float, float]]  # (share of traffic, seconds to reach it)
    event: str | None = None


def scenario_profile(scenario: Scenario, series: pd.Series, *, lineage: dict, tz: str = "UTC") -> Profile:
    shape = fit_weekly_shape(series, tz)
    stages = [{"duration": seconds, "target": _r(1.0 + scenario.uplift * share)} for share, seconds in scenario.rollout]
    total = sum(seconds for _, seconds in scenario.rollout) + 86400.0  # a day at full rollout
    triggers = [{"kind": "event", "event": _event_name(scenario.event or scenario.name)}]
    return parse_profile({
        "profile_id": _pid(f"{scenario.kind.replace('_', '')}-{scenario.name}"),
        "resource_type": RESOURCE_OF_METRIC.get(scenario.metric, "cpu"),
        "unit": UNIT_OF_METRIC.get(scenario.metric, scenario.metric),
        "description": f"{scenario.name}: {scenario.metric} of {scenario.target} x (1 + {scenario.uplift:g} x rollout share).",
        "source": scenario.kind, "duration": total, "priority": 70, "timezone": tz,
        "load_pattern": {"kind": "product", "patterns": [shape.pattern(),
                                                         {"kind": "stages", "start": 1.0, "stages": stages}]},
        "trigger_conditions": triggers,
        "lineage": {**lineage, "target": scenario.target, "metric": scenario.metric, "uplift": scenario.uplift,
                    "rollout": [[s, d] for s, d in scenario.rollout]},
    })


def _pid(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.lower())
    return out.strip("-._")[:100] or "profile"


def _event_name(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in text)
    return out.strip("_.:-")[:128] or "event"
