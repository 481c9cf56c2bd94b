"""How a scaling target's service is rehearsed and judged (``rehearsal:`` in scaling.yaml).

A capacity rehearsal offers one instance of the service a rising load and watches the service
itself: its utilisation and its latency. The load per instance at which the latency objective is
first broken is the capacity the plan uses (unless ``capacity_per_instance`` pins one). Two ways
to watch, the same numbers from either:

- ``scrape`` (the default, nothing to set up): the load agent reads the service's own
  ``/metrics`` every second, as Prometheus would, and computes the utilisation and the latency
  quantiles over each second's increase;
- ``prometheus``: after the rehearsal, PromQL templates are evaluated over its seconds at a 1 s
  step against ``SHAPER_PROMETHEUS_URL``. ``$window`` becomes the rate window and ``$quantile``
  the objective's quantile.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shaper_pipelines.lib.durations import Duration

_METRIC = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


class LatencyObjective(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    quantile: Literal[0.5, 0.95, 0.99] = 0.95
    latency: Duration  # 250ms, 0.25 (seconds)
    # Share of requests that may fail; more and the objective is broken too.
    error_ratio: float = Field(default=0.01, ge=0, le=1)

    @field_validator("latency")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the latency objective must be above 0")
        return value

    @property
    def name(self) -> str:
        return f"p{round(self.quantile * 100)}"

    def describe(self) -> str:
        return f"{self.name} under {self.latency * 1000:g} ms, errors under {self.error_ratio:.1%}"


class ErrorCounter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=_METRIC)
    label: str = "status"
    values: list[str] = Field(default_factory=lambda: ["503"], min_length=1)


class ScrapeWatch(BaseModel):
    """Which of the service's own metrics say what (names as in its ``/metrics``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = "/metrics"
    busy_seconds: str | None = Field(default=None, pattern=_METRIC)  # a counter of busy worker (or CPU) seconds
    capacity: str | float | None = None  # a gauge naming how many workers (or cores) there are, or the number
    latency_histogram: str | None = Field(default=None, pattern=_METRIC)  # base name, without _bucket
    errors: ErrorCounter | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with /")
        return value

    def monitor(self, service_url: str) -> dict:
        """The agent's ``monitor`` body for a rehearsal of ``service_url``: its metrics on the same
        origin."""
        parsed = urlparse(service_url)
        body: dict = {"metrics_url": f"{parsed.scheme}://{parsed.netloc}{self.path}"}
        for key in ("busy_seconds", "capacity", "latency_histogram"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.errors is not None:
            body["errors"] = self.errors.model_dump()
        return body


class PrometheusWatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    utilisation: str = Field(min_length=1)  # 0..1
    latency: str | None = None  # seconds; $quantile is the objective's
    errors: str | None = None  # errors per second
    window: Duration = 3.0  # $window: a 1 s scrape needs at least two points in it

    def queries(self, quantile: float) -> dict[str, str]:
        """service column -> PromQL, templates filled in."""
        window = f"{max(1, round(self.window))}s"
        fill = lambda q: q.replace("$window", window).replace("$quantile", repr(quantile))  # noqa: E731
        out = {"service_utilisation": fill(self.utilisation)}
        if self.latency:
            out[f"service_p{round(quantile * 100)}_ms"] = fill(self.latency)
        if self.errors:
            out["service_errors"] = fill(self.errors)
        return out


class Rehearsal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    objective: LatencyObjective
    # The capacity-rehearsal profile (a network_io step or ramp in the profile store) and the URL
    # of one instance to offer it to; the demo fills the URL in with its own service's.
    profile: str = "capacity-step-rehearsal"
    url: str | None = None
    watch: Literal["scrape", "prometheus"] = "scrape"
    scrape: ScrapeWatch = Field(default_factory=ScrapeWatch)
    prometheus: PrometheusWatch | None = None
    max_age: Duration = 7 * 86400.0  # older rehearsals are stale: flagged, used only when none is fresh
    service_version: str | None = Field(default=None, max_length=100)  # rehearsals of another version are stale
    stop_for: int = Field(default=2, ge=1, le=60)  # seconds the objective must stay broken before the run stops
    # How the rehearsal's requests arrive: poisson, as independent users do (evenly spaced requests
    # barely queue before saturation, and would put the objective's capacity too high).
    arrivals: Literal["poisson", "even"] = "poisson"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme not in ("http", "https"):
            raise ValueError(f"url {value!r} must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _watch(self):
        if self.watch == "prometheus" and self.prometheus is None:
            raise ValueError("watch: prometheus needs a prometheus: section with the PromQL templates")
        return self

    def stop_when(self) -> dict:
        """The agent's ``stop_when`` body: end the run once the objective is broken."""
        source = "service" if self.watch == "scrape" and self.scrape.latency_histogram else "client"
        return {"latency_quantile": self.objective.quantile, "latency_ms": self.objective.latency * 1000,
                "error_ratio": self.objective.error_ratio, "for_s": self.stop_for, "source": source}
