"""Request bodies: JSON (or, for videos, a form) parsed into a pydantic model with OpenAI-style errors.

Everything a client can send is bounded before it reaches pydantic, the store or a JSON answer: text must be
UTF-8 without lone surrogates (they cannot be encoded in any answer), JSON nesting and integer literals are
bounded (no RecursionError, no 4300-digit int() error), NaN/Infinity are refused (they are not JSON).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

import numpy as np
from fastapi import Request
from pydantic import ValidationError as PydanticValidationError
try:
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # python-multipart before 0.0.13 named its module `multipart`
    from multipart.exceptions import FormParserError
    from multipart.multipart import MultipartParser, parse_options_header

from genserve.server.errors import APIError, describe_validation
from genserve.server.schemas import RequestBody

_JSON_TYPES = ("application/json", "text/json")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_DEPTH = 32  # no field takes nested values at all; this only bounds what the parser must walk
MAX_INT_DIGITS = 30  # seeds have 10; beyond this a number is a mistake (and 4300 digits make int() raise)
MAX_FIELDS = 64
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as int8: +1, +1, -1, -1


def _bad_json(message: str) -> APIError:
    return APIError(400, message, code="invalid_json")


def _too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON text nests arrays/objects more than `limit` deep. Only C-speed passes (about 15 ms
    for 1 MiB of brackets), and none at all unless the body has more than `limit` opening brackets."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    outside = b"".join(raw.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])  # drop string contents
    steps = outside.translate(_BRACKET_STEPS, _NOT_BRACKETS)  # +1 per opening, -1 per closing bracket
    return bool(steps) and int(np.frombuffer(steps, dtype=np.int8).cumsum(dtype=np.int64).max()) > limit


class _NumberError(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NumberError(f"an integer in the body has {len(text.lstrip('-'))} digits; the limit is "
                           f"{MAX_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberError(f"the number {text[:40]} is out of range")
    return value


def _parse_constant(name: str) -> float:
    raise _NumberError(f"{name} is not a JSON number")


def _field_of_surrogate(data: dict) -> str | None:
    """The top-level field whose key or value (at any depth) holds a lone surrogate, if any."""
    def has(v: Any) -> bool:
        if isinstance(v, str):
            return _SURROGATE.search(v) is not None
        if isinstance(v, list):
            return any(has(x) for x in v)
        if isinstance(v, dict):
            return any(has(k) or has(x) for k, x in v.items())
        return False

    for key, value in data.items():
        if has(key) or has(value):
            return _SURROGATE.sub("\ufffd", key)
    return None


def _surrogate_error(param: str) -> APIError:
    return APIError(400, f"invalid '{param}': the text contains a lone UTF-16 surrogate (an escape such as "
                         "\\ud800 without its pair), which is not a character; send valid Unicode text",
                    param=param, code="invalid_value")


def _parse_json(raw: bytes) -> dict:
    if not raw.strip():
        raise _bad_json("the request body is empty; send a JSON object with at least 'prompt'")
    try:
        text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad_json(f"the request body is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "send JSON encoded as UTF-8") from None
    if _too_deep(raw):
        raise _bad_json(f"the JSON body nests arrays or objects more than {MAX_DEPTH} levels deep; send a flat "
                        "JSON object of fields")
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as e:
        raise _bad_json(f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                        "send a JSON object") from None
    except _NumberError as e:
        raise APIError(400, f"{e}; send numbers within the documented ranges", code="invalid_value") from None
    except RecursionError:  # a backstop: _too_deep catches well-formed deep nesting first
        raise _bad_json(f"the JSON body nests more than {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise _bad_json("the request body must be a JSON object")
    if _ESCAPED_SURROGATE.search(text):
        param = _field_of_surrogate(data)
        if param is not None:
            raise _surrogate_error(param)
    return data


def _utf8(raw: bytes, what: str, param: str | None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"{what} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); form "
                            "fields must be UTF-8 text", param=param, code="invalid_value") from None


def _add(data: dict[str, str], name: str, value: str) -> None:
    if name in data:
        raise APIError(400, f"field '{name}' is given more than once; send each field once", param=name,
                       code="invalid_value")
    if len(data) >= MAX_FIELDS:
        raise APIError(400, f"the form has more than {MAX_FIELDS} fields", code="invalid_body")
    data[name] = value


def _parse_urlencoded(raw: bytes) -> dict[str, str]:
    data: dict[str, str] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        name_b, _, value_b = pair.partition(b"=")
        name = _utf8(unquote_to_bytes(name_b.replace(b"+", b" ")), "a field name", None)
        _add(data, name, _utf8(unquote_to_bytes(value_b.replace(b"+", b" ")), f"field '{name}'", name))
    return data


def _parse_multipart(raw: bytes, content_type: str) -> dict[str, str]:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise APIError(400, "the multipart/form-data Content-Type has no boundary parameter", code="invalid_body")
    parts: list[tuple[bytes, bytearray]] = []  # (Content-Disposition, data) of each part
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state.update(disposition=b"", header=b"", value=b"", data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            state["disposition"] = state["value"]
        state.update(header=b"", value=b"")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        parts.append((state["disposition"], state["data"]))

    try:
        parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                            "on_header_value": on_header_value, "on_header_end": on_header_end,
                                            "on_part_data": on_part_data, "on_part_end": on_part_end})
        parser.write(raw)
        parser.finalize()
    except FormParserError as e:
        raise APIError(400, f"could not parse the multipart body ({e}); send multipart/form-data as the openai "
                            "client does, or JSON", code="invalid_body") from None
    data: dict[str, str] = {}
    for disposition, value in parts:
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise APIError(400, "a multipart part has no Content-Disposition name", code="invalid_body")
        name = _utf8(options[b"name"], "a field name", None)
        if b"filename" in options:
            raise APIError(400, f"field {name!r} is a file upload; only text fields are accepted", param=name,
                           code="unsupported_parameter")
        _add(data, name, _utf8(bytes(value), f"field '{name}'", name))
    return data


async def read_body(request: Request, model: type[RequestBody], allow_form: bool) -> RequestBody:
    """Parse a JSON (or, for videos, form) body into `model`, with OpenAI-style errors."""
    header = request.headers.get("content-type", "")
    ctype = header.split(";")[0].strip().lower()
    is_form = allow_form and ctype in _FORM_TYPES
    if not is_form and not (ctype in _JSON_TYPES or ctype == "" or ctype.endswith("+json")):
        accepted = "application/json or multipart/form-data" if allow_form else "application/json"
        raise APIError(415, f"unsupported Content-Type {ctype!r}; send {accepted}", code="unsupported_media_type")
    raw = await request.body()  # the body middleware bounds its size and the time it may take
    data: dict[str, Any]
    if not is_form:
        data = _parse_json(raw)
    elif ctype == "multipart/form-data":
        data = _parse_multipart(raw, header)
    else:
        data = _parse_urlencoded(raw)
    for key in data:
        if key in model.UNSUPPORTED:
            raise APIError(400, f"'{key}' is not supported: {model.UNSUPPORTED[key]}", param=key,
                           code="unsupported_parameter")
    try:
        return model.from_form(data) if is_form else model.model_validate(data)
    except PydanticValidationError as e:
        message, param, code = describe_validation(e.errors())
        raise APIError(400, message, param=param, code=code) from None
