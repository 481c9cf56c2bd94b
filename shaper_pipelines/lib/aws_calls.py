"""Talking to AWS Auto Scaling: clients that retry the way AWS's SDKs do, errors that say which call
on which resource failed and why, every page of a listing, and write calls paced.

Retrying is botocore's, in its ``standard`` mode: throttling (``Throttling``,
``ThrottlingException``, ...), transient errors (``RequestTimeout``, HTTP 500/502/503/504) and
connection errors are retried up to ``total_max_attempts`` attempts in all, and attempt i+1 waits
``rand(0, 1) * min(base * 2**(i-1), 20 s)``: exponential backoff with full jitter, where base is
1 s after throttling and 50 ms after other errors (botocore/retries/standard.py,
``ExponentialBackoff.delay_amount``), with a retry quota so that a failing service is not
hammered. Every call made here may be retried: puts are upserts by name and a delete that finds
nothing counts as done. ``adaptive`` mode (a client-side rate limiter on top) is left alone: the
AWS SDK reference guide calls it appropriate only for specialised use, and the one service here
without batch calls is paced explicitly instead (``Pacing``), predictably and testably.

boto3 and botocore are imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CALLS_PER_SECOND = 5.0
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


class ScalingError(Exception):
    """A plan that cannot be applied as it stands, or an AWS call that failed; the message names
    the target, the resource and what to do."""


def make_client(cfg, endpoint_url: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
    """The boto3 client that scales ``cfg`` (a ScalingTarget): autoscaling for an ASG,
    application-autoscaling for ECS, with botocore's standard retries over ``max_attempts``
    attempts in all (the first one included)."""
    import boto3
    from botocore.config import Config

    service = "autoscaling" if cfg.kind == "asg" else "application-autoscaling"
    retries = {"mode": RETRY_MODE, "total_max_attempts": max(1, int(max_attempts))}
    return boto3.client(service, region_name=cfg.region, endpoint_url=endpoint_url,
                        config=Config(retries=retries))


def call(client, operation: str, params: dict, *, resource: str, gone_ok: bool = False) -> Any:
    """``client.<operation>(**params)`` with AWS errors turned into ScalingErrors that say which
    call on which resource failed. With ``gone_ok``, "no such action" is success (None): a delete
    that finds nothing has nothing left to do."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**params)
    except ClientError as exc:
        if gone_ok and is_gone(*error_of(exc)):
            return None
        raise translated(exc, operation, resource) from exc
    except BotoCoreError as exc:
        raise translated(exc, operation, resource) from exc


def read_all(client, operation: str, params: dict, key: str, *, resource: str) -> list[dict]:
    """Every item under ``key`` of every page of ``operation``, through botocore's paginator."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return [item for page in client.get_paginator(operation).paginate(**params) for item in page.get(key, [])]
    except (ClientError, BotoCoreError) as exc:
        raise translated(exc, operation, resource) from exc


def translated(exc: Exception, operation: str, resource: str) -> ScalingError:
    """A ScalingError for a botocore error: the operation, the resource, AWS's code and message,
    and how many attempts botocore made."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code, message = error_of(exc)
        if code in ACCESS_DENIED:
            return ScalingError(f"access denied ({code}) for {operation} on {resource}: {message}")
        meta = exc.response.get("ResponseMetadata", {})
        attempts = int(meta.get("RetryAttempts", 0)) + 1
        code = code or str(meta.get("HTTPStatusCode", "no code"))
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return ScalingError(f"{operation} on {resource} failed ({code}){tries}: {message}")
    if isinstance(exc, BotoConnectionError):
        return ScalingError(f"{operation} on {resource}: cannot reach AWS: {exc}")
    return ScalingError(f"{operation} on {resource}: {exc}")


def error_of(exc) -> tuple[str, str]:
    """The AWS error code and message of a ClientError. When botocore could not parse the error body
    (an XML error document from a JSON-protocol service, as moto sends for IAM denials), it reports
    the HTTP status as the code and the raw body as the message; the real code is inside."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", exc))
    if code.isdigit() and "<Code>" in message:
        inner_code = re.search(r"<Code>([^<]+)</Code>", message)
        inner_message = re.search(r"<Message>([^<]*)</Message>", message)
        if inner_code:
            return inner_code.group(1), inner_message.group(1) if inner_message else message
    return code, message


def is_gone(code: str, message: str) -> bool:
    """Whether an error says the scheduled action does not exist (Application Auto Scaling's
    ObjectNotFoundException; Auto Scaling's ValidationError "... not found")."""
    return code == "ObjectNotFoundException" or (code == "ValidationError" and "not found" in message.lower())


@dataclass
class Pacing:
    """At most ``calls_per_second`` write calls: ``wait()`` before each one sleeps what is left of
    the minimum interval since the previous one. Application Auto Scaling has no batch calls, so
    a plan is one call per scheduled action; pacing them keeps a run under the account's request
    rate instead of leaning on throttling and retries. ``sleep`` and ``clock`` are for tests."""

    calls_per_second: float = DEFAULT_CALLS_PER_SECOND
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, init=False, repr=False)

    def wait(self) -> None:
        if self.calls_per_second > 0 and self._last is not None:
            left = 1.0 / self.calls_per_second - (self.clock() - self._last)
            if left > 0:
                self.sleep(left)
        self._last = self.clock()


__all__ = ["ACCESS_DENIED", "Pacing", "ScalingError", "call", "error_of", "is_gone", "make_client", "read_all",
           "translated"]
