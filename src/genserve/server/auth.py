"""API-key authentication for the /v1 routes and /metrics: the key names the caller's tenant."""

from __future__ import annotations

import hmac

from fastapi import Request

from genserve.server.errors import APIError
from genserve.server.settings import DEFAULT_TENANT


def tenant_for(keys: dict[str, str], token: str) -> str | None:
    """The tenant of `token`, comparing it with every key in constant time (no early exit: the time taken
    does not say which key, or how much of one, matched)."""
    raw = token.encode()
    found = None
    for key, tenant in keys.items():
        if hmac.compare_digest(raw, key.encode()):
            found = tenant
    return found


def authenticate(request: Request) -> str:
    """The request's tenant; raises 401 when keys are configured and the Bearer key is absent or wrong."""
    keys = request.app.state.server.settings.api_keys
    if not keys:
        return DEFAULT_TENANT  # no key configured (loopback only): one tenant
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>' (the openai "
                            "client does this with api_key=...)", code="missing_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    tenant = tenant_for(keys, token.strip()) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise APIError(401, "incorrect API key provided; check the key the server was started with",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    return tenant


async def require_key(request: Request) -> str:  # async: FastAPI runs sync dependencies in a thread pool
    """FastAPI dependency: the caller's tenant (cached per request, so a route may depend on it again)."""
    return authenticate(request)
