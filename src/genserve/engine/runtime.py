"""The real-clock engine: the Controller in one background thread over any Executor (`ServingEngine`).

    engine = make_engine("sim", profile="tiny-cpu", gpus=2)        # simulated devices on the wall clock
    engine = make_engine("local", profile="tiny-cpu", devices=...)  # worker processes with real models
    engine.start(); engine.submit(request, on_update); ...; engine.close()

Threads:
* the engine thread owns the Controller: it alone calls submit / cancel / on_event / wake / flush. Other threads
  talk to it through an inbox queue (submissions, cancellations, executor events emitted from worker threads).
  It waits on the inbox with a timeout equal to the next due time (a simulated step's end, or the controller's
  `wake_at`).
* the notifier thread runs the `on_update` callbacks (so a slow callback, e.g. a database write, never delays
  scheduling) and finds or writes output files for finished requests.

The simulated executor (`SimExecutor`) schedules its events at profiled times; here they go on a timer heap read
against the wall clock, so "sim" serves real HTTP traffic with realistic timing and no models. It makes no output
files; with `placeholder_outputs` the engine writes a gradient PNG per image (stdlib only) and, when imageio-ffmpeg
is installed, a short MP4 per video, so the whole API can be exercised without models.

Outputs of real executors: after an image batch or a video decode, the engine asks the executor's optional
`outputs_for(request_id) -> tuple[str, ...]`, then its `outputs` dict (request id -> path, as LocalExecutor
keeps it), else looks for `<output_dir>/<request id>.png|.mp4`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Callable, Sequence

from genserve.core.errors import GenServeError, ValidationError
from genserve.core.events import BatchDone, Event, Failed, StepDone, VideoDone
from genserve.core.request import Request, RequestStatus
from genserve.core.snapshot import ClusterSpec
from genserve.engine.api import EngineStats, RequestUpdate, UpdateCallback
from genserve.engine.joblog import JobLog

log = logging.getLogger("genserve.engine")

ENGINE_KINDS = ("sim", "local", "ray")
_KEEP_FINISHED = 20000  # finished requests whose last update `status()` still answers


IDLE_RETRY_S = 1.0  # a round this long after a plan left work waiting on an idle cluster (Controller.idle_retry_s)

class EngineStopped(RuntimeError):
    """The engine is not running (never started, closed, or stopped by an internal error)."""


def _gradient(width: int, height: int, r_of_x, g_of_y, b: int):
    """An RGB uint8 frame (height, width, 3): red varies along x, green along y, blue constant (numpy: the
    notifier thread builds these for every placeholder output)."""
    import numpy as np

    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:, :, 0] = r_of_x(np.arange(width))[None, :] % 256
    img[:, :, 1] = g_of_y(np.arange(height))[:, None] % 256
    img[:, :, 2] = b % 256
    return img


def placeholder_png(width: int, height: int, seed: int) -> bytes:
    """A deterministic gradient PNG standing in for a real image when the executor makes none."""
    import numpy as np

    r0, g0, b0 = (seed * 97) % 256, (seed * 57 + 80) % 256, (seed * 31 + 160) % 256
    img = _gradient(width, height, lambda x: r0 + 255 * x // max(1, width - 1),
                    lambda y: g0 + 255 * y // max(1, height - 1), b0)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), img.reshape(height, 3 * width)], axis=1)  # filter 0

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + \
        chunk(b"IEND", b"")


def placeholder_mp4(path: Path, width: int, height: int, frames: int, seed: int, fps: int = 8) -> bool:
    """Write a short moving-gradient MP4 with imageio-ffmpeg when it is installed; False when it is not."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return False
    w, h = max(16, width + width % 2), max(16, height + height % 2)
    tmp = path.with_name(f".tmp-{path.name}")
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, output_params=["-f", "mp4"], quality=None,
                                         ffmpeg_log_level="error")
    writer.send(None)
    base = (seed * 37) % 256
    for f in range(frames):
        writer.send(_gradient(w, h, lambda x: base + 8 * f + 255 * x // w, lambda y: 255 * y // h,
                              base + 16 * f).tobytes())
    writer.close()
    os.replace(tmp, path)
    return True


class _Tracked:
    __slots__ = ("request", "callback", "steps_done", "cancel_requested", "error")

    def __init__(self, request: Request, callback: UpdateCallback | None) -> None:
        self.request = request
        self.callback = callback
        self.steps_done = 0
        self.cancel_requested = False
        self.error: str | None = None  # the executor's reason for the last failure


class _ExecutorProxy:
    """Forwards commands to the real executor and notes which requests each one touches (so the engine
    publishes updates for exactly those)."""

    def __init__(self, inner, touched: set[str], jobs: JobLog, steps_done: Callable[[str], int]) -> None:
        self.inner = inner
        self._touched = touched
        self._jobs = jobs  # the job log sees starts, pauses, resumes and SP changes here
        self._steps_done = steps_done

    def attach(self, emit) -> None:
        self.inner.attach(emit)

    def start_batch(self, requests, gpu):
        for r in requests:
            self._touched.add(r.id)
        self._jobs.batch(requests, gpu)
        self.inner.start_batch(requests, gpu)

    def run_step(self, request, step, gpus, setup, source_gpu=None):
        self._touched.add(request.id)
        self._jobs.step(request, step, gpus, setup)
        self.inner.run_step(request, step, gpus, setup, source_gpu)

    def pause(self, request, gpu):
        self._touched.add(request.id)
        self._jobs.paused(request, gpu, self._steps_done(request.id))
        self.inner.pause(request, gpu)

    def decode(self, request, gpu):
        self._touched.add(request.id)
        self.inner.decode(request, gpu)

    def discard(self, request, gpus):
        self._touched.add(request.id)
        self.inner.discard(request, gpus)

    def close(self):
        self.inner.close()


_STOP = object()


class Engine:
    """`ServingEngine` over the Controller on the wall clock. See the module docstring.

    make_executor(clock, schedule) -> Executor: `schedule(t, event)` delivers `event` at clock time t (what the
    simulated executor uses); live executors ignore it and emit events from their own threads.
    """

    def __init__(self, make_executor: Callable[[Any, Callable[[float, Event], None]], Any], *, policy,
                 cluster: ClusterSpec, profile, kind: str = "custom", output_dir: str | Path | None = None,
                 placeholder_outputs: bool = False, fps: int = 8, strict: bool = False,
                 online_correction=None) -> None:
        from genserve.engine.clock import WallClock
        from genserve.engine.controller import Controller

        self.kind = kind
        self.cluster = cluster
        self.policy = policy
        self.output_dir = Path(output_dir) if output_dir is not None else None
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.placeholder_outputs = placeholder_outputs
        self.fps = fps
        self.clock = WallClock()
        self._timers: list = []
        self._seq = itertools.count()
        self._touched: set[str] = set()
        self.executor = make_executor(self.clock, self._schedule)
        self.jobs = JobLog()
        self._proxy = _ExecutorProxy(self.executor, self._touched, self.jobs,
                                     lambda rid: getattr(self._live.get(rid), "steps_done", 0))
        self.ctl = Controller(policy, cluster, profile, self._proxy, self.clock, strict=strict,
                              on_finish=self._on_finish, online_correction=online_correction,
                              idle_retry_s=IDLE_RETRY_S)
        self.executor.attach(self._emit)  # events from executor threads go through the inbox
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._notify: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live: dict[str, _Tracked] = {}
        self._last: OrderedDict[str, RequestUpdate] = OrderedDict()
        self._finished: dict[str, dict[str, int]] = {}
        self._slo_met: dict[str, int] = {}
        self._step_seconds: list[float] = []
        self._finished_ids: deque[str] = deque()
        # seconds from submit() to the controller's admission on the engine thread (queue hand-off), recent ones
        self.handoff_s: deque[float] = deque(maxlen=100_000)
        self._busy_s = [0.0] * cluster.num_gpus
        self._thread: threading.Thread | None = None
        self._notifier: threading.Thread | None = None
        self._started_at: float | None = None
        self._running = False
        self._closed = False
        self.error: str | None = None
        self.loop_iterations = 0

    # ---- ServingEngine ---------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.clock.now()

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            if self._closed:
                raise EngineStopped("this engine was closed; make a new one")
            self._running = True
        starter = getattr(self.executor, "start", None)
        if callable(starter):  # live executors start their workers (and load models) here
            try:
                starter()
            except BaseException:
                with self._lock:
                    self._running = False
                raise
        self._started_at = self.clock.now()
        self._notifier = threading.Thread(target=self._notify_loop, name="genserve-notify", daemon=True)
        self._notifier.start()
        self._thread = threading.Thread(target=self._loop, name="genserve-engine", daemon=True)
        self._thread.start()

    def submit(self, request: Request, on_update: UpdateCallback | None = None) -> None:
        if not self._running:
            raise EngineStopped(f"the engine is not running{': ' + self.error if self.error else ''}")
        with self._lock:
            if request.id in self._live or request.id in self._last:
                raise ValidationError(f"duplicate request id {request.id!r}")
        self.ctl.validate(request)  # checks (it only records shapes found valid); safe from this thread
        with self._lock:
            self._live[request.id] = _Tracked(request, on_update)
            self._last[request.id] = RequestUpdate(request.id, RequestStatus.QUEUED, 0, request.steps)
        self._inbox.put(("submit", (request, time.perf_counter())))

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            t = self._live.get(request_id)
            if t is None or t.request.status.terminal or t.cancel_requested:
                return t is not None and t.cancel_requested and not t.request.status.terminal
            t.cancel_requested = True
        self._inbox.put(("cancel", request_id))
        return True

    def status(self, request_id: str) -> RequestUpdate | None:
        with self._lock:
            return self._last.get(request_id)

    def stats(self) -> EngineStats:
        now = self.clock.now()
        with self._lock:
            queued = {"image": 0, "video": 0}
            running = {"image": 0, "video": 0}
            for t in self._live.values():
                st = t.request.status
                m = t.request.modality.value
                if st is RequestStatus.QUEUED:
                    queued[m] += 1
                elif st in (RequestStatus.RUNNING, RequestStatus.PAUSED):
                    running[m] += 1
            finished = {m: dict(v) for m, v in self._finished.items()}
            slo = dict(self._slo_met)
            steps, self._step_seconds = self._step_seconds, []
        busy = list(getattr(self.executor, "busy_s", None) or self._busy_s)
        elapsed = max(1e-9, now - (self._started_at if self._started_at is not None else now))
        share = [min(1.0, b / elapsed) for b in busy] if self._started_at is not None else [0.0] * len(busy)
        return EngineStats(queued=queued, running=running, finished=finished, slo_met=slo,
                           preemptions=self.ctl.preemptions, sp_changes=self.ctl.sp_changes,
                           gpu_busy_share=share, step_seconds=steps, profile_correction=self._correction())

    @property
    def profile(self):
        """The profile the engine plans with (without its online correction)."""
        return self.ctl.base_profile

    def set_profile(self, profile) -> None:
        """Plan with another profile from now on (Controller.set_profile)."""
        with self._lock:
            self.ctl.set_profile(profile)

    def _correction(self) -> dict[str, float]:
        corr = self.ctl.correction
        for _ in range(3):  # the engine thread may add a key while we copy (read from the server's threads)
            try:
                return corr.factors() if corr is not None else {}
            except RuntimeError:
                continue
        return {}

    def close(self, drain: bool = False) -> None:
        if self._closed:
            return
        if drain and self._running:
            while True:
                with self._lock:
                    if not self._live or self.error:
                        break
                time.sleep(0.01)
        self._closed = True
        self._running = False
        self._inbox.put((_STOP, None))
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._notify.put(_STOP)
        if self._notifier is not None:
            self._notifier.join(timeout=30)
        try:
            self.executor.close()
        except Exception:  # noqa: BLE001 - closing must not raise
            log.exception("executor close failed")

    # ---- helpers for callers ---------------------------------------------------------------------------------
    def wait(self, request_id: str, timeout: float | None = None) -> RequestUpdate | None:
        """Block until the request is terminal (tests, demos)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            u = self.status(request_id)
            if u is not None and u.status.terminal and (u.status is not RequestStatus.DONE or
                                                         request_id not in self._live):
                return u
            if end is not None and time.monotonic() > end:
                return u
            time.sleep(0.002)

    # ---- engine thread -------------------------------------------------------------------------------------
    def _schedule(self, t: float, ev: Event) -> None:  # called by the simulated executor, on the engine thread
        heapq.heappush(self._timers, (t, next(self._seq), ev))

    def _emit(self, ev: Event) -> None:  # called by live executors, from any thread
        self._inbox.put(("event", ev))

    def _on_finish(self, rec) -> None:  # the controller's on_finish, on the engine thread
        with self._lock:
            by = self._finished.setdefault(rec.modality, {})
            by[rec.status] = by.get(rec.status, 0) + 1
            if rec.met_slo:
                self._slo_met[rec.modality] = self._slo_met.get(rec.modality, 0) + 1
        self._touched.add(rec.id)

    def _track(self, ev: Event) -> None:
        tp = type(ev)
        if tp is StepDone:
            t = self._live.get(ev.request_id)
            if t is not None:
                t.steps_done = ev.step + 1
            self._touched.add(ev.request_id)
            with self._lock:
                self._step_seconds.append(ev.duration)
                if len(self._step_seconds) > 10000:
                    del self._step_seconds[:5000]
            for g in ev.gpus:
                self._busy_s[g] += ev.duration
        elif tp is BatchDone:
            self._touched.update(ev.request_ids)
            self._busy_s[ev.gpu] += ev.duration
        elif tp is VideoDone:
            self._touched.add(ev.request_id)
        elif tp is Failed:
            self._touched.update(ev.request_ids)
            for rid in ev.request_ids:
                t = self._live.get(rid)
                if t is not None:
                    t.error = ev.reason
                    if t.request.is_video and ev.retryable:
                        t.steps_done = 0
                if ev.retryable:
                    self.jobs.requeued(rid, ev.reason)

    def _handle(self, kind, payload) -> None:
        ctl = self.ctl
        if kind == "submit":
            request, t_put = payload
            try:
                ctl.submit(request)
            except GenServeError as e:  # raced with a duplicate, or changed state: fail it visibly
                self._fail_one(request.id, str(e))
                return
            self.handoff_s.append(time.perf_counter() - t_put)
            self._touched.add(request.id)
            self.jobs.admitted(request)
        elif kind == "cancel":
            if not ctl.cancel(payload):
                t = self._live.get(payload)
                if t is not None and not t.request.status.terminal:
                    return
            self._touched.add(payload)
        elif kind == "event":
            self._track(payload)
            ctl.on_event(payload)

    def _loop(self) -> None:
        inbox = self._inbox
        timers = self._timers
        clock = self.clock
        ctl = self.ctl
        try:
            while True:
                due = timers[0][0] if timers else None
                w = ctl.wake_at
                if w is not None and (due is None or w < due):
                    due = w
                timeout = None if due is None else max(0.0, due - clock.now())
                try:
                    item = inbox.get(timeout=timeout) if timeout is None or timeout > 0 else inbox.get_nowait()
                except queue.Empty:
                    item = None
                stop = False
                while item is not None:
                    if item[0] is _STOP:
                        stop = True
                    else:
                        self._handle(*item)
                    try:
                        item = inbox.get_nowait()
                    except queue.Empty:
                        item = None
                if stop:
                    return
                now = clock.now()
                while timers and timers[0][0] <= now:
                    ev = heapq.heappop(timers)[2]
                    self._track(ev)
                    ctl.on_event(ev)
                if ctl.wake_at is not None and ctl.wake_at <= now:
                    ctl.wake()
                ctl.flush()
                self.loop_iterations += 1
                if self._touched:
                    self._publish()
        except BaseException as e:  # noqa: BLE001 - a broken controller must not leave requests hanging
            log.exception("engine thread stopped by an internal error")
            self.error = f"{type(e).__name__}: {e}"
            self._running = False
            with self._lock:
                ids = list(self._live)
            for rid in ids:
                self._fail_one(rid, f"engine error: {self.error}")

    def _fail_one(self, rid: str, message: str) -> None:
        with self._lock:
            t = self._live.pop(rid, None)
        if t is None:
            return
        u = RequestUpdate(rid, RequestStatus.FAILED, t.steps_done, t.request.steps, error=message,
                          finished_at=self.clock.now(), met_deadline=False)
        self.jobs.ended(t.request, RequestStatus.FAILED, t.steps_done, u.finished_at, False, message)
        with self._lock:
            self._last[rid] = u
        self._notify.put((t, u))

    def _publish(self) -> None:
        touched = list(self._touched)
        self._touched.clear()
        recs = self.ctl.records
        for rid in touched:
            t = self._live.get(rid)
            if t is None:
                continue
            req = t.request
            st = req.status
            if st is RequestStatus.DONE:
                steps = req.steps
            elif req.is_video:
                steps = t.steps_done
            else:
                steps = 0
            if st.terminal:
                rec = recs.get(rid)
                u = RequestUpdate(rid, st, steps, req.steps,
                                  error=None if st is RequestStatus.DONE else
                                  ("cancelled" if st is RequestStatus.CANCELLED else
                                   t.error or "generation failed"),
                                  finished_at=rec.finish if rec else self.clock.now(),
                                  met_deadline=bool(rec.met_slo) if rec else None)
                self.jobs.ended(req, st, steps, u.finished_at, bool(u.met_deadline), u.error)
                self._forget_later(rid)
                with self._lock:
                    self._live.pop(rid, None)
                    if st is not RequestStatus.DONE:
                        self._last[rid] = u  # DONE is recorded by the notifier once outputs exist
                        self._trim()
            else:
                u = RequestUpdate(rid, st, steps, req.steps)
                with self._lock:
                    prev = self._last.get(rid)
                    if prev == u:
                        continue
                    self._last[rid] = u
            self._notify.put((t, u))

    def _forget_later(self, rid: str) -> None:
        """Bound the controller's memory on a long-running server: it keeps every request and record it saw, so
        drop the oldest finished ones beyond `_KEEP_FINISHED` (engine thread only)."""
        fin = self._finished_ids
        fin.append(rid)
        if len(fin) > _KEEP_FINISHED:
            old = fin.popleft()
            req = self.ctl.requests.get(old)
            if req is not None and req.status.terminal:
                del self.ctl.requests[old]
                self.ctl.records.pop(old, None)

    def _trim(self) -> None:
        while len(self._last) > _KEEP_FINISHED + len(self._live):
            rid, u = next(iter(self._last.items()))
            if not u.status.terminal:
                self._last.move_to_end(rid)
                break
            self._last.popitem(last=False)

    # ---- notifier thread ---------------------------------------------------------------------------------------
    def _outputs(self, req: Request) -> tuple[str, ...]:
        finder = getattr(self.executor, "outputs_for", None)
        if finder is not None:
            try:
                found = tuple(str(p) for p in (finder(req.id) or ()))
            except Exception:  # noqa: BLE001
                log.exception("outputs_for(%s) failed", req.id)
                found = ()
            if found:
                return found
        table = getattr(self.executor, "outputs", None)  # LocalExecutor: request id -> written file
        if isinstance(table, dict) and table.get(req.id):
            return (str(table[req.id]),)
        if self.output_dir is None:
            return ()
        ext = "mp4" if req.is_video else "png"
        path = self.output_dir / f"{req.id}.{ext}"
        if path.is_file():
            return (str(path),)
        if not self.placeholder_outputs:
            return ()
        try:
            if req.is_video:
                return (str(path),) if placeholder_mp4(path, req.width, req.height, req.frames, req.seed,
                                                       self.fps) else ()
            tmp = path.with_name(f".tmp-{path.name}")
            tmp.write_bytes(placeholder_png(req.width, req.height, req.seed))
            os.replace(tmp, path)
            return (str(path),)
        except Exception:  # noqa: BLE001
            log.exception("could not write a placeholder output for %s", req.id)
            return ()

    def _notify_loop(self) -> None:
        while True:
            item = self._notify.get()
            if item is _STOP:
                return
            t, u = item
            if u.status is RequestStatus.DONE:
                outs = self._outputs(t.request)
                if outs:
                    u = RequestUpdate(u.request_id, u.status, u.steps_done, u.steps_total, u.error, outs,
                                      u.finished_at, u.met_deadline)
                with self._lock:
                    self._last[u.request_id] = u
                    self._trim()
            if t.callback is not None:
                try:
                    t.callback(u)
                except Exception:  # noqa: BLE001 - a callback bug must not stop notifications
                    log.exception("on_update callback failed for %s", u.request_id)


def _make_policy(name: str, options=None):
    from genserve.scheduling.registry import make_policy

    return make_policy(name, options)


def make_engine(kind: str = "sim", *, profile: str | Any = "tiny-cpu", policy: str | Any = "genserve",
                gpus: int | None = None, gpus_per_node: int = 8, sp_degrees: Sequence[int] | None = None,
                options=None, output_dir: str | Path | None = None, placeholder_outputs: bool = False,
                devices: Sequence[str] | None = None, fps: int = 8, strict: bool = False,
                online_correction: bool | None = None, **executor_kw) -> Engine:
    """Build an engine.

    kind "sim": the simulated executor timed from `profile` on the wall clock over `gpus` virtual GPUs (no models;
    `placeholder_outputs` writes stand-in PNG/MP4 files). kind "local": worker processes running real diffusers
    models on `devices` (e.g. ["cpu", "cpu"] or ["cuda:0", "cuda:1"]); imported lazily (torch). kind "ray": the
    same workers as Ray actors (RayExecutor, same arguments; `address="auto"` joins a running Ray cluster).

    online_correction: correct the profile's step and batch estimates from the measured durations
    (profiles/online.py; True, False or an OnlineCorrection). Default: on for the real engines, off for "sim"
    (its executor follows the profile, so correction would change nothing)."""
    from genserve.profiles import Profile

    if kind not in ENGINE_KINDS:
        raise ValidationError(f"unknown engine kind {kind!r}; choose one of {', '.join(ENGINE_KINDS)}")
    prof = profile if isinstance(profile, Profile) else Profile.load(profile)
    pol = _make_policy(policy, options) if isinstance(policy, str) else policy
    if kind == "sim":
        n = gpus or 2
        cluster = ClusterSpec(n, min(gpus_per_node, n) if n < gpus_per_node else gpus_per_node,
                              tuple(sp_degrees) if sp_degrees else _degrees(prof))

        def make_sim(clock, schedule):
            from genserve.executors.sim import SimExecutor

            return SimExecutor(prof, cluster, clock, schedule)

        return Engine(make_sim, policy=pol, cluster=cluster, profile=prof, kind="sim", output_dir=output_dir,
                      placeholder_outputs=placeholder_outputs, fps=fps, strict=strict,
                      online_correction=online_correction)
    try:
        from genserve.executors.local import LocalExecutor
    except ImportError as e:
        raise ValidationError(
            "the local engine (genserve.executors.local: worker processes with real models) is not available "
            f"in this install ({e}); use the simulated engine (--engine sim) instead") from None
    devs = list(devices) if devices else ["cpu"] * (gpus or 2)
    n = len(devs)
    device = "cuda" if any(str(d).startswith("cuda") for d in devs) else "cpu"
    executor_cls = LocalExecutor
    if kind == "ray":
        try:
            import ray  # noqa: F401 - only to fail early with a clear message

            from genserve.executors.ray import RayExecutor
        except ImportError as e:
            raise ValidationError(f"the ray engine needs Ray installed ({e}); use --engine local instead") from None
        executor_cls = RayExecutor
        if device == "cpu" and not executor_kw.get("address"):
            # a local Ray on a CPU machine: one logical GPU per worker, so that Ray places one actor per slot
            executor_kw["ray_init"] = {"num_gpus": n, **dict(executor_kw.get("ray_init") or {})}
    per_node = min(gpus_per_node, n)
    degrees = tuple(sp_degrees) if sp_degrees else _degrees(prof)
    cluster = ClusterSpec(n, per_node, degrees)
    d = prof.doc.defaults
    work = Path(output_dir) / ".work" if output_dir is not None else None

    def make_local(clock, schedule):
        return executor_cls(n, device=device, image_model=d.image_model, video_model=d.video_model,
                            output_dir=work, clock=clock, gpus_per_node=per_node, sp_degrees=degrees, fps=fps,
                            **executor_kw)

    return Engine(make_local, policy=pol, cluster=cluster, profile=prof, kind=kind, output_dir=output_dir,
                  placeholder_outputs=False, fps=fps, strict=strict,
                  online_correction=True if online_correction is None else online_correction)


def _degrees(prof) -> tuple[int, ...]:
    """SP degrees profiled for every video model (1 always)."""
    common: set[int] | None = None
    for m in prof.video_models:
        ds = set(prof.degrees(m))
        common = ds if common is None else common & ds
    return tuple(sorted(common or {1}))
