"""What a network run measures besides its own load: the target service, read from its own
``/metrics`` every second (``monitor``), and an objective that, once broken, ends the run by
itself (``stop_when``): a capacity rehearsal that stops where the service stops coping.

``monitor`` (network_io runs only)::

    {"metrics_url": "http://127.0.0.1:8000/metrics",           # required; http(s), host on the allow-list
     "busy_seconds": "demo_busy_worker_seconds_total",         # a counter of busy worker (or CPU) seconds
     "capacity": "demo_workers",                               # a gauge of workers (or cores), or a number > 0
     "latency_histogram": "demo_request_duration_seconds",     # a histogram in seconds, base name
     "errors": {"name": "demo_requests_total", "label": "status", "values": ["503"]}}

Every second, over that second's increase (as ``rate()`` and ``histogram_quantile`` would over a
1 s window): ``service_utilisation`` = busy seconds / (capacity x seconds); ``service_p50_ms``,
``service_p95_ms``, ``service_p99_ms`` from the histogram's buckets; ``service_errors``, the
error counter's increase per second (every label set of it without ``label``; 0 while the
counter is there but no sample has those values yet, as client libraries create labelled series
on first use). A metric that is not in the scrape leaves its field None and is named in the
view's ``monitor_missing``. Scrapes run in a thread of their own on the run's clock, each
bounded to about half a second, so a slow service never delays the load; a failed scrape leaves
that second's service fields None and is counted (``monitor_failures``). Redirects are not
followed (a redirect could leave the allow-list) and no proxy is used.

``stop_when`` (network_io runs only)::

    {"latency_quantile": 0.95,   # 0.5, 0.95 or 0.99; 0.95 when latency_ms is given without it
     "latency_ms": 250.0,        # > 0
     "error_ratio": 0.05,        # 0..1, failed / completed requests
     "for_s": 2,                 # whole seconds >= 1, default 2
     "source": "service"}        # or "client"; "service" by default when the monitor has a latency_histogram

At least one of ``latency_ms`` and ``error_ratio``. Each second, the latency quantile (from
``source``: the service's histogram, or Locust's own response times) above ``latency_ms``, or
the error ratio above ``error_ratio``, for ``for_s`` consecutive seconds ends the run. The error
ratio is always the client's (Locust's failures over its completions, 5xx and refused or timed
out connections alike): it sees the errors that never reach the service's metrics. A second with
nothing to judge (no completions, no latency observed, a failed scrape) neither breaks nor
restores the objective.
"""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from shaper_pipelines.lib.histograms import Exposition, increase, parse_exposition, quantile_from_buckets

CLIENT_FIELDS = ("errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
SERVICE_FIELDS = ("service_utilisation", "service_p50_ms", "service_p95_ms", "service_p99_ms", "service_errors")
QUANTILES = (0.5, 0.95, 0.99)
SCRAPE_TIMEOUT = 0.5  # seconds, for each of connecting, the response head, and the body
MAX_BODY = 8 * 1024 * 1024
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Invalid(ValueError):
    """A monitor or stop_when the agent will not take (a 422)."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric(where: str, value) -> str:
    if not isinstance(value, str) or not _METRIC.match(value):
        raise Invalid(f"{where} must be a metric name (letters, digits, _ and :), not {value!r}")
    return value


def _only(where: str, value: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise Invalid(f"{where} has unknown keys {', '.join(map(repr, unknown))}; "
                      f"known: {', '.join(allowed)}")


def parse_monitor(value) -> dict | None:
    """The monitor as the agent keeps it (None when absent); Invalid when malformed. The host of
    ``metrics_url`` is the caller's to check against the allow-list."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid("monitor must be an object with at least metrics_url")
    _only("monitor", value, ("metrics_url", "busy_seconds", "capacity", "latency_histogram", "errors"))
    url = value.get("metrics_url")
    if not isinstance(url, str) or not url:
        raise Invalid("monitor.metrics_url is required: the http(s) URL of the service's /metrics")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid(f"monitor.metrics_url must be an http(s) URL, not {url!r}")
    out: dict = {"metrics_url": url}
    for key in ("busy_seconds", "latency_histogram"):
        if value.get(key) is not None:
            out[key] = _metric(f"monitor.{key}", value[key])
    capacity = value.get("capacity")
    if capacity is not None:
        if _number(capacity):
            if capacity <= 0:
                raise Invalid(f"monitor.capacity must be above 0, not {capacity!r}")
            out["capacity"] = float(capacity)
        else:
            out["capacity"] = _metric("monitor.capacity (a gauge's name or a number)", capacity)
    if "busy_seconds" in out and "capacity" not in out:
        raise Invalid("monitor.busy_seconds needs monitor.capacity (a gauge's name or a number) "
                      "to make a utilisation of it")
    errors = value.get("errors")
    if errors is not None:
        if not isinstance(errors, dict):
            raise Invalid("monitor.errors must be an object: {name, label, values}")
        _only("monitor.errors", errors, ("name", "label", "values"))
        spec: dict = {"name": _metric("monitor.errors.name", errors.get("name"))}
        label, values = errors.get("label"), errors.get("values")
        if label is not None:
            if not isinstance(label, str) or not _LABEL.match(label):
                raise Invalid(f"monitor.errors.label must be a label name, not {label!r}")
            if (not isinstance(values, list) or not values
                    or not all(isinstance(v, str) for v in values)):
                raise Invalid("monitor.errors.values must be a non-empty list of strings (the label's "
                              "values that are errors, such as [\"503\"])")
            spec.update(label=label, values=list(values))
        elif values is not None:
            raise Invalid("monitor.errors.values needs monitor.errors.label")
        out["errors"] = spec
    return out


def parse_stop_when(value, monitor: dict | None) -> dict | None:
    """The stop_when as the agent keeps it, defaults filled in (None when absent); Invalid when
    malformed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid("stop_when must be an object with latency_ms or error_ratio")
    _only("stop_when", value, ("latency_quantile", "latency_ms", "error_ratio", "for_s", "source"))
    out: dict = {}
    latency_ms, quantile = value.get("latency_ms"), value.get("latency_quantile")
    if latency_ms is not None:
        if not _number(latency_ms) or latency_ms <= 0:
            raise Invalid(f"stop_when.latency_ms must be a number above 0, not {latency_ms!r}")
        if quantile is None:
            quantile = 0.95
        if not _number(quantile) or float(quantile) not in QUANTILES:
            raise Invalid(f"stop_when.latency_quantile must be one of 0.5, 0.95, 0.99, not {quantile!r}")
        out.update(latency_quantile=float(quantile), latency_ms=float(latency_ms))
    elif quantile is not None:
        raise Invalid("stop_when.latency_quantile needs stop_when.latency_ms")
    ratio = value.get("error_ratio")
    if ratio is not None:
        if not _number(ratio) or not 0 <= ratio <= 1:
            raise Invalid(f"stop_when.error_ratio must be a number from 0 to 1, not {ratio!r}")
        out["error_ratio"] = float(ratio)
    if not out:
        raise Invalid("stop_when needs latency_ms (with latency_quantile) or error_ratio, or both")
    for_s = value.get("for_s", 2)
    if not isinstance(for_s, int) or isinstance(for_s, bool) or for_s < 1:
        raise Invalid(f"stop_when.for_s must be a whole number of seconds, 1 or more, not {for_s!r}")
    out["for_s"] = for_s
    has_histogram = bool(monitor and monitor.get("latency_histogram"))
    source = value.get("source", "service" if has_histogram else "client")
    if source not in ("client", "service"):
        raise Invalid(f"stop_when.source must be \"client\" or \"service\", not {source!r}")
    if source == "service" and "latency_ms" in out and not has_histogram:
        raise Invalid("stop_when.source \"service\" needs a monitor with a latency_histogram")
    out["source"] = source
    return out


# -- reading the service --------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the allow-list was checked for this URL, not for where it sends us


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def scrape(url: str, timeout: float = SCRAPE_TIMEOUT) -> Exposition:
    """The service's metrics, or an exception (OSError, ValueError) within about 3 x ``timeout``."""
    deadline = time.monotonic() + timeout
    with _OPENER.open(url, timeout=timeout) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        chunks, size = [], 0
        while chunk := response.read1(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                raise ValueError(f"metrics larger than {MAX_BODY // 1024 // 1024} MiB")
            if time.monotonic() > deadline + timeout:
                raise TimeoutError("metrics body too slow")
    return parse_exposition(b"".join(chunks).decode("utf-8", "replace"))


def service_window(spec: dict, before: Exposition, after: Exposition, elapsed: float,
                   missing: set[str]) -> dict:
    """The service fields over one window between two scrapes; names not found go in ``missing``."""
    out = dict.fromkeys(SERVICE_FIELDS)
    if elapsed <= 0:
        return out

    def grown(name: str, **select) -> float | None:
        now, then = after.value(name, **select), before.value(name, **select)
        if now is None:
            if after.has(name):  # there, but nothing with these labels yet: nothing counted
                return 0.0
            missing.add(name)
            return None
        then = then or 0.0
        return now if now < then else now - then  # a reset counts from zero

    if spec.get("busy_seconds"):
        busy = grown(spec["busy_seconds"])
        capacity = spec.get("capacity")
        if isinstance(capacity, str):
            name, capacity = capacity, after.value(capacity)
            if capacity is None:
                missing.add(name)
        if busy is not None and capacity is not None and capacity > 0:
            out["service_utilisation"] = round(busy / (capacity * elapsed), 4)
    if spec.get("latency_histogram"):
        name = spec["latency_histogram"]
        buckets = increase(before.buckets(name), after.buckets(name))
        if not buckets:
            missing.add(name)
        else:
            for q in QUANTILES:
                value = quantile_from_buckets(q, list(buckets), list(buckets.values()))
                if not math.isnan(value):
                    out[f"service_p{round(q * 100)}_ms"] = round(value * 1000.0, 3)
    if spec.get("errors"):
        e = spec["errors"]
        count = grown(e["name"], label=e.get("label"), values=e.get("values"))
        if count is not None:
            out["service_errors"] = round(count / elapsed, 3)
    # A NaN or infinite sample in the scrape makes no number of ours (nor valid JSON).
    return {k: v if v is None or math.isfinite(v) else None for k, v in out.items()}


class ServiceMonitor:
    """Scrapes ``spec["metrics_url"]`` at ``begin`` and at ``begin + k + 1`` for every second k of
    the run, and hands each second's fields (None for a failed or missed scrape) to
    ``deliver(k, fields)``, in order."""

    def __init__(self, spec: dict, begin: float, deliver):
        self.spec, self.begin, self.deliver = spec, begin, deliver
        self.failures = 0
        self.missing: set[str] = set()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="monitor")
        self._thread.start()

    def _read(self):
        try:
            return scrape(self.spec["metrics_url"])
        except Exception:  # a service that does not answer, or answers garbage, is a failed second
            self.failures += 1
            return None

    def _run(self) -> None:
        previous = (time.monotonic(), self._read())
        k = 0
        while not self._closed.wait(max(0.0, self.begin + k + 1 - time.monotonic())):
            # Seconds whose scrape time passed while the last one hung are failed, not caught up.
            while time.monotonic() > self.begin + k + 2:
                self.failures += 1
                self.deliver(k, None)
                k += 1
            now, metrics = time.monotonic(), self._read()
            fields = None
            if metrics is not None:
                if previous[1] is not None:
                    missing: set[str] = set()
                    try:
                        fields = service_window(self.spec, previous[1], metrics, now - previous[0], missing)
                        self.missing = missing
                    except Exception:  # metrics of a shape we cannot read (a bucket without le)
                        self.failures += 1
                previous = (now, metrics)
            self.deliver(k, fields)
            k += 1

    def close(self) -> None:
        self._closed.set()


# -- the objective ----------------------------------------------------------------------------------

class StopCheck:
    """Consecutive seconds with the objective broken, one count for latency and one for errors."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.streak = {"latency": 0, "errors": 0}

    def _judge(self, kind: str, value: float | None, threshold: float) -> bool:
        if value is None:
            return False  # nothing to judge: the streak stands as it was
        self.streak[kind] = self.streak[kind] + 1 if value > threshold else 0
        return self.streak[kind] >= self.spec["for_s"]

    def observe(self, sample: dict) -> dict | None:
        """``ended_by`` when this second ends the run, else None."""
        spec = self.spec
        if "latency_ms" in spec:
            name = f"p{round(spec['latency_quantile'] * 100)}"
            value = sample.get(f"service_{name}_ms" if spec["source"] == "service" else f"latency_{name}_ms")
            if self._judge("latency", value, spec["latency_ms"]):
                return self._ended("latency", value, spec["latency_ms"], sample)
        if "error_ratio" in spec:
            errors, completed = sample.get("errors"), sample.get("achieved") or 0.0
            ratio = None if errors is None or completed <= 0 else min(1.0, errors / completed)
            if self._judge("errors", ratio, spec["error_ratio"]):
                return self._ended("errors", ratio, spec["error_ratio"], sample)
        return None

    def _ended(self, kind: str, value: float, threshold: float, sample: dict) -> dict:
        return {"kind": kind, "value": round(value, 4), "threshold": threshold, "at_offered": sample["target"],
                "t": sample["t"], "for_s": self.spec["for_s"],
                "source": self.spec["source"] if kind == "latency" else "client"}

    def reason(self, ended: dict) -> str:
        where = f"for {ended['for_s']} s at {ended['at_offered']:.0f} req/s offered"
        if ended["kind"] == "latency":
            name = f"p{round(self.spec['latency_quantile'] * 100)}"
            return (f"stopped itself: {name} latency {ended['value']:.0f} ms above the objective of "
                    f"{ended['threshold']:g} ms {where} (measured by the {ended['source']})")
        return (f"stopped itself: error ratio {ended['value']:.1%} above the objective of "
                f"{ended['threshold']:.1%} {where}")


class Watch:
    """Joins each second's client sample (the run's thread) with its service fields (the monitor's
    thread), appends it to ``samples`` and judges complete seconds in order; calls
    ``stop_itself(ended_by, reason)`` once, when the objective has been broken long enough."""

    def __init__(self, samples: list, monitor: dict | None, stop_when: dict | None, stop_itself):
        self.samples, self.stop_itself = samples, stop_itself
        self.check = StopCheck(stop_when) if stop_when else None
        self.monitor_spec = monitor
        self.monitor: ServiceMonitor | None = None
        self._lock = threading.Lock()
        self._service: dict[int, dict | None] = {}
        self._judged = 0
        self._closed = False

    def start(self, begin: float) -> None:
        if self.monitor_spec:
            self.monitor = ServiceMonitor(self.monitor_spec, begin, self._service_second)

    def add(self, sample: dict) -> None:
        with self._lock:
            fields = self._service.get(sample["t"])
            if fields:
                sample.update(fields)
            self.samples.append(sample)
            self._judge()

    def _service_second(self, k: int, fields: dict | None) -> None:
        with self._lock:
            self._service[k] = fields
            if fields and k < len(self.samples) and self.samples[k]["t"] == k:
                self.samples[k].update(fields)
            self._judge()

    def _judge(self) -> None:
        while self._judged < len(self.samples):
            k = self._judged
            if self.monitor is not None and k not in self._service:
                return  # its service half is still to come
            self._service.pop(k - 1, None)
            self._judged += 1
            if self.check is not None and not self._closed:
                ended = self.check.observe(self.samples[k])
                if ended is not None:
                    self._closed = True
                    self.stop_itself(ended, self.check.reason(ended))

    @property
    def failures(self) -> int:
        return self.monitor.failures if self.monitor else 0

    @property
    def missing(self) -> list[str]:
        return sorted(self.monitor.missing) if self.monitor else []

    def close(self) -> None:
        """No more self-stops, no more scrapes (one under way may still fill in its second)."""
        with self._lock:
            self._closed = True
        if self.monitor is not None:
            self.monitor.close()
