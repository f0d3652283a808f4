"""API-key authentication for the /v1 routes and /metrics."""

from __future__ import annotations

import hmac

from fastapi import Request

from genserve.server.errors import APIError


async def require_key(request: Request) -> None:  # async: FastAPI runs sync dependencies in a thread pool
    settings = request.app.state.server.settings
    key = settings.api_key
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>' (the openai "
                            "client does this with api_key=...)", code="missing_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise APIError(401, "incorrect API key provided; check the key the server was started with",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
