"""The FastAPI app: OpenAI-compatible images and videos over any ServingEngine.

    app = create_app(engine, settings)        # engine: genserve.engine.api.ServingEngine
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (see docs/api.md):
    POST   /v1/images/generations      images, answered when done (n images = n engine requests)
    GET    /v1/images/{id}/content     a generated PNG (the target of `url` responses; the id is the capability)
    POST   /v1/videos                  create a video job (multipart/form-data like the openai client, or JSON)
    GET    /v1/videos                  list jobs (limit, after, order)
    GET    /v1/videos/{id}             a job
    GET    /v1/videos/{id}/content     the MP4 once completed
    DELETE /v1/videos/{id}             cancel at the next step boundary (active) or delete job and file (finished)
    GET    /v1/models, /v1/models/{id}, /health, /metrics
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from genserve.core.errors import GenServeError
from genserve.core.request import Modality
from genserve.core.request import Request as EngineRequest
from genserve.core.request import RequestStatus
from genserve.engine.api import RequestUpdate, ServingEngine
from genserve.server.errors import APIError, BodyTooLarge, describe_validation, error_response, \
    install_error_handlers, too_large
from genserve.server.metrics import Metrics
from genserve.server.schemas import (ImageGenerationRequest, JobSpec, VideoCreateRequest, new_id, normalise_image,
                                     normalise_video, valid_id)
from genserve.server.settings import ServerSettings
from genserve.server.store import Job, JobStore, OutputDir
from genserve.workloads.trace import deadline_for

log = logging.getLogger("genserve.server")

_STATUS = {
    RequestStatus.QUEUED: "queued",
    RequestStatus.RUNNING: "in_progress",
    RequestStatus.PAUSED: "in_progress",
    RequestStatus.DONE: "completed",
    RequestStatus.FAILED: "failed",
    RequestStatus.CANCELLED: "cancelled",
}
_JSON_TYPES = ("application/json", "text/json")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class _BodyLimit:
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


class _Instrument:
    """Pure ASGI middleware (outermost): stamps when the request reached the app (for the admission-overhead
    figure) and counts responses by route template and status code."""

    def __init__(self, app, server: "Server") -> None:
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


class Server:
    """State shared by the routes: engine, store, outputs, metrics, in-flight waiters."""

    def __init__(self, engine: ServingEngine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(settings.db_path)
        self.outputs = OutputDir(settings.outputs_dir)
        self.metrics = Metrics(self._engine_stats, self.store.counts)
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._active: set[str] = set()  # submitted to the engine, not yet terminal
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        # latest (status, steps_done, steps_total, progress) of active jobs: kept in memory, shown by GET; only
        # status changes and final states are written to SQLite (a restart re-runs a job from its start anyway)
        self._progress: dict[str, tuple[str, int, int, int]] = {}
        self._cancelling: set[str] = set()
        self._closing = False
        self.ready = False
        self.admission_samples: deque[float] = deque(maxlen=100_000)  # seconds, app entry -> engine admission

    # ---- engine side -----------------------------------------------------------------------------------
    def _engine_stats(self):
        return self.engine.stats()

    def record_admission(self, seconds: float) -> None:
        self.metrics.admission_seconds.observe(seconds)
        self.admission_samples.append(seconds)

    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def _finish_output(self, u: RequestUpdate, kind: str) -> str | None:
        for path in u.outputs:
            try:
                return self.outputs.adopt(path, u.request_id, kind)
            except (OSError, ValueError) as e:
                log.error("cannot store output %s of %s: %s", path, u.request_id, e)
                raise
        return None

    def on_update(self, u: RequestUpdate) -> None:
        """Called from an engine thread on every step and status change."""
        if self._closing:
            return  # shutting down: leave the row as it is, so a restart re-submits it
        rid = u.request_id
        status = _STATUS[u.status]
        try:
            if u.status.terminal:
                fields: dict[str, Any] = dict(status=status, steps_done=u.steps_done, steps_total=u.steps_total,
                                              progress=u.progress if u.status is RequestStatus.DONE else
                                              min(u.progress, 99), completed_at=time.time())
                if u.status is RequestStatus.DONE:
                    kind = "image" if rid.startswith("img_") else "video"
                    try:
                        fields["output"] = self._finish_output(u, kind)
                    except (OSError, ValueError) as e:
                        fields.update(status="failed", error_code="output_error",
                                      error=f"the output could not be stored: {e}")
                    fields["met_deadline"] = u.met_deadline
                elif u.status is RequestStatus.FAILED:
                    fields.update(error_code="generation_failed", error=u.error or "generation failed")
                elif u.status is RequestStatus.CANCELLED:
                    fields.update(error_code="cancelled", error=u.error or "cancelled")
                self.store.update(rid, **fields)
                with self._lock:
                    self._active.discard(rid)
                    self._progress.pop(rid, None)
                    self._cancelling.discard(rid)
                    waiter = self._waiters.pop(rid, None)
                if waiter is not None:
                    loop, fut = waiter
                    loop.call_soon_threadsafe(_resolve, fut, u)
            else:
                with self._lock:
                    prev = self._progress.get(rid)
                    self._progress[rid] = (status, u.steps_done, u.steps_total, u.progress)
                    persist = (prev is None or prev[0] != status) and rid not in self._cancelling
                if persist:
                    self.store.update(rid, status=status, steps_done=u.steps_done, steps_total=u.steps_total,
                                      progress=u.progress)
        except Exception:  # never let a store problem kill the engine thread
            log.exception("failed to record update for %s", rid)

    def make_request(self, job_id: str, spec: JobSpec, deadline_at: float | None) -> EngineRequest:
        now = self.engine.now
        wall = time.time()
        if deadline_at is not None:
            deadline = now + max(0.0, deadline_at - wall)
        else:
            deadline = now
        return EngineRequest(id=job_id, modality=Modality(spec.kind), model=spec.model, prompt=spec.prompt,
                             width=spec.width, height=spec.height, frames=spec.frames, steps=spec.steps,
                             seed=spec.seed, arrival=now, deadline=deadline, guidance_scale=spec.guidance_scale,
                             negative_prompt=spec.negative_prompt)

    def slo_seconds(self, spec: JobSpec) -> float:
        if spec.deadline_s is not None:
            return spec.deadline_s
        sigma = spec.sigma if spec.sigma is not None else self.settings.default_sigma
        return deadline_for(self.settings.profile, spec.kind, spec.model, spec.width, spec.height, spec.frames,
                            spec.steps, 0.0, sigma)

    def check_capacity(self, n: int) -> None:
        if self._closing or not self.ready:
            raise APIError(503, "the server is starting or shutting down; retry shortly", code="unavailable",
                           headers={"Retry-After": str(self.settings.retry_after_s)})
        if self.active_count() + n > self.settings.max_active:
            self.metrics.rejected.inc()
            raise APIError(429, f"the engine has {self.active_count()} requests in flight (limit "
                                f"{self.settings.max_active}); retry after {self.settings.retry_after_s} s",
                           code="engine_overloaded", headers={"Retry-After": str(self.settings.retry_after_s)})

    def submit(self, job_id: str, spec: JobSpec, deadline_at: float | None,
               waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None) -> None:
        """Admit one job into the engine (raises APIError(400) when the engine refuses it)."""
        req = self.make_request(job_id, spec, deadline_at)
        with self._lock:
            self._active.add(job_id)
            if waiter is not None:
                self._waiters[job_id] = waiter
        try:
            self.engine.submit(req, self.on_update)
        except GenServeError as e:
            self._forget(job_id)
            raise APIError(400, str(e), code="rejected_by_engine") from None
        except RuntimeError as e:  # the engine is stopped (EngineStopped) or broken
            self._forget(job_id)
            raise APIError(503, f"the engine is not accepting work: {e}", code="unavailable",
                           headers={"Retry-After": str(self.settings.retry_after_s)}) from None

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._active.discard(job_id)
            self._waiters.pop(job_id, None)

    def recover(self) -> tuple[int, int]:
        """Re-submit videos that were queued or running when the server stopped; fail interrupted images
        (nobody is waiting for them any more). Returns (videos re-submitted, images failed)."""
        resubmitted = failed = 0
        for job in self.store.unfinished():
            if job.kind == "image":
                self.store.update(job.id, status="failed", error_code="interrupted", completed_at=time.time(),
                                  error="the server restarted before this image finished; send the request again")
                failed += 1
                continue
            self.store.update(job.id, status="queued", steps_done=0, progress=0, attempts=job.attempts + 1)
            try:
                self.submit(job.id, job.spec, job.deadline_at)
                resubmitted += 1
            except APIError as e:
                self.store.update(job.id, status="failed", error_code="resubmit_failed", completed_at=time.time(),
                                  error=f"could not resume after a restart: {e.message}")
        return resubmitted, failed

    def close(self) -> None:
        self._closing = True
        with self._lock:
            waiters = list(self._waiters.values())
            self._waiters.clear()
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut, None)
            except RuntimeError:
                pass

    # ---- views -----------------------------------------------------------------------------------------
    def live_view(self, job: Job) -> Job:
        """The job with the engine's latest progress (kept in memory while it is active)."""
        if job.active:
            with self._lock:
                p = self._progress.get(job.id)
            if p is not None:
                job.status, job.steps_done, job.steps_total, job.progress = p
        return job

    def mark_cancelling(self, job_id: str) -> None:
        with self._lock:
            self._cancelling.add(job_id)

    def video_object(self, job: Job) -> dict:
        job = self.live_view(job)
        s = job.spec
        error = None
        if job.status in ("failed", "cancelled") and job.error:
            error = {"code": job.error_code or job.status, "message": job.error}
        return {
            "id": job.id,
            "object": "video",
            "created_at": int(job.created_at),
            "completed_at": int(job.completed_at) if job.completed_at and job.status == "completed" else None,
            "expires_at": None,
            "model": s.model,
            "status": job.status,
            "progress": job.progress if job.status != "completed" else 100,
            "seconds": s.seconds,
            "size": s.size,
            "prompt": s.prompt,
            "error": error,
            "remixed_from_video_id": None,
            # genserve extensions
            "num_frames": s.frames,
            "num_inference_steps": s.steps,
            "steps_done": job.steps_done,
            "seed": s.seed,
            "deadline_at": int(job.deadline_at) if job.deadline_at else None,
            "deadline_s": round(job.deadline_at - job.created_at, 4) if job.deadline_at else None,
            "latency_s": round(job.completed_at - job.created_at, 4)
            if job.completed_at and job.status == "completed" else None,
            "met_deadline": job.met_deadline,
        }


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


async def _read_body(request: Request, model: type[BaseModel], allow_form: bool) -> BaseModel:
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


def create_app(engine: ServingEngine, settings: ServerSettings) -> FastAPI:
    """The ASGI app. Its lifespan starts the engine, re-submits unfinished jobs, and closes the engine on exit
    (unless settings.close_engine_on_shutdown is False)."""
    server = Server(engine, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.outputs.sweep_temp()
        await asyncio.to_thread(engine.start)
        server.ready = True
        resumed, failed = server.recover()
        if resumed or failed:
            log.info("restart: re-submitted %d unfinished videos, failed %d interrupted images", resumed, failed)
        try:
            yield
        finally:
            server.close()
            if settings.close_engine_on_shutdown:
                await asyncio.to_thread(engine.close, False)
            server.store.close()

    app = FastAPI(title="genserve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible text-to-image and text-to-video serving with SLO-aware scheduling.")
    app.state.server = server
    install_error_handlers(app)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(_Instrument, server=server)  # outermost: stamps arrival, counts responses

    async def require_key(request: Request) -> None:  # async: FastAPI runs sync dependencies in a thread pool
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

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    # ---- images ------------------------------------------------------------------------------------------
    @v1.post("/images/generations", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": ImageGenerationRequest.model_json_schema()}}}})
    async def images_generations(request: Request):
        t0 = request.scope.get("genserve.t0") or time.perf_counter()
        body = await _read_body(request, ImageGenerationRequest, allow_form=False)
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

    # ---- videos ------------------------------------------------------------------------------------------
    @v1.post("/videos", openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": VideoCreateRequest.model_json_schema()},
        "application/json": {"schema": VideoCreateRequest.model_json_schema()}}}})
    async def videos_create(request: Request):
        t0 = request.scope.get("genserve.t0") or time.perf_counter()
        body = await _read_body(request, VideoCreateRequest, allow_form=True)
        spec = normalise_video(settings, body)
        server.check_capacity(1)
        slo = server.slo_seconds(spec)
        created = time.time()
        vid = new_id("video")
        server.store.insert(vid, spec, created_at=created, deadline_at=created + slo, steps_total=spec.steps)
        try:
            server.submit(vid, spec, created + slo)
        except APIError:
            server.store.delete(vid)
            raise
        server.record_admission(time.perf_counter() - t0)
        job = Job(seq=0, id=vid, kind="video", status="queued", spec=spec, created_at=created,
                  deadline_at=created + slo, steps_done=0, steps_total=spec.steps, progress=0, completed_at=None,
                  error_code=None, error=None, output=None, met_deadline=None, attempts=1)
        return JSONResponse(server.video_object(job))  # plain JSON types: skip FastAPI's jsonable_encoder

    def _video(video_id: str) -> Job:
        job = server.store.get(video_id) if valid_id(video_id, "video") else None
        if job is None or job.kind != "video":
            raise APIError(404, f"no video with id {video_id!r}; GET /v1/videos lists them", param="video_id",
                           code="video_not_found")
        return job

    @v1.get("/videos")
    async def videos_list(limit: int = Query(20, ge=1), after: str | None = None, order: str = "desc"):
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
            jobs, more = server.store.page("video", limit, after, order)
        except KeyError:
            raise APIError(400, f"'after' names no known video ({after!r})", param="after",
                           code="invalid_value") from None
        data = [server.video_object(j) for j in jobs]
        return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None, "has_more": more})

    @v1.get("/videos/{video_id}")
    async def videos_retrieve(video_id: str):
        return JSONResponse(server.video_object(_video(video_id)))

    @v1.get("/videos/{video_id}/content")
    async def videos_content(video_id: str, variant: str = "video"):
        job = server.live_view(_video(video_id))
        if variant != "video":
            raise APIError(400, f"variant {variant!r} is not available; only 'video' (the MP4)", param="variant",
                           code="invalid_value")
        if job.status != "completed":
            detail = f" ({job.progress}%)" if job.status in ("queued", "in_progress") else ""
            hint = "poll GET /v1/videos/{id} until its status is 'completed'" if job.active else \
                "it will never have content; create a new video"
            raise APIError(409, f"video {video_id} is {job.status}{detail}; {hint}", code="video_not_ready")
        path = server.outputs.resolve(job.output)
        if path is None:
            raise APIError(404, f"video {video_id} completed but has no content file (engine "
                                f"{settings.engine_kind!r} does not render videos, or the file was removed)",
                           code="no_content")
        return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4")

    @v1.delete("/videos/{video_id}")
    async def videos_delete(video_id: str):
        job = _video(video_id)
        if job.active:
            server.mark_cancelling(video_id)
            engine.cancel(video_id)  # stops at the next step boundary; the engine reports CANCELLED
            server.store.update(video_id, status="cancelled", error_code="cancelled", completed_at=time.time(),
                                error="cancelled by DELETE /v1/videos/{id}")
        else:
            server.outputs.remove(job.output)
            server.store.delete(video_id)
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    # ---- models ------------------------------------------------------------------------------------------
    def _model_obj(name: str, modality: str) -> dict:
        return {"id": name, "object": "model", "created": int(server.started_at), "owned_by": "genserve",
                "modality": modality}

    @v1.get("/models")
    async def models_list():
        prof = settings.profile
        data = [_model_obj(m, "image") for m in prof.image_models] + \
               [_model_obj(m, "video") for m in prof.video_models]
        return {"object": "list", "data": data}

    @v1.get("/models/{model_id}")
    async def models_retrieve(model_id: str):
        prof = settings.profile
        if model_id in prof.image_models:
            return _model_obj(model_id, "image")
        if model_id in prof.video_models:
            return _model_obj(model_id, "video")
        raise APIError(404, f"model {model_id!r} does not exist; GET /v1/models lists them", param="model",
                       code="model_not_found")

    app.include_router(v1)

    # the target of `url` image responses: a capability URL (the random id), no key needed, like a signed URL
    @app.get("/v1/images/{image_id}/content")
    async def image_content(image_id: str):
        job = server.store.get(image_id) if valid_id(image_id, "image") else None
        path = server.outputs.resolve(job.output) if job and job.status == "completed" else None
        if path is None:
            raise APIError(404, f"no image with id {image_id!r}", param="image_id", code="image_not_found")
        return FileResponse(path, media_type="image/png")

    @app.get("/health")
    async def health():
        engine_error = getattr(engine, "error", None)
        ok = server.ready and not server._closing and not engine_error
        body = {"status": "ok" if ok else "unavailable", "engine": settings.engine_kind,
                "in_flight": server.active_count(), "uptime_s": round(time.time() - server.started_at, 3)}
        if engine_error:
            body["error"] = f"engine stopped: {engine_error}"
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def metrics():
        data = await asyncio.to_thread(server.metrics.render)
        return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
