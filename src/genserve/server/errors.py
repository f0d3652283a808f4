"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with the right HTTP status.

Bad input always gets a 4xx whose message says what to fix; unexpected exceptions get a 500 without a stack
trace (the trace goes to the server log under an incident id).
"""

from __future__ import annotations

import json
import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

log = logging.getLogger("genserve.server")

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


class APIError(Exception):
    """An error answered to the client as-is."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class BodyTooLarge(Exception):
    """Raised by the body-size middleware while a request body streams in."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class BodyTimeout(Exception):
    """Raised by the body middleware when a request body is not complete in time (sent slowly or never)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def body_timeout(seconds: float) -> APIError:
    return APIError(408, f"the request body did not arrive within {seconds:g} s; send the whole body at once",
                    code="body_timeout", headers={"Connection": "close"})


# Not an HTTP status anyone receives (the client is gone): nginx's 499 "client closed request", so metrics count
# these apart from real server errors.
CLIENT_CLOSED = 499


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def too_large(limit: int) -> APIError:
    return APIError(413, f"request body is larger than the limit of {limit} bytes; send a shorter prompt "
                         "or fewer fields", code="body_too_large")


def _loc_name(loc: tuple) -> str | None:
    # the field itself: the request models are flat, and later parts name union members ("seconds.str")
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return parts[0] if parts else None


def describe_validation(errors: list[dict]) -> tuple[str, str | None, str]:
    """(message, param, code) for the first pydantic/FastAPI validation error."""
    if not errors:
        return "invalid request", None, "invalid_request"
    err = errors[0]
    kind = err.get("type", "")
    param = _loc_name(tuple(err.get("loc", ())))
    if kind == "json_invalid":
        ctx = err.get("ctx") or {}
        detail = ctx.get("error", "could not parse it")
        return f"the request body is not valid JSON ({detail}); send a JSON object", None, "invalid_json"
    if kind == "model_attributes_type" or (kind == "dict_type" and not param):
        return "the request body must be a JSON object", None, "invalid_json"
    if kind == "missing":
        return f"missing required field '{param}'", param, "missing_field"
    if kind == "extra_forbidden":
        return f"unknown field '{param}'; see GET /docs for the accepted fields", param, "unknown_field"
    msg = str(err.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if param:
        inp = err.get("input")
        shown = "" if isinstance(inp, (dict, list)) or inp is None else f" (got {json.dumps(inp)[:80]})"
        return f"invalid '{param}': {msg}{shown}", param, "invalid_value"
    return msg, None, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(too_large(exc.limit))

    @app.exception_handler(BodyTimeout)
    async def _body_timeout(request: Request, exc: BodyTimeout) -> JSONResponse:
        log.info("%s %s: request body not received within %g s", request.method, request.url.path, exc.seconds)
        return error_response(body_timeout(exc.seconds))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # nobody reads this answer; it exists so the request is counted as 499, not as a server error
        log.debug("%s %s: client disconnected before sending its whole body", request.method, request.url.path)
        return error_response(APIError(CLIENT_CLOSED, "client closed the request", code="client_closed_request"))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = describe_validation(list(exc.errors()))
        return error_response(APIError(400, message, param=param, code=code))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 404:
            message = f"no route {request.method} {request.url.path}; see GET /docs for the API"
            code = "not_found"
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
            code = "method_not_allowed"
            # Starlette's Allow names the methods of the first route on this path only (GET /v1/videos and
            # POST /v1/videos are two routes): list every method the path takes
            allowed = [m for m in _METHODS if any(route.matches({**request.scope, "method": m})[0] is Match.FULL
                                                  for route in request.app.router.routes)]
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        else:
            message = str(exc.detail) if exc.detail else "request failed"
            code = None
        return error_response(APIError(status, message, code=code, headers=headers))

    @app.exception_handler(Exception)
    async def _last_resort(request: Request, exc: Exception) -> JSONResponse:
        incident = secrets.token_hex(4)
        log.exception("unhandled error (incident %s) on %s %s", incident, request.method, request.url.path)
        return error_response(APIError(500, f"internal server error (incident {incident}); the server log has "
                                            "the details", code="internal_error"))
