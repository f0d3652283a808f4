"""The simulated executor: every command occupies its GPUs for the profiled time on the virtual clock.

Costs (all from the Profile):
* image batch of b: one GPU for T_img(b, res) = text encode + steps x step(b) + decode(b);
* video step at degree p: its p GPUs for T_step(res, frames, p), plus, before the step, the text encode (first
  step), the resume cost (after a pause) or the reconfigure cost (after a move / SP change) at degree p;
* pause: the leader GPU for pause_s; VAE decode: the leader for decode_s.
Commands on a GPU run in issue order: work starts at max(now, when the GPU's earlier work ends).
The optional execution log (`log=True`) records every interval, for tests and plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from genserve.core.events import BatchDone, Event, StepDone, VideoDone
from genserve.core.request import Request
from genserve.core.snapshot import ClusterSpec
from genserve.executors.base import StepSetup


@dataclass(frozen=True, slots=True)
class Interval:
    """One piece of work on one GPU: [start, end)."""

    gpu: int
    start: float
    end: float
    kind: str  # "image" | "step" | "decode" | "pause"
    request_ids: tuple[str, ...]


class SimExecutor:
    """Executor on a virtual clock. `schedule(time, event)` puts an event on the driver's heap."""

    def __init__(self, profile, cluster: ClusterSpec, clock, schedule: Callable[[float, Event], None],
                 log: bool = False) -> None:
        self.profile = profile
        self.cluster = cluster
        self.clock = clock
        self.schedule = schedule
        self.emit: Callable[[Event], None] | None = None
        self.ready = [0.0] * cluster.num_gpus  # when each GPU finishes the work issued so far
        self.busy_s = [0.0] * cluster.num_gpus  # GPU-seconds of work per GPU
        self.log: list[Interval] | None = [] if log else None
        self.commands = 0

    def attach(self, emit: Callable[[Event], None]) -> None:
        self.emit = emit

    def _occupy(self, gpus: Sequence[int], duration: float, kind: str, ids: tuple[str, ...]) -> tuple[float, float]:
        now = self.clock.now()
        ready = self.ready
        start = now
        for g in gpus:
            if ready[g] > start:
                start = ready[g]
        end = start + duration
        busy = self.busy_s
        for g in gpus:
            ready[g] = end
            busy[g] += duration
        if self.log is not None:
            for g in gpus:
                self.log.append(Interval(g, start, end, kind, ids))
        self.commands += 1
        return start, end

    def start_batch(self, requests: Sequence[Request], gpu: int) -> None:
        r = requests[0]
        dur = self.profile.image_latency(r.model, r.width, r.height, len(requests), r.steps)
        ids = tuple(q.id for q in requests)
        start, end = self._occupy((gpu,), dur, "image", ids)
        self.schedule(end, BatchDone(end, ids, gpu, end - start))

    def run_step(self, request: Request, step: int, gpus: tuple[int, ...], setup: StepSetup,
                 source_gpu: int | None = None) -> None:
        r = request
        p = len(gpus)
        prof = self.profile
        dur = prof.video_step(r.model, r.width, r.height, r.frames, p)
        if setup is StepSetup.FRESH:
            dur += prof.text_encode(r.model)
        elif setup is StepSetup.RESUME:
            dur += prof.resume_cost(r.model, p)
        elif setup is StepSetup.RECONFIGURE:
            dur += prof.reconfigure_cost(r.model, p)
        start, end = self._occupy(gpus, dur, "step", (r.id,))
        self.schedule(end, StepDone(end, r.id, step, gpus, end - start))

    def pause(self, request: Request, gpu: int) -> None:
        self._occupy((gpu,), self.profile.pause_cost(request.model), "pause", (request.id,))

    def decode(self, request: Request, gpu: int) -> None:
        r = request
        dur = self.profile.video_decode(r.model, r.width, r.height, r.frames)
        start, end = self._occupy((gpu,), dur, "decode", (r.id,))
        self.schedule(end, VideoDone(end, r.id, gpu))

    def discard(self, request: Request, gpus: tuple[int, ...]) -> None:
        return None

    def close(self) -> None:
        return None
