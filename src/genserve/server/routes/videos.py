"""The video job routes: create, list, retrieve, download, delete; each sees only its tenant's videos.
The openai client's other video calls (edit, extend, remix, characters) get a clear 404."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from genserve.server.auth import require_key
from genserve.server.bodies import read_body
from genserve.server.errors import APIError
from genserve.server.schemas import VideoCreateRequest, new_id, normalise_video, valid_id
from genserve.server.service import JobService, service
from genserve.server.store import Job

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


@router.post("/videos", openapi_extra={"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": VideoCreateRequest.model_json_schema()},
    "application/json": {"schema": VideoCreateRequest.model_json_schema()}}}})
async def videos_create(request: Request, server: JobService = Depends(service),
                        tenant: str = Depends(require_key)):
    settings = server.settings
    t0 = request.scope.get("genserve.t0") or time.perf_counter()
    body = await read_body(request, VideoCreateRequest, allow_form=True)
    spec = normalise_video(settings, body)
    server.check_capacity(1)
    slo = server.slo_seconds(spec)
    created = time.time()
    vid = new_id("video")
    server.store.insert(vid, spec, created_at=created, deadline_at=created + slo, steps_total=spec.steps,
                        tenant=tenant)
    try:
        server.submit(vid, spec, created + slo)
    except APIError:
        server.store.delete(vid)
        raise
    server.record_admission(time.perf_counter() - t0)
    job = Job(seq=0, id=vid, kind="video", status="queued", spec=spec, created_at=created,
              deadline_at=created + slo, steps_done=0, steps_total=spec.steps, progress=0, completed_at=None,
              error_code=None, error=None, output=None, met_deadline=None, attempts=1, tenant=tenant)
    # plain JSON types: skip FastAPI's jsonable_encoder
    return JSONResponse(server.video_object(job), headers={"openai-poll-after-ms": server.poll_after_ms(job)})


def _unsupported(what: str):
    async def handler(request: Request):
        raise APIError(404, f"genserve does not implement {what} ({request.method} {request.url.path}); it "
                            "generates videos from text only: POST /v1/videos", code="unsupported_endpoint")
    return handler


# the openai client's calls genserve does not serve: registered before /videos/{video_id} routes can match them
for _method, _path, _what in (("POST", "/videos/edits", "video edits"),
                              ("POST", "/videos/extensions", "video extensions"),
                              ("POST", "/videos/characters", "video characters"),
                              ("GET", "/videos/characters/{character_id}", "video characters"),
                              ("POST", "/videos/{video_id}/remix", "video remixes")):
    router.add_api_route(_path, _unsupported(_what), methods=[_method], include_in_schema=False)

@router.get("/videos")
async def videos_list(limit: int = Query(20, ge=1), after: str | None = None, order: str = "desc",
                      server: JobService = Depends(service), tenant: str = Depends(require_key)):
    settings = server.settings
    if limit > settings.max_list_limit:
        raise APIError(400, f"'limit' must be between 1 and {settings.max_list_limit}, got {limit}",
                       param="limit", code="invalid_value")
    if order not in ("asc", "desc"):
        raise APIError(400, f"'order' must be 'asc' or 'desc', got {order!r}", param="order",
                       code="invalid_value")
    if after is not None and not valid_id(after, "video"):
        raise APIError(400, f"'after' must be a video id from a previous page, got {after!r}", param="after",
                       code="invalid_value")
    try:
        jobs, more = server.store.page("video", limit, after, order, tenant)
    except KeyError:
        raise APIError(400, f"'after' names no known video ({after!r})", param="after",
                       code="invalid_value") from None
    data = [server.video_object(j) for j in jobs]
    return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": more})

@router.get("/videos/{video_id}")
async def videos_retrieve(video_id: str, server: JobService = Depends(service),
                          tenant: str = Depends(require_key)):
    job = server.get_video(video_id, tenant)
    return JSONResponse(server.video_object(job), headers={"openai-poll-after-ms": server.poll_after_ms(job)})

@router.get("/videos/{video_id}/content")
async def videos_content(video_id: str, variant: str = "video", server: JobService = Depends(service),
                         tenant: str = Depends(require_key)):
    settings = server.settings
    job = server.live_view(server.get_video(video_id, tenant))
    if variant != "video":
        raise APIError(400, f"variant {variant!r} is not available; only 'video' (the MP4)", param="variant",
                       code="invalid_value")
    if job.status != "completed":
        detail = f" ({job.progress}%)" if job.status in ("queued", "in_progress") else ""
        hint = "poll GET /v1/videos/{id} until its status is 'completed'" if job.active else \
            "it will never have content; create a new video"
        shown = "failed (cancelled)" if job.status == "cancelled" else job.status
        raise APIError(409, f"video {video_id} is {shown}{detail}; {hint}", code="video_not_ready")
    path = server.outputs.resolve(job.output)
    if path is None:
        raise APIError(404, f"video {video_id} completed but has no content file (engine "
                            f"{settings.engine_kind!r} does not render videos, or the file was removed)",
                       code="no_content")
    return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4")

@router.delete("/videos/{video_id}")
async def videos_delete(video_id: str, server: JobService = Depends(service),
                        tenant: str = Depends(require_key)):
    # gone at once (404, unlisted); active work stops at its next step boundary, a late file is removed
    server.delete_video(server.get_video(video_id, tenant))
    return {"id": video_id, "object": "video.deleted", "deleted": True}
