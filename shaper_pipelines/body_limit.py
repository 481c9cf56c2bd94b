"""A cap on request bodies, enforced before anything parses them: the control API and the load
agent both sit behind it.

A pure ASGI middleware: a declared ``Content-Length`` above the cap is answered 413 at once, without
reading a byte of the body; a body sent without a length (chunked) is counted as it streams and
refused the moment it passes the cap. Either way the answer is a short JSON error, never an echo of
what was sent (a 50 MB body was parsed whole, and its 422 sent 100 MB back).
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException

# The control API's requests are a few profile ids, an intensity, a mode: a few kB; an agent's
# largest is a profile (at most 256 KiB as stored) with the JSON around it. A megabyte is room for
# both, and small enough that a refused body costs nothing.
MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the cap. An HTTPException, so FastAPI's
    body reader passes it on (it turns other errors into a 400) and the answer stays a 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit:,} bytes")


async def _answer(send, status: int, message: str, key: str) -> None:
    body = json.dumps({key: message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """``error_key`` names the field of the JSON error: ``detail`` as FastAPI answers (the API),
    ``error`` as the agent answers everything else."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, error_key: str = "detail"):
        self.app, self.max_bytes, self.error_key = app, max_bytes, error_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            text = declared[0].decode("latin-1").strip()
            if len(declared) > 1 or not text.isdigit() or len(text) > 18:
                await _answer(send, 400, "Content-Length must be one whole number of bytes", self.error_key)
                return
            if int(text) > self.max_bytes:
                await _answer(send, 413, f"request body of {int(text):,} bytes is larger than the limit of "
                                         f"{self.max_bytes:,} bytes", self.error_key)
                return
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _answer(send, 413, exc.detail, self.error_key)
