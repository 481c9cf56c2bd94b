"""shaper's predictions as Prometheus metrics: the text exposition format (version 0.0.4), built
from the plain values the forecast assets hold, and a push of it to a Pushgateway.

Every family is a gauge without sample timestamps (the Pushgateway refuses timestamps it cannot
keep consistent, and a scrape stamps them anyway):

- ``shaper_predicted_utilization_ratio{target,resource,quantile,window}``: predicted utilisation of a
  scaling target at its configured minimum capacity (what ``utilisation_forecast`` holds), p50
  (``quantile="0.5"``) and p90 (``"0.9"``); ``window="now"`` is the step in force at export time,
  ``"next_1h"``/``"next_24h"`` the maximum from that step to one hour / one day ahead;
- ``shaper_actual_utilization_ratio{target,resource}``: the latest observed demand of a scaling
  target's history series on the same basis (divided by its minimum capacity times the capacity
  per instance), when the caller passes ``observed``: what the dashboards set the prediction against;
- ``shaper_planned_capacity{target,group,kind}``: the plan's floor in force now, and
  ``shaper_planned_capacity_max{target,group,kind,window="next_24h"}`` its maximum over the next day
  (``group`` is the Auto Scaling group or ECS service, ``target`` shaper's name for it);
- ``shaper_forecast_mase{target,metric,model}``: the forecast's backtest MAE divided by seasonal
  naive's (below 1 beats seasonal naive); ``shaper_forecast_beats_naive{target,metric}`` 0 or 1;
- ``shaper_export_timestamp_seconds``: when this was built, for a staleness alert.

No Dagster and no prometheus_client here: plain pandas in, text out.
"""

from __future__ import annotations

import base64
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUANTILES = {"0.5": "utilization_p50", "0.9": "utilization_p90"}
WINDOWS = {"next_1h": pd.Timedelta(hours=1), "next_24h": pd.Timedelta(hours=24)}

HELP = {
    "shaper_predicted_utilization_ratio":
        "Predicted utilisation of a scaling target at its configured minimum capacity (1 = full). "
        "window=now is the step in force at export, next_1h/next_24h the maximum up to that far ahead.",
    "shaper_actual_utilization_ratio":
        "Latest observed demand of a scaling target divided by what its configured minimum capacity serves "
        "(1 = full): the same basis as shaper_predicted_utilization_ratio.",
    "shaper_planned_capacity": "Floor of warm instances the scaling plan holds now.",
    "shaper_planned_capacity_max": "Largest floor of warm instances the scaling plan holds within the window.",
    "shaper_forecast_mase": "Backtest MAE of the forecast divided by seasonal naive's (below 1 beats seasonal naive).",
    "shaper_forecast_beats_naive": "1 when the forecast beat seasonal naive in its backtest and is used, else 0.",
    "shaper_export_timestamp_seconds": "Unix time at which shaper built this export.",
}

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Sample(NamedTuple):
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


class PushError(RuntimeError):
    """The Pushgateway did not take the push: unreachable, or it answered with an error."""


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed are the three characters the text format escapes."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(x: float) -> str:
    """repr() round-trips a float64; the format spells the special values NaN, +Inf and -Inf."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(x)


def sample(name: str, value: float, **labels: Any) -> Sample:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    for key in labels:
        if not _LABEL_NAME.match(key) or key.startswith("__"):
            raise ValueError(f"invalid label name {key!r}")
    return Sample(name, tuple((k, "" if v is None else str(v)) for k, v in labels.items()), float(value))


def render(samples: Iterable[Sample]) -> str:
    """The text format: for each family (in order of first appearance) its HELP and TYPE lines,
    then its samples. Two samples with one name and the same labels are an error, as they would
    be for the Pushgateway and for Prometheus."""
    families: dict[str, list[Sample]] = {}
    seen: set[tuple] = set()
    for s in samples:
        key = (s.name, tuple(sorted(s.labels)))
        if key in seen:
            raise ValueError(f"duplicate series {s.name}{{{_labels_text(s.labels)}}}")
        seen.add(key)
        families.setdefault(s.name, []).append(s)
    lines = []
    for name, members in families.items():
        if name in HELP:
            lines.append(f"# HELP {name} {_escape_help(HELP[name])}")
        lines.append(f"# TYPE {name} gauge")
        for s in members:
            labels = f"{{{_labels_text(s.labels)}}}" if s.labels else ""
            lines.append(f"{name}{labels} {format_value(s.value)}")
    return "\n".join(lines) + "\n"


def _labels_text(labels: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)


def _utc(value) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _times(column: pd.Series) -> pd.Series:
    t = pd.to_datetime(column)
    return t.dt.tz_localize("UTC") if t.dt.tz is None else t.dt.tz_convert("UTC")


def _in_force(times: pd.Series, now: pd.Timestamp) -> int | None:
    """Position of the step in force at ``now`` in sorted ``times``: the last step at or before
    it, or the first step when ``now`` is less than one step before it (a forecast starting at the
    next step). None when ``now`` is a whole step past the last one: the forecast has run out."""
    step = pd.Timedelta(times.diff().median()) if len(times) > 1 else None
    at_or_before = int(times.searchsorted(now, side="right"))
    if at_or_before == 0:
        return 0 if step is not None and times.iloc[0] - now < step else None
    i = at_or_before - 1
    if i == len(times) - 1 and step is not None and now - times.iloc[i] >= step:
        return None
    return i


def _window_positions(times: pd.Series, now: pd.Timestamp, current: int | None, span: pd.Timedelta) -> np.ndarray:
    """The step in force now and every later step up to ``now + span``."""
    ahead = (times > now) & (times <= now + span)
    positions = set(np.flatnonzero(ahead.to_numpy()).tolist())
    if current is not None:
        positions.add(current)
    return np.array(sorted(positions), dtype=int)


def _get(obj, key: str, default=None):
    return obj.get(key, default) if isinstance(obj, Mapping) else getattr(obj, key, default)


def prediction_samples(*, utilisation: pd.DataFrame, plan: pd.DataFrame, forecasts: Mapping[str, Mapping] | Iterable[Mapping],
                       targets: Iterable[Any] = (), now, observed: pd.DataFrame | None = None) -> list[Sample]:
    """The samples of every family from the assets' values.

    ``utilisation``: target, timestamp, utilization_p50, utilization_p90 (``utilisation_forecast``);
    ``plan``: target, timestamp, desired_capacity (``scaling_plan``); ``forecasts``: the
    ``demand_forecast`` values (a dict per series, or a mapping of partition key to them) with
    target, metric, model, mase, beats_naive; ``targets``: the scaling targets (objects or dicts
    with name, kind, resource) that give the resource and kind labels - a target missing there
    gets empty ones; ``now``: the export time (naive means UTC); ``observed`` (optional): the
    latest observed demand per scaling target, columns target, demand, min_capacity and
    capacity_per_instance, one row per target, for ``shaper_actual_utilization_ratio`` (a row
    whose demand or capacity is missing, not finite or not positive is left out)."""
    now = _utc(now)
    info = {_get(t, "name"): t for t in targets}
    out: list[Sample] = []

    if len(utilisation):
        frame = utilisation.assign(timestamp=_times(utilisation["timestamp"]))
        for name, group in frame.groupby("target", sort=True):
            group = group.sort_values("timestamp", kind="stable").reset_index(drop=True)
            resource = _get(info.get(name, {}), "resource", "")
            current = _in_force(group["timestamp"], now)
            for quantile, column in QUANTILES.items():
                values = group[column].to_numpy(dtype=float)
                labels = {"target": name, "resource": resource, "quantile": quantile}
                if current is not None:
                    out.append(sample("shaper_predicted_utilization_ratio", values[current], **labels, window="now"))
                for window, span in WINDOWS.items():
                    positions = _window_positions(group["timestamp"], now, current, span)
                    if len(positions):
                        out.append(sample("shaper_predicted_utilization_ratio", np.nanmax(values[positions]),
                                          **labels, window=window))

    if observed is not None and len(observed):
        out.extend(_actual_samples(observed, info))

    if len(plan):
        frame = plan.assign(timestamp=_times(plan["timestamp"]))
        for name, group in frame.groupby("target", sort=True):
            group = group.sort_values("timestamp", kind="stable").reset_index(drop=True)
            t = info.get(name, {})
            labels = {"target": name, "group": _get(t, "resource", "") or name, "kind": _get(t, "kind", "")}
            desired = group["desired_capacity"].to_numpy(dtype=float)
            current = _in_force(group["timestamp"], now)
            if current is not None:
                out.append(sample("shaper_planned_capacity", desired[current], **labels))
            positions = _window_positions(group["timestamp"], now, current, WINDOWS["next_24h"])
            if len(positions):
                out.append(sample("shaper_planned_capacity_max", desired[positions].max(), **labels, window="next_24h"))

    values = list(forecasts.items()) if isinstance(forecasts, Mapping) else [(None, f) for f in forecasts]
    for key, fc in sorted(values, key=lambda kv: str(kv[0])):
        if fc is None:
            continue
        target, metric = fc.get("target"), fc.get("metric")
        if (target is None or metric is None) and key and ":" in key:
            target, metric = key.split(":", 1)
        if fc.get("mase") is not None:
            out.append(sample("shaper_forecast_mase", fc["mase"], target=target, metric=metric,
                              model=fc.get("model", "")))
        if fc.get("beats_naive") is not None:
            out.append(sample("shaper_forecast_beats_naive", 1.0 if fc["beats_naive"] else 0.0,
                              target=target, metric=metric))

    out.append(sample("shaper_export_timestamp_seconds", now.timestamp()))
    return out


def _actual_samples(observed: pd.DataFrame, info: Mapping[str, Any]) -> list[Sample]:
    """``shaper_actual_utilization_ratio`` per row of ``observed``: demand / (min_capacity x
    capacity_per_instance), the basis ``utilisation_forecast`` divides the forecast by."""
    missing = {"target", "demand", "min_capacity", "capacity_per_instance"} - set(observed.columns)
    if missing:
        raise ValueError(f"observed needs the columns target, demand, min_capacity and capacity_per_instance "
                         f"(missing: {', '.join(sorted(missing))})")
    twice = observed["target"][observed["target"].duplicated()]
    if len(twice):
        raise ValueError(f"observed has more than one row for {', '.join(sorted(map(str, set(twice))))}")
    out = []
    for row in observed.sort_values("target", kind="stable").itertuples(index=False):
        demand = pd.to_numeric(row.demand, errors="coerce")
        at = pd.to_numeric(row.min_capacity, errors="coerce") * pd.to_numeric(row.capacity_per_instance,
                                                                            errors="coerce")
        if not (np.isfinite(demand) and np.isfinite(at) and at > 0):
            continue
        out.append(sample("shaper_actual_utilization_ratio", float(demand) / float(at), target=row.target,
                          resource=_get(info.get(row.target, {}), "resource", "")))
    return out


def build_exposition(*, utilisation: pd.DataFrame, plan: pd.DataFrame, forecasts, targets: Iterable[Any] = (),
                     now, observed: pd.DataFrame | None = None) -> str:
    """The text exposition of :func:`prediction_samples`."""
    return render(prediction_samples(utilisation=utilisation, plan=plan, forecasts=forecasts, targets=targets,
                                     now=now, observed=observed))


def _path_segment(name: str, value: str) -> str:
    """``/<name>/<value>``, or ``/<name>@base64/<value>`` (the Pushgateway's encoding for values
    that a path cannot hold: a slash, or nothing at all)."""
    value = str(value)
    if "/" in value or value == "":
        encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
        return f"/{name}@base64/{encoded}"
    return f"/{name}/{urllib.parse.quote(value, safe='')}"


def push_url(gateway_url: str, job: str, grouping: Mapping[str, str] | None = None) -> str:
    """The URL of a group: ``<gateway>/metrics/job/<job>[/<label>/<value>...]``."""
    if not job:
        raise ValueError("the Pushgateway needs a non-empty job name")
    path = _path_segment("job", job)
    for name, value in (grouping or {}).items():
        if not _LABEL_NAME.match(name) or name.startswith("__") or name == "job":
            raise ValueError(f"invalid grouping label {name!r}")
        path += _path_segment(name, value)
    return gateway_url.rstrip("/") + "/metrics" + path


def push(gateway_url: str, job: str, body: str, timeout: float = 10.0, *, grouping: Mapping[str, str] | None = None,
         retries: int = 3, backoff_seconds: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> str:
    """PUT ``body`` to the group of ``job`` (and ``grouping``), replacing every metric the group
    held. Connection errors, timeouts and 5xx are retried ``retries`` times with exponential
    backoff; a 4xx is not (the gateway refused this body, and will again). Returns the URL pushed
    to; raises PushError saying which gateway, what it answered or why it could not be reached."""
    url = push_url(gateway_url, job, grouping)
    data = body.encode()
    cause = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return url
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()[:500]
            if exc.code < 500:
                raise PushError(f"Pushgateway at {gateway_url} refused the push to {url}: HTTP {exc.code} "
                                f"{exc.reason}: {detail}") from None
            cause = f"HTTP {exc.code} {exc.reason}: {detail}"
        except (urllib.error.URLError, OSError) as exc:  # refused, unresolvable, reset, timed out
            reason = getattr(exc, "reason", exc)
            cause = f"{type(reason).__name__}: {reason}"
        if attempt < retries:
            sleep(backoff_seconds * 2**attempt)
    raise PushError(f"Pushgateway at {gateway_url} could not be reached or failed after {retries + 1} tries "
                    f"({cause}); nothing was pushed")


def write_textfile(path, body: str) -> None:
    """Write ``body`` to ``path`` atomically, the node_exporter textfile collector's way: into a
    temporary file beside it (whose name does not end in .prom, so the collector never reads it
    half-written), flushed, then renamed over ``path``. Readable by everyone, as the collector
    usually runs as another user."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # whatever the umask left
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
