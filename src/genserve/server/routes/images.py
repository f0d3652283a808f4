"""POST /v1/images/generations (answered when every image is done) and the image behind a signed `url` answer."""

from __future__ import annotations

import asyncio
import base64
import io
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from genserve.core.request import RequestStatus
from genserve.server.auth import authenticate, require_key
from genserve.server.bodies import read_body
from genserve.server.errors import APIError
from genserve.server.schemas import ImageGenerationRequest, JobSpec, new_id, normalise_image, valid_id
from genserve.server.service import JobService, service
from genserve.server.signing import verify

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
# the target of `url` image responses: a signed, expiring URL needs no key; the owner may also use its key
public = APIRouter()
MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def convert_png(path, fmt: str, quality: int) -> bytes:
    """The PNG at `path` re-encoded as jpeg or webp (CPU work: run it in a thread)."""
    from PIL import Image  # only the image routes need Pillow; the server never imports torch

    with Image.open(path) as im:
        if fmt == "jpeg" and im.mode not in ("RGB", "L"):
            im = im.convert("RGB")  # JPEG has no alpha channel
        buf = io.BytesIO()
        im.save(buf, format=fmt.upper(), quality=quality)
    return buf.getvalue()


@router.post("/images/generations", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": ImageGenerationRequest.model_json_schema()}}}})
async def images_generations(request: Request, server: JobService = Depends(service),
                             tenant: str = Depends(require_key)):
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
    server.store.insert_many([(i, s, created, created + slo, s.steps) for i, s in zip(ids, specs)], tenant)
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
    fmt = body.output_format or "png"
    expires = None
    for i in ids:
        job = server.store.get(i)
        path = server.outputs.resolve(job.output if job else None)
        if path is None:
            raise APIError(500, f"image {i} finished but the engine made no output file (engine "
                                f"{settings.engine_kind!r} does not render images)", code="no_output")
        if fmt != "png" and path.suffix != f".{fmt}":
            q = 100 if body.output_compression is None else body.output_compression
            try:
                raw = await asyncio.to_thread(convert_png, path, fmt, q)
            except (OSError, ValueError) as e:
                raise APIError(500, f"image {i} could not be converted to {fmt}: {e}",
                               code="conversion_failed") from None
            name = server.outputs.write(raw, i, "image", fmt)
            server.store.update(i, output=name)
            server.outputs.remove(path.name)
            path = server.outputs.resolve(name)
        if body.response_format == "url":
            url, expires = server.image_url(base, i, tenant)
            data.append({"url": url, "revised_prompt": None})
        else:
            size = path.stat().st_size
            raw = path.read_bytes() if size < (1 << 20) else await asyncio.to_thread(path.read_bytes)
            data.append({"b64_json": base64.b64encode(raw).decode(), "revised_prompt": None})
    return JSONResponse({
        "created": int(created),
        "data": data,
        "output_format": fmt,
        "size": spec.size,
        "genserve": {"ids": ids, "seeds": [s.seed for s in specs], "model": spec.model, "url_expires_at": expires,
                     "num_inference_steps": spec.steps,
                     "met_deadline": [u.met_deadline for u in updates],
                     "latency_s": round(time.time() - created, 4), "deadline_s": round(slo, 4)},
    })


@router.post("/images/edits", include_in_schema=False)
@router.post("/images/variations", include_in_schema=False)
async def images_unsupported(request: Request):
    raise APIError(404, f"genserve does not implement {request.url.path.rsplit('/', 1)[-1]} of images "
                        f"({request.method} {request.url.path}); it generates images from text only: "
                        "POST /v1/images/generations", code="unsupported_endpoint")


@public.get("/v1/images/{image_id}/content")
async def image_content(request: Request, image_id: str, expires: str | None = None, signature: str | None = None,
                        server: JobService = Depends(service)):
    """Either a valid signature (no key needed) or, without one, the owner's key (no key at all when the server
    has none: then it is one tenant and every /v1 route is open too)."""
    job = server.store.get(image_id) if valid_id(image_id, "image") else None
    if expires is None and signature is None:
        if server.settings.auth_required and not request.headers.get("authorization"):
            raise APIError(403, "this image URL is not signed; use the `url` from the images answer (it carries "
                                "'expires' and 'signature') or send the owner's API key", code="missing_signature")
        tenant = authenticate(request)
        if job is None or job.tenant != tenant:
            job = None  # another tenant's image looks like an unknown one
    else:
        try:
            exp = int(expires or "")
        except ValueError:
            exp = None
        if exp is None or not signature:
            raise APIError(403, "the image URL needs both 'expires' (unix seconds) and 'signature'",
                           code="invalid_signature")
        # the signature covers id, expiry and owner: a changed expiry or another tenant's id cannot pass
        if not verify(server.url_secret, image_id, exp, job.tenant if job else "", signature):
            raise APIError(403, "the image URL's signature is invalid (was the URL changed?); request the "
                                "image again for a fresh URL", code="invalid_signature")
        if exp < time.time():
            raise APIError(403, f"the image URL expired at {exp} (unix time); request the image again for a "
                                "fresh URL", code="url_expired")
    path = server.outputs.resolve(job.output) if job and job.status == "completed" else None
    if path is None:
        raise APIError(404, f"no image with id {image_id!r}", param="image_id", code="image_not_found")
    return FileResponse(path, media_type=MEDIA.get(path.suffix.lstrip("."), "application/octet-stream"))
