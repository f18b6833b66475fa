"""Request-level guards, as one pure ASGI middleware: body size, arrivals, and per-request metrics.

- Size: a declared ``Content-Length`` over the limit is answered 413 at once, before any of
  the body is read; a body sent without one (chunked) is counted as it streams and the
  request fails with 413 as soon as the count passes the limit, so no handler ever holds
  more than ``max_upload`` bytes of one request.
- Arrivals: POSTs that will reach a model count as "arriving" until their handler hands its
  images to the batcher (``request.state.arrival.done()``); the batcher waits a moment for
  them only while there are any, so coalescing never delays a lone client.
- Metrics: each response's status and the time it took, by endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decoder.serve.errors import ERROR_TYPES
from decoder.serve.metrics import Metrics


class UploadTooLarge(Exception):
    """The body streamed past ``max_upload`` bytes (raised from ``receive``, answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(too_large_message(limit))
        self.limit = limit


def too_large_message(limit: int) -> str:
    return f"the request body is over the limit of {limit:,} bytes (--max-upload)"


class Arrivals:
    """How many requests are on their way to a model but have not queued their images yet."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


class Arrival:
    """One request's place in :class:`Arrivals`; :meth:`done` is idempotent."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.pending = True
        arrivals.count += 1

    def done(self) -> None:
        if self.pending:
            self.pending = False
            self.arrivals.count -= 1


class RequestGuard:
    """The ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        max_upload: int,
        metrics: Metrics,
        arrivals: Arrivals,
        endpoint_of: Callable[[str, str], str],
    ) -> None:
        self.app = app
        self.max_upload = max_upload
        self.metrics = metrics
        self.arrivals = arrivals
        self.endpoint_of = endpoint_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = self.endpoint_of(scope["method"], scope["path"])
        status = 500

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_upload:
                await _send_json(tracked_send, 413, too_large_message(self.max_upload))
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_upload:
                        raise UploadTooLarge(self.max_upload)
                return message

            arrival = Arrival(self.arrivals) if scope["method"] == "POST" else None
            scope.setdefault("state", {})["arrival"] = arrival
            try:
                await self.app(scope, limited_receive, tracked_send)
            finally:
                if arrival is not None:
                    arrival.done()
        finally:
            self.metrics.request(endpoint, status, time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": ERROR_TYPES[status], "description": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))  # the unread body cannot be skipped on this connection
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
