"""Request bodies: JSON (or, for videos, a form) parsed into a pydantic model with OpenAI-style errors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from genserve.server.errors import APIError, BodyTooLarge, describe_validation

_JSON_TYPES = ("application/json", "text/json")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_body(request: Request, model: type[BaseModel], allow_form: bool) -> BaseModel:
    """Parse a JSON (or, for videos, form) body into `model`, with OpenAI-style errors."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if allow_form and ctype in _FORM_TYPES:
        try:
            form = await request.form(max_files=1, max_fields=64, max_part_size=request.app.state.server
                                      .settings.max_body_bytes)
        except BodyTooLarge:
            raise
        except Exception as e:  # malformed multipart
            raise APIError(400, f"could not parse the form body ({e}); send multipart/form-data or JSON",
                           code="invalid_body") from None
        data = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                raise APIError(400, f"field {key!r} is a file upload; only text fields are accepted", param=key,
                               code="unsupported_parameter")
            data[key] = value
    elif ctype in _JSON_TYPES or ctype == "" or ctype.endswith("+json"):
        raw = await request.body()
        if not raw.strip():
            raise APIError(400, "the request body is empty; send a JSON object with at least 'prompt'",
                           code="invalid_json")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            raise APIError(400, f"the request body is not valid JSON{where}; send a JSON object",
                           code="invalid_json") from None
        if not isinstance(data, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    else:
        accepted = "application/json or multipart/form-data" if allow_form else "application/json"
        raise APIError(415, f"unsupported Content-Type {ctype!r}; send {accepted}", code="unsupported_media_type")
    try:
        return model.model_validate(data)
    except PydanticValidationError as e:
        message, param, code = describe_validation(e.errors())
        raise APIError(400, message, param=param, code=code) from None
