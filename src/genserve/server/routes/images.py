"""POST /v1/images/generations (answered when every image is done) and the PNG behind `url` answers."""

from __future__ import annotations

import asyncio
import base64
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from genserve.core.request import RequestStatus
from genserve.server.auth import require_key
from genserve.server.bodies import read_body
from genserve.server.errors import APIError
from genserve.server.schemas import ImageGenerationRequest, JobSpec, new_id, normalise_image, valid_id
from genserve.server.service import JobService, service

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
# the target of `url` image responses: a capability URL (the random id), no key needed, like a signed URL
public = APIRouter()


@router.post("/images/generations", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": ImageGenerationRequest.model_json_schema()}}}})
async def images_generations(request: Request, server: JobService = Depends(service)):
    settings, engine = server.settings, server.engine
    t0 = request.scope.get("genserve.t0") or time.perf_counter()
    body = await read_body(request, ImageGenerationRequest, allow_form=False)
    spec = normalise_image(settings, body)
    server.check_capacity(body.n)
    slo = server.slo_seconds(spec)
    created = time.time()
    loop = asyncio.get_running_loop()
    ids = [new_id("image") for _ in range(body.n)]
    specs = [JobSpec(**{**spec.to_dict(), "seed": spec.seed + i}) for i in range(body.n)]
    server.store.insert_many([(i, s, created, created + slo, s.steps) for i, s in zip(ids, specs)])
    futures: list[asyncio.Future] = []
    try:
        for i, s in zip(ids, specs):
            fut = loop.create_future()
            server.submit(i, s, created + slo, (loop, fut))
            futures.append(fut)
    except APIError:
        for i in ids[: len(futures)]:
            engine.cancel(i)
        for i in ids:
            server.store.delete(i)
        raise
    server.record_admission(time.perf_counter() - t0)
    try:
        updates = await asyncio.wait_for(asyncio.gather(*futures), timeout=settings.image_timeout_s)
    except asyncio.TimeoutError:
        for i in ids:
            engine.cancel(i)
        raise APIError(504, f"the images did not finish within {settings.image_timeout_s:g} s; try fewer or "
                            "smaller images, or retry when the server is less busy", code="timeout") from None
    except asyncio.CancelledError:  # the client went away
        for i in ids:
            engine.cancel(i)
        raise
    if any(u is None for u in updates):
        raise APIError(503, "the server is shutting down; send the request again", code="unavailable",
                       headers={"Retry-After": str(settings.retry_after_s)})
    bad = [u for u in updates if u.status is not RequestStatus.DONE]
    if bad:
        u = bad[0]
        if u.status is RequestStatus.CANCELLED:
            raise APIError(503, f"image {u.request_id} was cancelled ({u.error or 'engine stopped'})",
                           code="cancelled")
        raise APIError(500, f"image generation failed: {u.error or 'unknown engine error'}",
                       code="generation_failed")
    data = []
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    for i in ids:
        job = server.store.get(i)
        path = server.outputs.resolve(job.output if job else None)
        if path is None:
            raise APIError(500, f"image {i} finished but the engine made no output file (engine "
                                f"{settings.engine_kind!r} does not render images)", code="no_output")
        if body.response_format == "url":
            data.append({"url": f"{base}/v1/images/{i}/content", "revised_prompt": None})
        else:
            size = path.stat().st_size
            raw = path.read_bytes() if size < (1 << 20) else await asyncio.to_thread(path.read_bytes)
            data.append({"b64_json": base64.b64encode(raw).decode(), "revised_prompt": None})
    return JSONResponse({
        "created": int(created),
        "data": data,
        "output_format": "png",
        "size": spec.size,
        "genserve": {"ids": ids, "seeds": [s.seed for s in specs], "model": spec.model,
                     "num_inference_steps": spec.steps,
                     "met_deadline": [u.met_deadline for u in updates],
                     "latency_s": round(time.time() - created, 4), "deadline_s": round(slo, 4)},
    })


@public.get("/v1/images/{image_id}/content")
async def image_content(image_id: str, server: JobService = Depends(service)):
    job = server.store.get(image_id) if valid_id(image_id, "image") else None
    path = server.outputs.resolve(job.output) if job and job.status == "completed" else None
    if path is None:
        raise APIError(404, f"no image with id {image_id!r}", param="image_id", code="image_not_found")
    return FileResponse(path, media_type="image/png")
