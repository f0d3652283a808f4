"""Pure ASGI middleware: the body-size limit and per-route response counting."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from genserve.server.errors import APIError, BodyTooLarge, error_response, too_large

if TYPE_CHECKING:
    from genserve.server.service import JobService


class BodyLimit:
    """Pure ASGI middleware: refuse bodies over the limit (by Content-Length, or while they stream)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

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
        limit = self.limit

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
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

