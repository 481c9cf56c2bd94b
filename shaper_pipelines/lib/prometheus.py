"""Reading history from Prometheus's HTTP API, a day at a time, with retries.

A day is asked for as ``[day, next day - step]`` so that adjacent chunks never return the same
boundary sample twice. Transient failures (connection refused, timeouts, 5xx, 429) are retried
with exponential backoff; when the retries run out the error names the server, the day and the
cause, and nothing has been written, because callers store only complete fetches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd


class PrometheusUnavailable(RuntimeError):
    pass


class PrometheusQueryError(ValueError):
    """Prometheus answered, but refused the query (a 4xx other than 429): retrying won't help."""


@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    timeout_seconds: float = 30.0
    retries: int = 3
    backoff_seconds: float = 1.0


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
    from prometheus_api_client import PrometheusConnect
    from prometheus_api_client.exceptions import PrometheusApiClientException

    from urllib3.util.retry import Retry

    # The client's own session would retry with its own backoff; retries are decided here.
    client = PrometheusConnect(url=settings.url, disable_ssl=True, timeout=settings.timeout_seconds,
                               retry=Retry(total=0, raise_on_status=False))
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
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    client = PrometheusConnect(url=settings.url, disable_ssl=True, timeout=settings.timeout_seconds,
                               retry=Retry(total=settings.retries, backoff_factor=settings.backoff_seconds))
    result = client.custom_query(query)
    if not result:
        return None
    return float(result[0]["value"][1])
