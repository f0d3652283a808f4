"""The OpenAPI document, made to match what the server answers (tests/server/test_schemathesis.py checks it).

FastAPI documents a 422 it never sends here (validation errors are 400s) and none of the OpenAI-style errors
the routes, the auth dependency and the middleware do send; query parameters lack the limits the routes check,
request bodies carry schemas.py's default limits. `install_openapi` post-processes the generated document once:
the live settings' limits and the profile's models, answer schemas, links, and errors by rules that follow where
each status comes from:
- every operation: 408 and 413 (the body middleware, for any request with a body), 500 (last resort);
- /v1 and /metrics: 401 (API key); /v1: 503 (starting, draining, engine stopped);
- POST: 400 (body), 404 (model), 415 (Content-Type), 429 (overload); path ids: 404; query parameters: 400.
"""

from __future__ import annotations

from fastapi import FastAPI

from genserve.server.settings import ServerSettings

ERROR_SCHEMA = {
    "type": "object",
    "description": "OpenAI-style error; `code` is listed in docs/api.md (Errors).",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
    }},
}
HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "engine", "in_flight", "uptime_s"],
    "properties": {"status": {"type": "string"}, "engine": {"type": "string"},
                   "in_flight": {"type": "integer", "minimum": 0}, "uptime_s": {"type": "number"}},
}

_ID = {"type": "string", "pattern": r"^video_[0-9a-f]{24}$"}
_NULLABLE_INT = {"type": ["integer", "null"]}
# answers of the routes (open objects: extensions may grow; the fields clients rely on are typed)
OBJECTS = {
    "Video": {"type": "object", "required": ["id", "object", "created_at", "model", "status", "progress",
                                            "seconds", "size", "prompt", "error"],
              "properties": {
                  "id": _ID, "object": {"const": "video"}, "created_at": {"type": "integer"},
                  "completed_at": _NULLABLE_INT, "model": {"type": "string"},
                  "status": {"enum": ["queued", "in_progress", "completed", "failed", "cancelled"]},
                  "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "seconds": {"type": "string"},
                  "size": {"type": "string"}, "prompt": {"type": "string"},
                  "error": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["code", "message"]}]},
                  "num_frames": {"type": "integer"}, "num_inference_steps": {"type": "integer"},
                  "seed": {"type": "integer"}, "met_deadline": {"type": ["boolean", "null"]}}},
    "VideoList": {"type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"],
                  "properties": {"object": {"const": "list"},
                                 "data": {"type": "array", "items": {"$ref": "#/components/schemas/Video"}},
                                 "first_id": {"anyOf": [_ID, {"type": "null"}]},
                                 "last_id": {"anyOf": [_ID, {"type": "null"}]}, "has_more": {"type": "boolean"}}},
    "VideoDeleted": {"type": "object", "required": ["id", "object", "deleted"],
                     "properties": {"id": _ID, "object": {"const": "video.deleted"}, "deleted": {"const": True}}},
    "Model": {"type": "object", "required": ["id", "object", "created", "owned_by", "modality"],
              "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                             "owned_by": {"type": "string"}, "modality": {"enum": ["image", "video"]}}},
    "ModelList": {"type": "object", "required": ["object", "data"],
                  "properties": {"object": {"const": "list"},
                                 "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
    "ImagesResponse": {"type": "object", "required": ["created", "data"],
                       "properties": {"created": {"type": "integer"}, "data": {"type": "array", "items": {
                           "type": "object", "properties": {"b64_json": {"type": "string"},
                                                            "url": {"type": "string"}}}}}},
}
_ANSWERS = {
    ("post", "/v1/images/generations"): "ImagesResponse",
    ("post", "/v1/videos"): "Video",
    ("get", "/v1/videos"): "VideoList",
    ("get", "/v1/videos/{video_id}"): "Video",
    ("delete", "/v1/videos/{video_id}"): "VideoDeleted",
    ("get", "/v1/models"): "ModelList",
    ("get", "/v1/models/{model_id}"): "Model",
}
# where an answer's id feeds another operation (schemathesis' stateful phase follows these)
_LINKS = {
    ("post", "/v1/videos"): [("get", "/v1/videos/{video_id}", "video_id", "$response.body#/id"),
                             ("get", "/v1/videos/{video_id}/content", "video_id", "$response.body#/id"),
                             ("delete", "/v1/videos/{video_id}", "video_id", "$response.body#/id")],
    ("get", "/v1/models"): [("get", "/v1/models/{model_id}", "model_id", "$response.body#/data/0/id")],
}

_WHY = {
    400: "Invalid request: invalid_json, missing_field, unknown_field, invalid_value, empty_prompt, "
         "prompt_too_long, invalid_size, unsupported_size, invalid_n, wrong_modality, unsupported_parameter, "
         "rejected_by_engine, invalid_body",
    401: "missing_api_key or invalid_api_key",
    403: "image URL not signed, signature invalid, or expired",
    404: "Not found: model_not_found, video_not_found, image_not_found, no_content, unsupported_endpoint",
    408: "body_timeout: the request body did not arrive in time",
    409: "video_not_ready: the video is not completed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "engine_overloaded (Retry-After)",
    500: "internal_error, generation_failed, no_output, conversion_failed",
    503: "unavailable: starting, shutting down or engine stopped (Retry-After)",
    504: "timeout: images not done in time",
}
# statuses only one operation sends, beyond the rules in the module docstring
_EXTRA = {
    ("post", "/v1/images/generations"): {504},
    ("get", "/v1/videos/{video_id}/content"): {409},
    ("get", "/v1/images/{image_id}/content"): {401, 403},
}
_MEDIA = {
    ("get", "/metrics"): {"text/plain": {"schema": {"type": "string"}}},
    ("get", "/v1/videos/{video_id}/content"): {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
    ("get", "/v1/images/{image_id}/content"): {m: {"schema": {"type": "string", "format": "binary"}}
                                               for m in ("image/png", "image/jpeg", "image/webp")},
}


def _query_limits(settings: ServerSettings) -> dict[tuple[str, str], dict]:
    return {
        ("/v1/videos", "limit"): {"type": "integer", "minimum": 1, "maximum": settings.max_list_limit, "default": 20},
        ("/v1/videos", "order"): {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
        ("/v1/videos", "after"): {"type": "string", "pattern": r"^video_[0-9a-f]{24}$"},
        ("/v1/videos/{video_id}/content", "variant"): {"type": "string", "enum": ["video"], "default": "video"},
        ("/v1/videos/{video_id}", "video_id"): {"type": "string", "pattern": r"^video_[0-9a-f]{24}$"},
        ("/v1/videos/{video_id}/content", "video_id"): {"type": "string", "pattern": r"^video_[0-9a-f]{24}$"},
        ("/v1/images/{image_id}/content", "image_id"): {"type": "string", "pattern": r"^img_[0-9a-f]{24}$"},
    }


def _body_limits(op: dict, models: list[str], settings: ServerSettings) -> None:
    """The live settings' limits and the profile's models ("" or null: the default model) in every request body
    schema of `op` (schemas.py states the defaults; a server may be started with others)."""
    limits = {"n": ("maximum", settings.max_n), "num_inference_steps": ("maximum", settings.max_steps),
              "num_frames": ("maximum", settings.max_frames), "prompt": ("maxLength", settings.max_prompt_chars),
              "negative_prompt": ("maxLength", settings.max_prompt_chars),
              "seconds": ("maximum", settings.max_frames / settings.fps)}
    for media in op.get("requestBody", {}).get("content", {}).values():
        props = media.get("schema", {}).get("properties", {})
        if "model" in props:
            props["model"] = {**props["model"], "anyOf": [{"enum": [*models, ""]}, {"type": "null"}]}
        for name, (key, value) in limits.items():
            if name in props:
                props[name] = {**props[name], key: value}


def _statuses(method: str, path: str, op: dict) -> set[int]:
    out = {408, 413, 500} | _EXTRA.get((method, path), set())
    if path.startswith("/v1/"):
        out |= {401, 503}
    if path == "/metrics":
        out.add(401)
    if method == "post":
        out |= {400, 404, 415, 429}
    params = op.get("parameters", [])
    if any(p["in"] == "path" for p in params):
        out.add(404)
    if any(p["in"] == "query" for p in params):
        out.add(400)
    return out


def patch_openapi(doc: dict, settings: ServerSettings) -> dict:
    doc.setdefault("components", {}).setdefault("schemas", {})
    schemas = doc["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(OBJECTS, Error=ERROR_SCHEMA, Health=HEALTH_SCHEMA)
    keyed = bool(getattr(settings, "api_keys", None) or settings.api_key)
    if keyed:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    paths = doc.get("paths", {})
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    limits = _query_limits(settings)
    for path, ops in paths.items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if (method, path) == ("post", "/v1/images/generations"):
                _body_limits(op, list(settings.profile.image_models), settings)
            elif (method, path) == ("post", "/v1/videos"):
                _body_limits(op, list(settings.profile.video_models), settings)
            for p in op.get("parameters", []):
                if (path, p["name"]) in limits:
                    p["schema"] = {**limits[(path, p["name"])], "title": p["schema"].get("title", p["name"])}
            if (method, path) in _MEDIA:
                responses.setdefault("200", {"description": "OK"})["content"] = _MEDIA[(method, path)]
            if (method, path) in _ANSWERS:
                ref = {"$ref": f"#/components/schemas/{_ANSWERS[(method, path)]}"}
                responses.setdefault("200", {"description": "OK"})["content"] = {"application/json": {"schema": ref}}
            for target_method, target, name, value in _LINKS.get((method, path), []):
                target_op = paths.get(target, {}).get(target_method)
                if target_op and "operationId" in target_op:
                    responses.setdefault("200", {"description": "OK"}).setdefault("links", {})[
                        target_op["operationId"]] = {"operationId": target_op["operationId"],
                                                     "parameters": {name: value}}
            if keyed and (path.startswith("/v1/") or path == "/metrics"):
                # image URLs: a signature in the query, or the owner's key
                op["security"] = [{"bearer": []}, {}] if path.startswith("/v1/images/{") else [{"bearer": []}]
            if path == "/health":
                health = {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
                responses["200"] = {"description": "Serving", "content": health}
                responses["503"] = {"description": "Starting, stopping, or the engine stopped", "content": health}
                continue
            for status in sorted(_statuses(method, path, op)):
                responses.setdefault(str(status), {"description": _WHY[status], "content": error})
    return doc


def install_openapi(app: FastAPI, settings: ServerSettings) -> None:
    """Serve the patched document at /openapi.json (built once, on first use)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = patch_openapi(build(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
