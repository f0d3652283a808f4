"""The simulated executor: every command occupies its GPUs for the profiled time on the virtual clock.

Costs (all from the Profile):
* image batch of b: one GPU for T_img(b, res) = text encode + steps x step(b) + decode(b);
* video step at degree p: its p GPUs for T_step(res, frames, p), plus, before the step, the text encode (first
  step), the resume cost (after a pause) or the reconfigure cost (after a move / SP change) at degree p;
* pause: the leader GPU for pause_s; VAE decode: the leader for decode_s.
Commands on a GPU run in issue order: work starts at max(now, when the GPU's earlier work ends).

Multi-step runs (`run_step(..., count=n)`, used when the controller coalesces steps) emit a single final
StepDone at the end of the run; `truncate` moves that end to the boundary of the step running now (the pending
event is cancelled and a new one scheduled). The optional execution log (`log=True`) records every interval,
for tests and plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from genserve.core.events import BatchDone, Event, StepDone, VideoDone
from genserve.core.request import Request
from genserve.core.snapshot import ClusterSpec
from genserve.executors.base import StepSetup

_FRESH = StepSetup.FRESH
_RESUME = StepSetup.RESUME
_RECONFIGURE = StepSetup.RECONFIGURE


@dataclass(frozen=True, slots=True)
class Interval:
    """One piece of work on one GPU: [start, end)."""

    gpu: int
    start: float
    end: float
    kind: str  # "image" | "step" | "decode" | "pause"
    request_ids: tuple[str, ...]


def _event(cls, **fields):
    """An event built without the frozen dataclass's per-field setattr: the simulator makes one per step run,
    batch and decode, with every field given and right by construction."""
    ev = object.__new__(cls)
    ev.__dict__.update(fields)
    return ev


class _Run:
    __slots__ = ("gpus", "start", "first", "step_s", "step", "count", "handle", "log_at", "end")

    def __init__(self, gpus, start, first, step_s, step, count, handle, log_at, end) -> None:
        self.end = end  # when the whole run ends (exactly as scheduled)
        self.gpus = gpus
        self.start = start  # when the first step (with its setup) began
        self.first = first  # duration of the first step, setup included
        self.step_s = step_s  # duration of every later step
        self.step = step  # index of the first step
        self.count = count
        self.handle = handle  # the heap entry of the pending StepDone (for cancellation)
        self.log_at = log_at  # index of this run's intervals in the log (or -1)


class SimExecutor:
    """Executor on a virtual clock. `schedule(time, event)` puts an event on the driver's heap and returns a
    handle (a mutable heap entry whose last item the driver skips when it is None)."""

    supports_multi_step = True

    def __init__(self, profile, cluster: ClusterSpec, clock, schedule: Callable[[float, Event], list],
                 log: bool = False, commands: list | None = None) -> None:
        self.profile = profile
        self.cmd_log = commands  # when a list: (kind, request ids, gpus, setup, source) per command (fidelity bench)
        self.cluster = cluster
        self.clock = clock
        self.schedule = schedule
        self.emit: Callable[[Event], None] | None = None
        self.ready = [0.0] * cluster.num_gpus  # when each GPU finishes the work issued so far
        self.busy_s = [0.0] * cluster.num_gpus  # GPU-seconds of work per GPU
        self.log: list[Interval] | None = [] if log else None
        self.commands = 0
        self._runs: dict[str, _Run] = {}
        self._costs: dict[str, tuple[float, float, float]] = {}  # model -> (dispatch, busy - 1, busy decode - 1)

    def _engine_costs(self, model: str) -> tuple[float, float, float]:
        """The optional engine costs of `model` (all 0.0 for profiles without them), looked up once."""
        c = self._costs.get(model)
        if c is None:
            p = self.profile
            c = self._costs[model] = (p.dispatch_cost(model), p.busy_factor(model) - 1.0,
                                      p.busy_factor(model, True) - 1.0)
        return c

    def attach(self, emit: Callable[[Event], None]) -> None:
        self.emit = emit

    def _occupy(self, gpus: Sequence[int], duration: float, kind: str, ids: tuple[str, ...],
                holder: int | None = None, hand_s: float = 0.0, slow: float = 0.0) -> tuple[float, float]:
        now = self.clock.now()
        ready = self.ready
        start = now
        for g in gpus:
            if ready[g] > start:
                start = ready[g]
        if holder is not None:  # the state comes from a GPU outside the group: it hands it over once its queue is done
            if ready[holder] > start:
                start = ready[holder]
            ready[holder] = start + hand_s
            self.busy_s[holder] += hand_s
        if slow:
            duration *= self._slowdown(gpus, start, slow)
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

    def _slowdown(self, gpus: Sequence[int], start: float, slow: float) -> float:
        """Shared cores (profile busy_factor): 1 + (factor - 1) * (other devices busy at `start`) / (n - 1)."""
        ready = self.ready
        n = len(ready)
        if n < 2:
            return 1.0
        others = sum(1 for g in range(n) if ready[g] > start and g not in gpus)
        return 1.0 + slow * others / (n - 1)

    def start_batch(self, requests: Sequence[Request], gpu: int) -> None:
        r = requests[0]
        dur = self.profile.image_latency(r.model, r.width, r.height, len(requests), r.steps)
        dispatch, slow, _ = self._engine_costs(r.model)
        if dispatch:
            dur += dispatch
        ids = tuple(q.id for q in requests)
        if self.cmd_log is not None:
            self.cmd_log.append(("batch", ids, (gpu,), "", None))
        start, end = self._occupy((gpu,), dur, "image", ids, slow=slow)
        self.schedule(end, _event(BatchDone, time=end, request_ids=ids, gpu=gpu, duration=end - start))

    def run_step(self, request: Request, step: int, gpus: tuple[int, ...], setup: StepSetup,
                 source_gpu: int | None = None, count: int = 1) -> None:
        r = request
        prof = self.profile
        step_s = prof.video_step(r.model, r.width, r.height, r.frames, len(gpus))
        dispatch, slow, _ = self._engine_costs(r.model)
        if dispatch:
            step_s += dispatch  # every step is a command of its own on a live engine
        first = step_s
        holder = None
        hand = 0.0
        if setup is _FRESH:
            first += prof.text_encode(r.model)
        elif source_gpu is not None and source_gpu not in gpus and \
                (hand := prof.handover_cost(r.model, len(gpus))) is not None:
            first += hand  # measured handovers (profiles with handover_s): the holder's queue is waited for
            holder = source_gpu
        elif setup is _RESUME:
            first += prof.resume_cost(r.model, len(gpus))
        elif setup is _RECONFIGURE:
            first += prof.reconfigure_cost(r.model, len(gpus))
        if self.cmd_log is not None:
            self.cmd_log.append(("step", (r.id,), tuple(gpus), setup.value, source_gpu))
        if slow:  # scale the run up front, so that a multi-step run's boundaries stay start + first + i * step_s
            t = max([self.clock.now()] + [self.ready[g] for g in gpus] +
                    ([self.ready[holder]] if holder is not None else []))
            f = self._slowdown(gpus, t, slow)
            first *= f
            step_s *= f
        log_at = len(self.log) if self.log is not None else -1
        start, end = self._occupy(gpus, first + (count - 1) * step_s, "step", (r.id,), holder, hand or 0.0)
        last = step + count - 1
        handle = self.schedule(end, _event(StepDone, time=end, request_id=r.id, step=last, gpus=gpus,
                                           duration=step_s if count > 1 else end - start, final=True))
        if count > 1:
            self._runs[r.id] = _Run(gpus, start, first, step_s, step, count, handle, log_at, end)
        else:
            self._runs.pop(r.id, None)

    def truncate(self, request: Request) -> None:
        """End the multi-step run of `request` at the boundary of the step running now (or the next boundary
        at or after now)."""
        run = self._runs.pop(request.id, None)
        if run is None:
            return
        now = self.clock.now()
        # boundaries: start + first + i * step_s for i = 0..count-1; pick the first at or after now
        b0 = run.start + run.first
        if now <= b0:
            i = 0
        else:
            i = int((now - b0) / run.step_s)
            if b0 + i * run.step_s < now:
                i += 1
        end = b0 + i * run.step_s
        old_end = run.end
        if i >= run.count - 1 or end >= old_end:
            return  # already in its last step
        run.handle[-1] = None  # cancel the pending StepDone
        rid = request.id
        self.schedule(end, _event(StepDone, time=end, request_id=rid, step=run.step + i, gpus=run.gpus,
                                  duration=run.step_s, final=True))
        saved = old_end - end
        for g in run.gpus:  # nothing else was queued behind the run: the controller holds these GPUs
            if self.ready[g] > end:
                self.ready[g] = end
            self.busy_s[g] -= saved
        if self.log is not None and run.log_at >= 0:
            for k in range(run.log_at, run.log_at + len(run.gpus)):
                iv = self.log[k]
                self.log[k] = Interval(iv.gpu, iv.start, end, iv.kind, iv.request_ids)

    def pause(self, request: Request, gpu: int) -> None:
        self._runs.pop(request.id, None)
        self._occupy((gpu,), self.profile.pause_cost(request.model), "pause", (request.id,))

    def decode(self, request: Request, gpu: int) -> None:
        r = request
        self._runs.pop(r.id, None)
        dur = self.profile.video_decode(r.model, r.width, r.height, r.frames)
        dispatch, _, slow = self._engine_costs(r.model)
        if dispatch:
            dur += dispatch
        start, end = self._occupy((gpu,), dur, "decode", (r.id,), slow=slow)
        self.schedule(end, _event(VideoDone, time=end, request_id=r.id, gpu=gpu))

    def discard(self, request: Request, gpus: tuple[int, ...]) -> None:
        self._runs.pop(request.id, None)

    def close(self) -> None:
        self._runs.clear()
