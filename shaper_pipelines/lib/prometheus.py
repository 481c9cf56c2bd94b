"""Reading history from Prometheus's HTTP API, a day at a time, with retries.

A day is asked for as ``[day, next day - step]`` so that adjacent chunks never return the same
boundary sample twice. Transient failures (connection refused, timeouts, 5xx, 429) are retried
with exponential backoff; when the retries run out the error names the server, the day and the
cause, and nothing has been written, because callers store only complete fetches.

TLS is verified by default (the system's trust store, or a CA bundle); a bearer token or basic
auth authenticate. :class:`HttpAccess` holds those options, from the one settings layer
(``SHAPER_PROMETHEUS_*``; the Pushgateway push uses the same class with ``SHAPER_PUSHGATEWAY_*``).
"""

from __future__ import annotations

import base64
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd


class PrometheusUnavailable(RuntimeError):
    pass


class PrometheusQueryError(ValueError):
    """Prometheus answered, but refused the query (a 4xx other than 429): retrying won't help."""


@dataclass(frozen=True)
class HttpAccess:
    """How to reach an HTTP(S) endpoint: TLS verification and authentication, the options of
    Prometheus's own ``http_config``. ``ca_bundle`` empty means the system's trust store;
    ``insecure_skip_verify`` turns verification off (never the default). Either ``bearer_token``
    or ``username``/``password``, not both. Secrets are left out of the repr."""

    ca_bundle: str = ""
    insecure_skip_verify: bool = False
    bearer_token: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)

    def __post_init__(self):
        if self.bearer_token and (self.username or self.password):
            raise ValueError("a bearer token or basic auth, not both")
        if self.ca_bundle and not Path(self.ca_bundle).is_file():
            raise ValueError(f"CA bundle {self.ca_bundle} is not a readable file")

    @classmethod
    def from_settings(cls, service: str = "prometheus") -> "HttpAccess":
        """The ``SHAPER_PROMETHEUS_*`` (or, with ``service="pushgateway"``, ``SHAPER_PUSHGATEWAY_*``)
        options: CA_BUNDLE, INSECURE_SKIP_VERIFY, BEARER_TOKEN, USERNAME and PASSWORD."""
        from shaper_pipelines.settings import get_settings

        if service not in ("prometheus", "pushgateway"):
            raise ValueError(f"unknown service {service!r}")
        s = get_settings()
        ca = getattr(s, f"{service}_ca_bundle")
        return cls(ca_bundle=str(ca) if ca else "",
                   insecure_skip_verify=getattr(s, f"{service}_insecure_skip_verify"),
                   bearer_token=getattr(s, f"{service}_bearer_token").get_secret_value(),
                   username=getattr(s, f"{service}_username"),
                   password=getattr(s, f"{service}_password").get_secret_value())

    def headers(self) -> dict[str, str]:
        """The Authorization header, if any."""
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the certificate and the host name (against the CA
        bundle when given), unless ``insecure_skip_verify``."""
        context = ssl.create_default_context(cafile=self.ca_bundle or None)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def verify(self) -> bool | str:
        """``requests``' ``verify``: the CA bundle's path, True (the trust store), or False."""
        if self.insecure_skip_verify:
            return False
        return self.ca_bundle or True


@dataclass(frozen=True)
class PrometheusSettings:
    """Where Prometheus is and how to reach it; ``access`` defaults to the ``SHAPER_PROMETHEUS_*``
    settings, read when this is made."""

    url: str
    timeout_seconds: float = 30.0
    retries: int = 3
    backoff_seconds: float = 1.0
    access: HttpAccess = field(default_factory=HttpAccess.from_settings)


def _client(settings: PrometheusSettings, retry):
    """A PrometheusConnect whose session verifies TLS as ``settings.access`` says and sends its
    Authorization header."""
    import requests
    from prometheus_api_client import PrometheusConnect

    session = requests.Session()
    session.verify = settings.access.verify()
    session.headers.update(settings.access.headers())
    return PrometheusConnect(url=settings.url, session=session, timeout=settings.timeout_seconds, retry=retry)


def day_chunks(start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Inclusive ``(first, last)`` sample times per UTC day of ``[start, end)``, never overlapping."""
    chunks = []
    day = start
    while day < end:
        stop = min(day.floor("D") + pd.Timedelta(days=1), end)
        chunks.append((day, stop - step))
        day = stop
    return [c for c in chunks if c[1] >= c[0]]


def fetch_range(settings: PrometheusSettings, query: str, start: pd.Timestamp, end: pd.Timestamp,
                step: pd.Timedelta, *, on_chunk: Callable[[int, int], None] | None = None,
                sleep: Callable[[float], None] = time.sleep) -> pd.Series:
    """Samples of ``query`` in ``[start, end)`` at ``step``; several result series are summed.
    Raises PrometheusUnavailable or PrometheusQueryError; returns an empty Series for no data."""
    import requests
    from prometheus_api_client.exceptions import PrometheusApiClientException

    from urllib3.util.retry import Retry

    # The client's own session would retry with its own backoff; retries are decided here.
    client = _client(settings, Retry(total=0, raise_on_status=False))
    parts: list[pd.Series] = []
    chunks = day_chunks(start, end, step)
    for i, (first, last) in enumerate(chunks):
        for attempt in range(settings.retries + 1):
            try:
                result = client.custom_query_range(query, start_time=first.to_pydatetime(),
                                                   end_time=last.to_pydatetime(), step=f"{int(step.total_seconds())}s")
                break
            except PrometheusApiClientException as exc:
                status = str(exc)
                if not any(code in status for code in ("HTTP Status Code 5", "HTTP Status Code 429")):
                    raise PrometheusQueryError(f"Prometheus at {settings.url} refused the query {query!r}: {status[:300]}") from None
                cause = status[:200]
            except requests.exceptions.SSLError as exc:
                # The certificate will not verify better on a second try.
                raise PrometheusUnavailable(
                    f"Prometheus at {settings.url}: TLS verification failed ({str(exc)[:300]}); nothing was "
                    "stored. Set SHAPER_PROMETHEUS_CA_BUNDLE to the CA that signs its certificate") from None
            except requests.RequestException as exc:
                cause = f"{type(exc).__name__}: {str(exc)[:200]}"
            if attempt == settings.retries:
                raise PrometheusUnavailable(
                    f"Prometheus at {settings.url} did not answer for {first:%Y-%m-%d} after "
                    f"{settings.retries + 1} tries ({cause}); nothing was stored") from None
            sleep(settings.backoff_seconds * 2**attempt)
        parts.append(_to_series(result))
        if on_chunk:
            on_chunk(i + 1, len(chunks))
    series = pd.concat([p for p in parts if len(p)]) if any(len(p) for p in parts) else pd.Series(dtype=float)
    series.name = "value"
    return series


def _to_series(result: list[dict]) -> pd.Series:
    frames = []
    for item in result:
        values = item.get("values") or []
        if values:
            ts = np.array([float(v[0]) for v in values])
            vals = np.array([float(v[1]) for v in values])  # "NaN" parses to nan and is checked later
            frames.append(pd.Series(vals, index=pd.to_datetime(ts, unit="s", utc=True)))
    if not frames:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, axis=1).sum(axis=1, min_count=1)


def instant_value(settings: PrometheusSettings, query: str) -> float | None:
    """The value of a scalar-ish instant query (the first series), or None when it has none."""
    from urllib3.util.retry import Retry

    client = _client(settings, Retry(total=settings.retries, backoff_factor=settings.backoff_seconds))
    result = client.custom_query(query)
    if not result:
        return None
    return float(result[0]["value"][1])
