"""shaper's predictions as Prometheus metrics, through ``prometheus_client``: the samples built from
the plain values the forecast assets hold, a :class:`~prometheus_client.CollectorRegistry` per
export, its text exposition (``generate_latest``), the Pushgateway push (``push_to_gateway``, with
a handler that verifies TLS and authenticates) and the node_exporter textfile
(``write_to_textfile``).

Every family is a gauge without sample timestamps (the Pushgateway refuses timestamps it cannot
keep consistent, and a scrape stamps them anyway), and every label has a small, fixed set of
values besides the configured target, resource and series names:

- ``shaper_predicted_utilization_ratio{target,resource,capacity,percentile,window}``: predicted
  utilisation of a scaling target, p50 (``percentile="p50"``) and p90 (``"p90"``).
  ``capacity="planned"`` is at the floor the scaling plan holds at each step, which the plan keeps
  within the target's minimum and maximum: what will be serving, and what the alerts watch.
  ``capacity="minimum"`` is at the target's configured minimum capacity (what
  ``utilisation_forecast`` holds): how much the plan has to do. ``window="now"`` is the step in
  force at export time, ``"next_1h"``/``"next_24h"`` the maximum from that step to one hour / one
  day ahead;
- ``shaper_predicted_objective_load_ratio{target,resource,capacity="planned",percentile,window,objective}``:
  for a target whose capacity is its latency objective's (a rehearsed service, when the caller
  passes ``response``), the predicted demand per planned instance over the load per instance at
  which the objective (``objective``, e.g. "p95 under 250 ms") was first broken in rehearsal:
  above 1 the service is predicted to break its objective at the planned capacity. Same
  percentiles and windows;
- ``shaper_actual_utilization_ratio{target,resource,capacity="minimum"}``: the latest observed
  demand of a scaling target's history series on the minimum-capacity basis (divided by its
  minimum capacity times the capacity per instance), when the caller passes ``observed``: what the
  dashboards set the prediction against;
- ``shaper_planned_capacity{target,group,kind}``: the plan's floor in force now, and
  ``shaper_planned_capacity_max{target,group,kind,window="next_24h"}`` its maximum over the next day
  (``group`` is the Auto Scaling group or ECS service, ``target`` shaper's name for it);
- ``shaper_forecast_mase{target,metric,model_family}``: the forecast's backtest MAE divided by
  seasonal naive's (below 1 beats seasonal naive); ``model_family`` is one of
  :data:`MODEL_FAMILIES`, never the free-text blend (which changes at every re-fit);
  ``shaper_forecast_beats_naive{target,metric}`` 0 or 1;
- ``shaper_export_timestamp_seconds``: when this was built, for a staleness alert.

No Dagster here: plain pandas in, prometheus_client out.
"""

from __future__ import annotations

import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, write_to_textfile
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from shaper_pipelines.lib.prometheus import HttpAccess

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PERCENTILES = {"p50": "utilization_p50", "p90": "utilization_p90"}
WINDOWS = {"next_1h": pd.Timedelta(hours=1), "next_24h": pd.Timedelta(hours=24)}
# The bases of shaper_predicted_utilization_ratio's ``capacity`` label.
PLANNED, MINIMUM = "planned", "minimum"
# shaper_forecast_mase's model_family: each forecast candidate's family; a weighted blend of
# several is an "ensemble"; anything else "other". A fixed set, whatever the blend's weights.
MODEL_FAMILIES = {
    "seasonal_naive_day": "seasonal_naive", "seasonal_naive_week": "seasonal_naive",
    "daily_profile": "profile", "leveled_profile": "profile", "business_profile": "profile",
    "recent_level": "level", "prophet": "prophet", "like_days": "profile",
    "holt_winters": "statistical", "mstl_level": "statistical",
}

HELP = {
    "shaper_predicted_utilization_ratio":
        "Predicted utilisation of a scaling target (1 = full): capacity=planned at the floor the scaling plan "
        "holds at each step (what will be serving), capacity=minimum at its configured minimum capacity. "
        "window=now is the step in force at export, next_1h/next_24h the maximum up to that far ahead.",
    "shaper_predicted_objective_load_ratio":
        "Predicted demand per planned instance over the load per instance at which the service broke its latency "
        "objective in rehearsal: above 1 the objective is predicted to break at the planned capacity.",
    "shaper_actual_utilization_ratio":
        "Latest observed demand of a scaling target divided by what its configured minimum capacity serves "
        "(1 = full): the basis of shaper_predicted_utilization_ratio{capacity=\"minimum\"}.",
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


def format_value(x: float) -> str:
    """A float as the text format spells it (prometheus_client's own: NaN, +Inf, -Inf)."""
    return floatToGoString(float(x))


def model_family(model: str | None) -> str:
    """The family of a forecast's model label: a candidate's family, ``ensemble`` for a weighted
    blend (``0.62*daily_profile + 0.38*prophet``), ``other`` for anything else."""
    text = (model or "").strip()
    text = re.sub(r"\s*\(fallback\)$", "", text)
    if text in MODEL_FAMILIES:
        return MODEL_FAMILIES[text]
    if "+" in text:
        return "ensemble"
    return "other"


def sample(name: str, value: float, **labels: Any) -> Sample:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    for key in labels:
        if not _LABEL_NAME.match(key) or key.startswith("__"):
            raise ValueError(f"invalid label name {key!r}")
    return Sample(name, tuple((k, "" if v is None else str(v)) for k, v in labels.items()), float(value))


class _Samples:
    """A collector serving fixed samples, one gauge family per name (in order of first appearance)."""

    def __init__(self, samples: Iterable[Sample]):
        self.families: dict[str, list[Sample]] = {}
        seen: set[tuple] = set()
        for s in samples:
            key = (s.name, tuple(sorted(s.labels)))
            if key in seen:
                raise ValueError(f"duplicate series {s.name}{{{_labels_text(s.labels)}}}")
            seen.add(key)
            self.families.setdefault(s.name, []).append(s)

    def collect(self):
        for name, members in self.families.items():
            family = Metric(name, HELP.get(name, name.replace("_", " ")), "gauge")
            for s in members:
                family.add_sample(name, dict(s.labels), s.value)
            yield family


def registry(samples: Iterable[Sample]) -> CollectorRegistry:
    """A registry of its own (never the process-global one) holding ``samples`` as gauges. Two
    samples with one name and the same labels are an error, as they would be for the Pushgateway
    and for Prometheus."""
    out = CollectorRegistry(auto_describe=False)
    out.register(_Samples(samples))
    return out


def render(samples: Iterable[Sample] | CollectorRegistry) -> str:
    """The text exposition format (0.0.4) of ``samples``: ``generate_latest`` of their registry."""
    reg = samples if isinstance(samples, CollectorRegistry) else registry(samples)
    return generate_latest(reg).decode()


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


def _utilisation_samples(frame: pd.DataFrame, basis: str, info: Mapping[str, Any], now: pd.Timestamp, *,
                         name: str = "shaper_predicted_utilization_ratio", columns: Mapping[str, str] = PERCENTILES,
                         extra: Mapping[str, Mapping[str, str]] | None = None) -> list[Sample]:
    """Per target and percentile (``columns``: percentile -> column), the value in force now and the
    peak over each window; ``extra``: more labels per target."""
    out = []
    frame = frame.assign(timestamp=_times(frame["timestamp"]))
    for target, group in frame.groupby("target", sort=True):
        group = group.sort_values("timestamp", kind="stable").reset_index(drop=True)
        resource = _get(info.get(target, {}), "resource", "")
        current = _in_force(group["timestamp"], now)
        for percentile, column in columns.items():
            values = group[column].to_numpy(dtype=float)
            labels = {"target": target, "resource": resource, "capacity": basis, "percentile": percentile,
                      **(extra or {}).get(target, {})}
            if current is not None:
                out.append(sample(name, values[current], **labels, window="now"))
            for window, span in WINDOWS.items():
                positions = _window_positions(group["timestamp"], now, current, span)
                if len(positions):
                    out.append(sample(name, np.nanmax(values[positions]), **labels, window=window))
    return out


def prediction_samples(*, utilisation: pd.DataFrame, plan: pd.DataFrame, forecasts: Mapping[str, Mapping] | Iterable[Mapping],
                       targets: Iterable[Any] = (), now, observed: pd.DataFrame | None = None,
                       response: Mapping[str, Mapping[str, Any]] | None = None) -> list[Sample]:
    """The samples of every family from the assets' values.

    ``utilisation``: target, timestamp, utilization_p50, utilization_p90 and capacity (the
    instances they are computed at: ``utilisation_forecast``'s minimum capacity);
    ``plan``: target, timestamp, desired_capacity (``scaling_plan``), which also gives the
    utilisation at the planned capacity (:func:`shaper_pipelines.lib.capacity.utilisation_at_plan`;
    none without a ``capacity`` column); ``forecasts``: the ``demand_forecast`` values (a dict per
    series, or a mapping of partition key to them) with target, metric, model, mase, beats_naive;
    ``targets``: the scaling targets (objects or dicts with name, kind, resource) that give the
    resource and kind labels - a target missing there gets empty ones; ``now``: the export time
    (naive means UTC); ``observed`` (optional): the latest observed demand per scaling target,
    columns target, demand, min_capacity and capacity_per_instance, one row per target, for
    ``shaper_actual_utilization_ratio`` (a row whose demand or capacity is missing, not finite or
    not positive is left out); ``response`` (optional): per target whose service was rehearsed,
    ``capacity`` (the load per instance at its latency objective), ``objective`` (its text) and
    ``curve`` (load per instance -> utilisation, or None): the planned utilisation is mapped
    through the curve, and ``shaper_predicted_objective_load_ratio`` is exported for it."""
    from shaper_pipelines.lib.capacity import utilisation_at_plan

    now = _utc(now)
    info = {_get(t, "name"): t for t in targets}
    out: list[Sample] = []

    if len(utilisation):
        if len(plan) and "capacity" in utilisation.columns:
            response = response or {}
            planned = utilisation_at_plan(utilisation, plan,
                                          {k: r["curve"] for k, r in response.items() if r.get("curve")})
            out.extend(_utilisation_samples(planned, PLANNED, info, now))
            out.extend(_objective_samples(planned, response, info, now))
        out.extend(_utilisation_samples(utilisation, MINIMUM, info, now))

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
                              model_family=model_family(fc.get("model"))))
        if fc.get("beats_naive") is not None:
            out.append(sample("shaper_forecast_beats_naive", 1.0 if fc["beats_naive"] else 0.0,
                              target=target, metric=metric))

    out.append(sample("shaper_export_timestamp_seconds", now.timestamp()))
    return out


def _objective_samples(planned: pd.DataFrame, response: Mapping[str, Mapping[str, Any]], info: Mapping[str, Any],
                       now: pd.Timestamp) -> list[Sample]:
    """shaper_predicted_objective_load_ratio: demand per planned instance over the objective's load."""
    if not response or not len(planned) or "demand_p90" not in planned.columns:
        return []
    capacity = {k: float(r.get("capacity", np.nan)) for k, r in response.items()}
    rows = planned[planned["target"].map(lambda t: np.isfinite(capacity.get(t, np.nan)) and capacity[t] > 0)]
    if not len(rows):
        return []
    at = rows["capacity"].to_numpy(dtype=float) * rows["target"].map(capacity).to_numpy(dtype=float)
    ratios = rows.assign(objective_p50=rows["demand_p50"].to_numpy(dtype=float) / at,
                         objective_p90=rows["demand_p90"].to_numpy(dtype=float) / at)
    return _utilisation_samples(ratios, PLANNED, info, now, name="shaper_predicted_objective_load_ratio",
                                columns={"p50": "objective_p50", "p90": "objective_p90"},
                                extra={k: {"objective": str(r.get("objective", ""))} for k, r in response.items()})


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
                          resource=_get(info.get(row.target, {}), "resource", ""), capacity=MINIMUM))
    return out


def build_exposition(*, utilisation: pd.DataFrame, plan: pd.DataFrame, forecasts, targets: Iterable[Any] = (),
                     now, observed: pd.DataFrame | None = None, response: Mapping[str, Mapping[str, Any]] | None = None
                     ) -> str:
    """The text exposition of :func:`prediction_samples`."""
    return render(prediction_samples(utilisation=utilisation, plan=plan, forecasts=forecasts, targets=targets,
                                     now=now, observed=observed, response=response))


def _check_group(job: str, grouping: Mapping[str, str] | None) -> None:
    if not job:
        raise ValueError("the Pushgateway needs a non-empty job name")
    for name in grouping or {}:
        if not _LABEL_NAME.match(name) or name.startswith("__") or name == "job":
            raise ValueError(f"invalid grouping label {name!r}")


def push_url(gateway_url: str, job: str, grouping: Mapping[str, str] | None = None) -> str:
    """The URL of a group, ``<gateway>/metrics/job/<job>[/<label>/<value>...]``, exactly as
    ``push_to_gateway`` builds it (values a path cannot hold are base64-encoded)."""
    _check_group(job, grouping)
    seen: list[str] = []

    def record(url, method, timeout, headers, data):
        seen.append(url)
        return lambda: None

    push_to_gateway(gateway_url, job, CollectorRegistry(auto_describe=False), grouping_key=dict(grouping or {}),
                    handler=record)
    return seen[0]


def access_handler(access: HttpAccess) -> Callable:
    """A ``push_to_gateway`` handler that sends ``access``'s Authorization header and, over
    HTTPS, verifies the gateway's certificate as ``access`` says (the system's trust store or
    its CA bundle; never off unless ``insecure_skip_verify``). HTTP errors raise
    ``urllib.error.HTTPError``."""

    def handler(url, method, timeout, headers, data):
        def handle():
            request = urllib.request.Request(url, data=data, method=method)
            for name, value in [*headers, *access.headers().items()]:
                request.add_header(name, value)
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=access.ssl_context()))
            with opener.open(request, timeout=timeout) as response:
                response.read()

        return handle

    return handler


def push(gateway_url: str, job: str, samples: Iterable[Sample] | CollectorRegistry, timeout: float = 10.0, *,
         grouping: Mapping[str, str] | None = None, retries: int = 3, backoff_seconds: float = 0.5,
         sleep: Callable[[float], None] = time.sleep, access: HttpAccess | None = None) -> str:
    """``push_to_gateway`` (a PUT) of ``samples`` (or a registry) to the group of ``job`` (and
    ``grouping``), replacing every metric the group held, through :func:`access_handler`
    (``access`` defaults to the ``SHAPER_PUSHGATEWAY_*`` settings). Connection errors, timeouts
    and 5xx are retried ``retries`` times with exponential backoff; a 4xx is not (the gateway
    refused this body, and will again). Returns the URL pushed to; raises PushError saying which
    gateway, what it answered or why it could not be reached."""
    url = push_url(gateway_url, job, grouping)
    reg = samples if isinstance(samples, CollectorRegistry) else registry(samples)
    handler = access_handler(access if access is not None else HttpAccess.from_settings("pushgateway"))
    cause = ""
    for attempt in range(retries + 1):
        try:
            push_to_gateway(gateway_url, job, reg, timeout=timeout, grouping_key=dict(grouping or {}),
                            handler=handler)
            return url
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()[:500]
            if exc.code < 500:
                raise PushError(f"Pushgateway at {gateway_url} refused the push to {url}: HTTP {exc.code} "
                                f"{exc.reason}: {detail}") from None
            cause = f"HTTP {exc.code} {exc.reason}: {detail}"
        except (urllib.error.URLError, OSError) as exc:  # refused, unresolvable, reset, timed out, TLS
            reason = getattr(exc, "reason", exc)
            cause = f"{type(reason).__name__}: {reason}"
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise PushError(f"Pushgateway at {gateway_url}: TLS failed ({cause}); nothing was pushed "
                                "(set SHAPER_PUSHGATEWAY_CA_BUNDLE to the CA that signs its certificate)") from None
        if attempt < retries:
            sleep(backoff_seconds * 2**attempt)
    raise PushError(f"Pushgateway at {gateway_url} could not be reached or failed after {retries + 1} tries "
                    f"({cause}); nothing was pushed")


def write_textfile(path, samples: Iterable[Sample] | CollectorRegistry) -> None:
    """``write_to_textfile``: the exposition of ``samples`` (or a registry) written to a temporary
    file beside ``path`` (whose name does not end in .prom, so node_exporter's textfile collector
    never reads it half-written), then renamed over ``path``. Readable by everyone, as the
    collector usually runs as another user."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    reg = samples if isinstance(samples, CollectorRegistry) else registry(samples)
    write_to_textfile(str(path), reg)
    os.chmod(path, 0o644)  # whatever the umask left
