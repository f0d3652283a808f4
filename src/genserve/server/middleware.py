"""Pure ASGI middleware: the body-size limit and per-route response counting."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from genserve.server.errors import APIError, BodyTimeout, BodyTooLarge, error_response, too_large

if TYPE_CHECKING:
    from genserve.server.service import JobService


class BodyLimit:
    """Pure ASGI middleware: refuse bodies over the limit (by Content-Length, or while they stream), and bodies
    not complete within `timeout` seconds of the request's arrival (408): a client that declares a body and
    never sends it (or drips it) would otherwise hold a connection and a task forever."""

    def __init__(self, app, limit: int, timeout: float | None = None) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    n = int(value)
                except ValueError:
                    n = -1
                if n < 0 or n > self.limit:
                    err = too_large(self.limit) if n > self.limit else APIError(
                        400, "invalid Content-Length header", code="invalid_header")
                    return await error_response(err)(scope, receive, send)
        seen = 0
        limit, timeout = self.limit, self.timeout
        body_done = False
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout

        async def limited_receive():
            nonlocal seen, body_done
            if body_done or deadline is None:  # later receives wait for a disconnect: no deadline on those
                message = await receive()
            else:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, remaining))
                except asyncio.TimeoutError:
                    body_done = True
                    raise BodyTimeout(timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                if not message.get("more_body", False):
                    body_done = True
            else:
                body_done = True
            return message

        return await self.app(scope, limited_receive, send)


class Instrument:
    """Pure ASGI middleware (outermost): stamps when the request reached the app (for the admission-overhead
    figure) and counts responses by route template and status code."""

    def __init__(self, app, server: "JobService") -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["genserve.t0"] = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.server.metrics.api_requests.labels(endpoint=f"{scope['method']} {endpoint}",
                                                    code=str(status[0])).inc()

