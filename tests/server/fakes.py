"""A small real-clock engine for server tests that do not need the controller: one FIFO per device slot,
fixed step time, placeholder outputs. It honours the ServingEngine protocol, including cancel at a step
boundary."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from genserve.core.errors import ValidationError
from genserve.core.request import Request, RequestStatus
from genserve.engine.api import EngineStats, RequestUpdate
from genserve.engine.runtime import placeholder_png


class FakeEngine:
    def __init__(self, output_dir: Path | None, step_s: float = 0.002, slots: int = 2) -> None:
        self.output_dir = output_dir
        self.step_s = step_s
        self.slots = slots
        self._t0 = time.monotonic()
        self._lock = threading.Condition()
        self._queue: list[tuple[Request, object]] = []
        self._state: dict[str, RequestUpdate] = {}
        self._cancel: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stop = False
        self.submitted: list[Request] = []
        self.finished: dict[str, dict[str, int]] = {}
        self.slo_met: dict[str, int] = {}
        self.started = False
        self.closed = False

    @property
    def now(self) -> float:
        return time.monotonic() - self._t0

    def start(self) -> None:
        self.started = True
        for _ in range(self.slots):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, request: Request, on_update=None) -> None:
        if "reject-me" in request.prompt:
            raise ValidationError("the engine refuses prompts that say reject-me")
        with self._lock:
            self.submitted.append(request)
            self._state[request.id] = RequestUpdate(request.id, RequestStatus.QUEUED, 0, request.steps)
            self._queue.append((request, on_update))
            self._lock.notify()

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            u = self._state.get(request_id)
            if u is None or u.status.terminal:
                return False
            self._cancel.add(request_id)
            for i, (r, cb) in enumerate(self._queue):
                if r.id == request_id:
                    del self._queue[i]
                    self._emit(r, cb, RequestUpdate(r.id, RequestStatus.CANCELLED, 0, r.steps, error="cancelled"))
                    break
            return True

    def status(self, request_id: str) -> RequestUpdate | None:
        with self._lock:
            return self._state.get(request_id)

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(queued={"image": sum(not r.is_video for r, _ in self._queue),
                                       "video": sum(r.is_video for r, _ in self._queue)},
                               running={"image": 0, "video": 0},
                               finished={k: dict(v) for k, v in self.finished.items()},
                               slo_met=dict(self.slo_met), gpu_busy_share=[0.5] * self.slots,
                               step_seconds=[self.step_s] * 3)

    def close(self, drain: bool = False) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        self.closed = True

    def _emit(self, r: Request, cb, u: RequestUpdate) -> None:
        self._state[r.id] = u
        if u.status.terminal:
            by = self.finished.setdefault(r.modality.value, {})
            by[u.status.value] = by.get(u.status.value, 0) + 1
            if u.met_deadline:
                self.slo_met[r.modality.value] = self.slo_met.get(r.modality.value, 0) + 1
        if cb is not None:
            cb(u)

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                r, cb = self._queue.pop(0)
                self._emit(r, cb, RequestUpdate(r.id, RequestStatus.RUNNING, 0, r.steps))
            for k in range(r.steps):
                time.sleep(self.step_s)
                with self._lock:
                    if self._stop:
                        return
                    if r.id in self._cancel:
                        self._emit(r, cb, RequestUpdate(r.id, RequestStatus.CANCELLED, k + 1, r.steps,
                                                        error="cancelled"))
                        break
                    self._emit(r, cb, RequestUpdate(r.id, RequestStatus.RUNNING, k + 1, r.steps))
            else:
                outputs = ()
                if self.output_dir is not None:
                    ext = "mp4" if r.is_video else "png"
                    p = Path(self.output_dir) / f"{r.id}.{ext}"
                    data = placeholder_png(r.width, r.height, r.seed) if not r.is_video else b"\x00\x00\x00\x18ftypmp42fake"
                    p.write_bytes(data)
                    outputs = (str(p),)
                with self._lock:
                    self._emit(r, cb, RequestUpdate(r.id, RequestStatus.DONE, r.steps, r.steps, outputs=outputs,
                                                    finished_at=self.now, met_deadline=self.now <= r.deadline))
