"""What stands between the agent and a hostile network: time limits on connections and requests,
and a request body read within a time and a nesting budget (its size is capped before it is read
by ``shaper_pipelines.body_limit``, as the control API's is).

uvicorn's h11 protocol answers a malformed request (``Content-Length: abc``, a header block over
``h11_max_incomplete_event_size``) with a 400 by itself, and closes an idle keep-alive connection
after ``timeout_keep_alive``; but a connection that never sends a complete request head (an idle
socket, a slowloris trickling one byte at a time) is held for ever. ``DeadlineH11Protocol`` gives
each request head a deadline from the moment the connection is free to send one.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_DEPTH = 64  # a profile nests a few levels; this bounds what the profile parser recurses into


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class DeadlineH11Protocol(H11Protocol):
    """h11 as uvicorn serves it, plus ``head_timeout`` seconds for a connection to send a whole
    request head, counted from when it connects or its previous response was sent; past it the
    connection is closed. Trickling bytes does not renew the deadline."""

    head_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def _serving(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.head_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self._serving() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._serving():
            self._disarm()  # the request is the app's now: its body has its own time limit

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._serving():  # a pipelined request already started
            self._disarm()
        elif not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def _depth_within(data, limit: int) -> bool:
    """Whether ``data`` nests at most ``limit`` levels (iteratively: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


async def read_json(receive_body, timeout: float) -> dict:
    """The request's JSON object, or ``BadRequest``: 408 past ``timeout``, 400 for anything that
    is not a JSON object within ``MAX_DEPTH`` levels. ``receive_body`` is an async iterator of body
    chunks (Starlette's ``request.stream()``), already capped in size by the body-limit middleware."""

    async def collect() -> bytes:
        body = bytearray()
        async for chunk in receive_body:
            body += chunk
        return bytes(body)

    try:
        raw = await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise BadRequest(408, f"body not received within {timeout:g}s") from None
    try:
        data = json.loads(raw or b"{}")
    except RecursionError:
        raise BadRequest(400, f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise BadRequest(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "body must be a JSON object")
    if not _depth_within(data, MAX_DEPTH):
        raise BadRequest(400, f"body nests deeper than {MAX_DEPTH} levels")
    return data
