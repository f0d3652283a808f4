"""The job service: admission into the engine, engine updates into the job store, views of a job.

One object per app (`app.state.server`); the routes are thin over it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from fastapi import Request

from genserve.core.errors import GenServeError
from genserve.core.request import Modality
from genserve.core.request import Request as EngineRequest
from genserve.core.request import RequestStatus
from genserve.engine.api import RequestUpdate, ServingEngine
from genserve.server.errors import APIError
from genserve.server.metrics import Metrics
from genserve.server.schemas import JobSpec, valid_id
from genserve.server.settings import ServerSettings
from genserve.server.signing import load_secret, sign
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


class JobService:
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
        self._deleted: set[str] = set()  # deleted by DELETE while active: purged once the engine lets go
        self.url_secret = load_secret(settings.data_dir)
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
                with self._lock:
                    gone = rid in self._deleted
                if gone:
                    self._settle(rid, u)
                    self._purge(rid, u.outputs)
                    return
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
                if self._settle(rid, u):  # deleted meanwhile: the store kept the tombstone, drop it and the file
                    self._purge(rid, u.outputs)
            else:
                with self._lock:
                    prev = self._progress.get(rid)
                    self._progress[rid] = (status, u.steps_done, u.steps_total, u.progress)
                    persist = (prev is None or prev[0] != status) and rid not in self._deleted
                if persist:
                    self.store.update(rid, status=status, steps_done=u.steps_done, steps_total=u.steps_total,
                                      progress=u.progress)
        except Exception:  # never let a store problem kill the engine thread
            log.exception("failed to record update for %s", rid)

    def _settle(self, rid: str, u: RequestUpdate | None) -> bool:
        """Forget a job that reached a final state; True when it was deleted while active."""
        with self._lock:
            self._active.discard(rid)
            self._progress.pop(rid, None)
            waiter = self._waiters.pop(rid, None)
            gone = rid in self._deleted
        if waiter is not None:
            loop, fut = waiter
            loop.call_soon_threadsafe(_resolve, fut, u)
        return gone

    def _purge(self, rid: str, engine_files=()) -> None:
        """Remove a deleted job's row and every output it has or may get."""
        kind = "image" if rid.startswith("img_") else "video"
        for p in engine_files:
            try:
                Path(p).unlink(missing_ok=True)
            except OSError as e:
                log.warning("cannot remove output %s of deleted %s: %s", p, rid, e)
        for ext in self.outputs.EXTS:
            self.outputs.path_for(rid, kind, ext).unlink(missing_ok=True)
        self.store.delete(rid)
        with self._lock:
            self._deleted.discard(rid)

    def delete_video(self, job: Job) -> None:
        """DELETE: the video disappears from the API at once. Active work is cancelled at its next step
        boundary; the row stays as a hidden tombstone (never re-submitted) until the engine reports the end."""
        if not job.active:
            self.outputs.remove(job.output)
            self.store.delete(job.id)
            return
        with self._lock:
            self._deleted.add(job.id)
        self.store.mark_deleted(job.id)
        self.engine.cancel(job.id)  # the engine answers with a final update, which purges the tombstone
        with self._lock:
            still = job.id in self._active
        if not still:  # it ended before the tombstone was written (or was never submitted)
            self._purge(job.id)

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
        for job in self.store.tombstones():  # deleted while active before the stop: never run them again
            self._purge(job.id)
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
            waiters = list(self._waiters.items())
            self._waiters.clear()
        for job_id, (loop, fut) in waiters:  # images whose caller now gets a 503 (send again): say so in the row
            try:
                self.store.update(job_id, status="failed", error_code="interrupted", completed_at=time.time(),
                                  error="the server shut down before this image finished; send the request again")
            except Exception:  # noqa: BLE001 - closing must go on
                log.exception("cannot mark %s interrupted", job_id)
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

    def get_video(self, video_id: str, tenant: str) -> Job:
        """The caller's video; another tenant's, a deleted or an unknown id are the same 404."""
        job = self.store.get_owned(video_id, tenant) if valid_id(video_id, "video") else None
        if job is None or job.kind != "video":
            raise APIError(404, f"no video with id {video_id!r}; GET /v1/videos lists them", param="video_id",
                           code="video_not_found")
        return job

    def poll_after_ms(self, job: Job) -> str:
        """The openai client's poll helper waits this long between retrieves: about 5% of the job's expected
        isolated run time, within the settings' bounds."""
        s, st = job.spec, self.settings
        try:
            expected = st.profile.isolated_latency("video", s.model, s.width, s.height, s.frames, s.steps)
        except Exception:  # noqa: BLE001 - a profile that cannot estimate it: poll at the upper bound
            expected = st.poll_max_ms / 1000 * 20
        return str(int(min(st.poll_max_ms, max(st.poll_min_ms, expected * 1000 / 20))))

    def image_url(self, base: str, image_id: str, tenant: str) -> tuple[str, int]:
        """A signed URL for an image's content and its expiry (unix seconds)."""
        expires = int(time.time()) + self.settings.image_url_ttl_s
        sig = sign(self.url_secret, image_id, expires, tenant)
        return f"{base}/v1/images/{image_id}/content?expires={expires}&signature={sig}", expires

    def video_object(self, job: Job) -> dict:
        job = self.live_view(job)
        s = job.spec
        status = job.status
        error = None
        if status == "cancelled":  # not in the OpenAI status set (queued, in_progress, completed, failed)
            status = "failed"
            error = {"code": "cancelled", "message": job.error or "cancelled"}
        elif status == "failed" and job.error:
            error = {"code": job.error_code or "failed", "message": job.error}
        return {
            "id": job.id,
            "object": "video",
            "created_at": int(job.created_at),
            "completed_at": int(job.completed_at) if job.completed_at and job.status == "completed" else None,
            "expires_at": None,
            "model": s.model,
            "status": status,
            "progress": job.progress if job.status != "completed" else 100,
            "seconds": clip_seconds(s.frames, self.settings.fps),  # the clip's length, not the request's
            "size": s.size,
            "prompt": s.prompt,
            "error": error,
            "remixed_from_video_id": None,
            # genserve extensions
            "num_frames": s.frames,
            "num_inference_steps": s.steps,
            "steps_done": job.steps_done,
            "seed": s.seed,
            "deadline_at": round(job.deadline_at, 3) if job.deadline_at else None,  # ms: deadlines are short
            "deadline_s": round(job.deadline_at - job.created_at, 4) if job.deadline_at else None,
            "latency_s": round(job.completed_at - job.created_at, 4)
            if job.completed_at and job.status == "completed" else None,
            "met_deadline": job.met_deadline,
        }


def clip_seconds(frames: int, fps: int) -> str:
    """frames / fps as the string the openai client's `seconds` field expects, e.g. 17 at 8 fps -> "2.125"."""
    return f"{frames / fps:.4f}".rstrip("0").rstrip(".")


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)



def service(request: Request) -> JobService:
    """FastAPI dependency: the app's job service."""
    return request.app.state.server
