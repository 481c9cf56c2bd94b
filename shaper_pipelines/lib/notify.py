"""Notices to a webhook (Slack, Mattermost, Teams via a connector, or anything that takes JSON):
one POST with a ``text`` line a human reads and the fields a machine uses."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class NotifyError(RuntimeError):
    """The webhook could not be reached or refused the notice."""


def post(url: str, text: str, fields: dict, *, timeout: float = 10.0, retries: int = 3,
         backoff: float = 0.5, sleep=time.sleep) -> int:
    """POST ``{"text": ..., **fields}``; retries connection errors and 5xx with exponential
    backoff, not 4xx (the receiver said no). Returns the HTTP status."""
    body = json.dumps({"text": text, **fields}, default=str).encode()
    last = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "shaper"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise NotifyError(f"webhook {url} refused the notice: HTTP {exc.code}") from None
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if attempt < retries:
            sleep(backoff * 2 ** attempt)
    raise NotifyError(f"webhook {url} did not take the notice after {retries + 1} attempts: {last}")
