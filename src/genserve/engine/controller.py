"""The controller: the one control plane shared by the simulator and the live engine.

It holds every request and its life cycle, GPU ownership and per-video progress; it admits and cancels requests,
builds a `Snapshot`, asks the policy for a `Plan`, applies the plan through an `Executor`, and consumes the
executor's events. It never sleeps and never reads a wall clock: the driver owns the clock and the event flow.

Driving it (both engines do exactly this):

    ctl = Controller(policy, cluster, profile, executor, clock)
    ... on an arrival:   ctl.submit(request)
    ... on each event:   ctl.on_event(event)          # from the executor's emit callback (queued by the driver)
    ... then, once all events of this instant are in:  ctl.flush()   # runs a round if one is due
    ... if ctl.wake_at is not None: call ctl.wake() (then flush) when the clock reaches it

The simulator's loop does this on a virtual clock; the live engine does it with a wall clock, waiting on the
executor's event queue with a timeout of `wake_at - now`.

Rounds. A round (snapshot -> plan -> apply) runs on every arrival, completion, freed GPU, cancellation and
requested wake-up, and at video step boundaries as the policy asks through its optional `step_rounds`
attribute: "always" (default: every step boundary), "events_or_waiting" (every event, and step boundaries
only while a request is queued or paused: genserve), "events" (only the boundaries of videos the last plan
wanted to pause or move), "when_waiting" (only while a request is queued or paused: enough for preemptive
baselines) or "never" (non-preemptive policies: a step boundary changes nothing).
Events at the same instant are coalesced into one round.

Apply semantics (see also `genserve.scheduling.base.Policy`):
* A running video at a step boundary does what its action says now: CONTINUE runs the next step on the same
  GPUs; HOLD pauses it (state stays on its leader, the group is freed); RECONFIGURE moves it when every target
  GPU is free now (else it continues where it is and the next round re-decides).
* A running video that is mid-step ignores its action: the step cannot be interrupted, and a new round at its
  step boundary re-decides (the policy will say again what it wants).
* START, RESUME and image batches run only when all their GPUs are free now; otherwise they wait for a later
  round (every event that frees a GPU causes one).
* A decoding video keeps its GPU; its action must be CONTINUE.
* A plan that double-books a GPU, names an unknown request, or gives an action the request's state cannot take
  raises `PlanError` before any state changes. In strict mode every plan is also checked with
  `plan_violations` (tests turn it on).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from genserve.core.errors import GenServeError, ProfileError, ValidationError
from genserve.core.events import Arrival, BatchDone, Event, Failed, StepDone, VideoDone
from genserve.core.plan import Action, ActionKind, Plan
from genserve.core.request import Modality, Request, RequestStatus
from genserve.core.snapshot import ClusterSpec, ImageView, Snapshot, VideoView
from genserve.engine.scope import (assigned_images, fast_snapshot, gpu_map, lift_plan, renumbered_views,
                                   scoped_views, sub_cluster)
from genserve.executors.base import Executor, StepSetup

NEG_INF = float("-inf")
_INF = float("inf")
_EPS = 1e-9
_ALL = "all"
_NO_NODES: frozenset[int] = frozenset()
_UNKNOWN = object()
STEP_ROUNDS = ("always", "events_or_waiting", "events", "when_waiting", "never")

_RUNNING = RequestStatus.RUNNING
_PAUSED = RequestStatus.PAUSED
_QUEUED = RequestStatus.QUEUED
_HOLD = ActionKind.HOLD
_CONTINUE = ActionKind.CONTINUE
_RECONFIGURE = ActionKind.RECONFIGURE
_START = ActionKind.START
_RESUME = ActionKind.RESUME
_BATCH = ActionKind.BATCH
_SETUP_FRESH = StepSetup.FRESH
_SETUP_CONTINUE = StepSetup.CONTINUE
_SETUP_RESUME = StepSetup.RESUME
_SETUP_RECONFIGURE = StepSetup.RECONFIGURE


class PlanError(GenServeError, RuntimeError):
    """A policy returned a plan the controller cannot apply; the message names the policy, time and rule."""


@dataclass
class RequestRecord:
    """What happened to one request (one JSONL line of `--records`)."""

    id: str
    modality: str
    model: str
    width: int
    height: int
    frames: int
    steps: int
    arrival: float
    deadline: float
    status: str = "queued"
    start: float | None = None  # first time it ran
    finish: float | None = None  # when its output existed (or it was cancelled / failed)
    pauses: int = 0
    sp_changes: int = 0
    max_degree: int = 0
    batch_size: int = 0
    retries: int = 0

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def latency(self) -> float | None:
        return None if self.finish is None or not self.done else self.finish - self.arrival

    @property
    def queue_wait(self) -> float | None:
        return None if self.start is None else self.start - self.arrival

    @property
    def met_slo(self) -> bool:
        return self.done and self.finish is not None and self.finish <= self.deadline + _EPS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency"] = self.latency
        d["queue_wait"] = self.queue_wait
        d["met_slo"] = self.met_slo
        return d


@dataclass
class VideoProgress:
    """Controller-side state of one live video."""

    request: Request
    steps_done: int = 0
    gpus: tuple[int, ...] = ()  # current SP group while running; (leader,) while decoding
    home_gpu: int | None = None  # where its state lives when paused (last leader)
    in_flight: bool = False  # a denoising step is running
    busy_until: float = 0.0  # expected end of the step / decode in flight, else the last boundary time
    decoding: bool = False
    ever_ran: bool = False
    pauses: int = 0
    sp_changes: int = 0
    last_degree: int = 0
    cancel_pending: bool = False
    # the run in flight (one step, or several when the controller coalesces steps)
    run_base: int = 0  # steps_done when the run was issued
    run_end: int = 0  # steps_done once the run ends
    run_start: float = 0.0
    run_first: float = 0.0  # first step's duration, setup included
    step_s: float = 0.0
    run_plain: bool = False  # the run's StepDone duration is a plain step (no encode / resume / move inside)
    truncated: bool = False  # its multi-step run was asked to stop at the next boundary
    replan: bool = False  # a plan wanted it to pause or move while mid-step: round at its next boundary
    grow_to: tuple[int, ...] | None = None  # two-level mode: the last plan's scale-up for it while mid-step


def run_position(vp: VideoProgress, now: float) -> tuple[int, float]:
    """A video inside a multi-step run: (steps done, time of its next step boundary), from the profile (exact in
    the simulator, where these runs exist)."""
    el = now - vp.run_start
    k = 0 if el < vp.run_first else 1 + int((el - vp.run_first) / vp.step_s)
    return min(vp.run_base + k, vp.run_end - 1), vp.run_start + vp.run_first + k * vp.step_s


@dataclass
class _RunningBatch:
    request_ids: tuple[str, ...]
    gpu: int
    cancelled: set[str] = field(default_factory=set)


class Controller:
    """Admission, state, rounds and plan application. See the module docstring for how to drive it."""

    def __init__(self, policy, cluster: ClusterSpec, profile, executor: Executor, clock, *, strict: bool = False,
                 max_paused_per_gpu: int | None = None, step_rounds: str | None = None,
                 on_finish: Callable[[RequestRecord], None] | None = None, coalesce_steps: bool = False,
                 online_correction=None, scoped_rounds: bool | None = None,
                 idle_retry_s: float | None = None, dispatch: bool | None = None) -> None:
        self.policy = policy
        self.cluster = cluster
        # online profile correction (profiles/online.py): True, or an OnlineCorrection to share / configure. The
        # controller, and the policies through the snapshot, then read a CorrectedProfile view; `base_profile` is
        # the offline one the measurements are compared with.
        self.correction = None
        if online_correction:
            from genserve.profiles.online import OnlineCorrection

            self.correction = (online_correction if isinstance(online_correction, OnlineCorrection)
                               else OnlineCorrection())
        self._use_profile(profile)
        self.executor = executor
        self.clock = clock
        self.strict = strict
        if max_paused_per_gpu is None:
            opts = getattr(policy, "options", None)
            max_paused_per_gpu = getattr(opts, "max_paused_per_gpu", None)
        self.max_paused_per_gpu = max_paused_per_gpu
        mode = step_rounds or getattr(policy, "step_rounds", "always")
        if mode not in STEP_ROUNDS:
            raise ValueError(f"step_rounds must be one of {STEP_ROUNDS}, got {mode!r}")
        self.step_rounds = mode
        # coalescing: issue a video's remaining steps as one run when the policy needs no round at every step
        # boundary (the simulator turns it on; runs are cut short with executor.truncate when a plan asks)
        self.coalesce = bool(coalesce_steps and mode != "always" and getattr(executor, "supports_multi_step", False))
        self._multi: dict[str, VideoProgress] = {}  # videos with a multi-step run in flight
        # "events_or_waiting": steps are coalesced only while nothing waits (boundaries need rounds otherwise)
        self._boundary_when_waiting = self.coalesce and mode == "events_or_waiting"
        self._replan_moves = mode == "events_or_waiting"
        self.on_finish = on_finish
        self.policy_name = getattr(policy, "name", type(policy).__name__)
        # node-scoped rounds (engine/scope.py): plan only the touched nodes while nothing waits anywhere
        if scoped_rounds is None:
            scoped_rounds = bool(getattr(policy, "node_scoped_rounds", False))
        self.scoped = (scoped_rounds and cluster.num_gpus > cluster.gpus_per_node
                       and cluster.num_gpus % cluster.gpus_per_node == 0)
        self._touched: set[int] | None = set()  # nodes with an event since the last round; None: every node
        # two-level scheduling (engine/dispatch.py): every waiting request belongs to one node, rounds plan nodes
        if dispatch is None:
            dispatch = bool(getattr(policy, "node_dispatch", False))
        self.dispatcher = None
        if dispatch and self.scoped:
            from genserve.engine.dispatch import NodeDispatcher

            self.dispatcher = NodeDispatcher(self)
        # live drivers: a plan that leaves work waiting on an idle cluster without asking for a wake-up would wait
        # forever (no event can come); with idle_retry_s the controller asks for a round that much later
        self.idle_retry_s = idle_retry_s
        self.scoped_rounds = 0

        n = cluster.num_gpus
        self.requests: dict[str, Request] = {}
        self.records: dict[str, RequestRecord] = {}
        self._busy: list[float] = [NEG_INF] * n  # expected end of non-preemptible work (batch, decode)
        self._free: set[int] = set(range(n))  # GPUs with no owner
        # per node, the bit mask of its GPUs in `_free` (bit i: its i-th GPU; kept by _release / _claim, read by
        # placement and growth checks)
        per = cluster.gpus_per_node
        self._free_masks: list[int] = [(1 << min(per, n - s)) - 1 for s in range(0, n, per)]
        self._busy_end: dict[int, float] = {}  # GPUs in non-preemptible work (batch, decode) -> expected end
        self._images: dict[str, ImageView] = {}  # queued images, arrival order
        self._videos: dict[str, VideoProgress] = {}  # live videos (queued, running, paused), arrival order
        self._views: dict[str, VideoView | None] = {}  # cached views, arrival order
        self._stale: set[str] = set()  # views to rebuild before the next snapshot
        self._renumbered: dict[str, tuple] = {}  # two-level mode: node-scoped copies of views (engine/scope.py)
        self._batches: dict[int, _RunningBatch] = {}
        self._batch_seq = 0
        self._boundary: list[str] = []  # videos that reached a step boundary since the last flush
        self._grow_due: list[VideoProgress] = []  # two-level mode: planned scale-ups due at this flush
        self._cut_nodes: frozenset[int] = _NO_NODES  # two-level mode: waiting nodes whose multi-step runs were cut
        # two-level mode: running (and decoding) videos by the node of their leader, and submission order, so a
        # node's snapshot does not scan every live video
        self._run_node: dict[str, int] = {}
        self._by_node: list[dict[str, None]] = [{} for _ in range(-(-n // cluster.gpus_per_node))]
        self._order: dict[str, int] = {}
        self._submitted = 0  # videos submitted so far: their `_order` numbers
        self._queued_videos = 0
        self._paused = 0
        self._paused_homes: dict[str, int] = {}  # paused video -> the GPU holding its state
        self._dirty = False
        self._last_image_arrival: float | None = None
        self.wake_at: float | None = None
        self.live = 0
        # counters
        self.rounds = 0
        self.preemptions = 0
        self.sp_changes = 0
        self.events = 0
        executor.attach(self.on_event)

    # ---- admission ---------------------------------------------------------------------------------------
    def validate(self, request: Request) -> None:
        """Raise ValidationError / ProfileError unless the request can be served with this profile and cluster."""
        if request.id in self.requests:
            raise ValidationError(f"duplicate request id {request.id!r}")
        if request.status is not _QUEUED:
            raise ValidationError(f"request {request.id!r} must be queued on submission, is {request.status.value}")
        # the profile checks depend only on the request's shape: each shape is checked once per profile. (The live
        # engine validates from the caller's thread while `set_profile` may swap the profile: the pair is read in
        # one go, so a shape checked against one profile is never recorded as valid for another.)
        prof, shapes = self._valid_shapes
        shape = (request.modality, request.model, request.width, request.height, request.frames, request.steps)
        if shape not in shapes:
            self._check_shape(request, prof)
            shapes.add(shape)
        if not math.isfinite(request.deadline):
            raise ValidationError(f"request {request.id!r}: deadline must be finite")

    def _check_shape(self, request: Request, prof) -> None:
        if request.modality is Modality.IMAGE:
            if request.model not in prof.doc.image_models:
                raise ProfileError(f"request {request.id!r}: unknown image model {request.model!r}; "
                                   f"known: {sorted(prof.doc.image_models)}")
        else:
            if request.model not in prof.doc.video_models:
                raise ProfileError(f"request {request.id!r}: unknown video model {request.model!r}; "
                                   f"known: {sorted(prof.doc.video_models)}")
        try:
            prof.isolated_latency(request.modality.value, request.model, request.width, request.height,
                                  request.frames, request.steps)
        except ProfileError as e:
            raise ProfileError(f"request {request.id!r}: {e}") from None

    def submit(self, request: Request) -> None:
        """Admit a request (its arrival is now, or earlier for a replayed trace). Raises on invalid input."""
        self.validate(request)
        rid = request.id
        self.requests[rid] = request
        self.records[rid] = RequestRecord(rid, request.modality.value, request.model, request.width, request.height,
                                          request.frames, request.steps, request.arrival, request.deadline)
        if request.modality is Modality.IMAGE:
            self._images[rid] = self._image_view(request)
            self._last_image_arrival = request.arrival
        else:
            self._videos[rid] = VideoProgress(request)
            self._views[rid] = None
            self._stale.add(rid)
            self._queued_videos += 1
            self._order[rid] = self._submitted  # (not len(_order): entries leave it, numbers must not repeat)
            self._submitted += 1
        self.live += 1
        if self.dispatcher is not None:
            node = self.dispatcher.place(request)
            if self._free_masks[node]:  # an idle GPU in the node
                self._mark_node(node)
            # else no round now: nothing can start there before the node's next step boundary or completion; a
            # completion brings a round, and for an image so does every boundary in the node (its multi-step
            # runs are cut at their next boundary at this flush), which decides what a round now would leave to it
        else:
            self._mark_all()

    def cancel(self, request_id: str) -> bool:
        """Cancel a live request. Queued and paused requests end now; a running video at its next step boundary
        (its GPUs are freed then); an image in a running batch when the batch ends (its output is dropped).
        Returns False when the request is unknown or already finished."""
        req = self.requests.get(request_id)
        if req is None or req.status.terminal:
            return False
        now = self.clock.now()
        if req.modality is Modality.IMAGE:
            if req.status is _QUEUED:
                del self._images[request_id]
                self._finish(req, RequestStatus.CANCELLED, now)  # (_finish drops its dispatch)
            else:
                for b in self._batches.values():
                    if request_id in b.request_ids:
                        b.cancelled.add(request_id)
            self._mark_all()
            return True
        vp = self._videos[request_id]
        if req.status is _QUEUED:
            self._queued_videos -= 1
            self._drop_video(vp, RequestStatus.CANCELLED, now)
        elif req.status is _PAUSED:
            self._paused -= 1
            self._paused_homes.pop(request_id, None)
            self.executor.discard(req, (vp.home_gpu,) if vp.home_gpu is not None else ())
            self._drop_video(vp, RequestStatus.CANCELLED, now)
        elif vp.in_flight or vp.decoding:
            vp.cancel_pending = True
            if request_id in self._multi:
                vp.truncated = True
                self.executor.truncate(req)
        else:  # running, at a boundary
            self._release(vp.gpus)
            self.executor.discard(req, vp.gpus)
            self._drop_video(vp, RequestStatus.CANCELLED, now)
        self._mark_all()
        return True

    # ---- events ------------------------------------------------------------------------------------------
    def on_event(self, ev: Event) -> None:
        """Consume one executor event (call `flush` once all events of the instant are in)."""
        self.events += 1
        if type(ev) is StepDone:
            self._on_step(ev)
        elif type(ev) is BatchDone:
            self._on_batch(ev)
        elif type(ev) is VideoDone:
            self._on_video_done(ev)
        elif type(ev) is Failed:
            self._on_failed(ev)
        elif type(ev) is Arrival:
            self.submit(ev.request)
        else:
            raise TypeError(f"unknown event {ev!r}")

    def wake(self) -> None:
        """The time asked for by `wake_at` has come: the next flush runs a round."""
        self.wake_at = None
        self._mark_all()

    def _on_step(self, ev: StepDone) -> None:
        vp = self._videos.get(ev.request_id)
        if vp is None or not vp.in_flight:
            raise GenServeError(f"StepDone for {ev.request_id!r}, which has no step in flight")
        req = vp.request
        vp.steps_done = ev.step + 1
        self._stale.add(req.id)
        if not ev.final:  # progress inside a multi-step run
            return
        if self.correction is not None and vp.run_plain:
            p = len(ev.gpus)
            self.correction.observe_step(req.model, req.width, req.height, req.frames, p, ev.duration,
                                         self.base_profile.video_step(req.model, req.width, req.height, req.frames, p))
        vp.in_flight = False
        vp.busy_until = ev.time
        if self._multi:
            self._multi.pop(req.id, None)
        vp.truncated = False
        if vp.replan:  # a plan wanted this video to pause or move while it was mid-step: decide now
            vp.replan = False
            if vp.grow_to is not None:
                self._grow_due.append(vp)  # a scale-up: applied at the flush unless a round is due anyway
            else:
                self._mark(vp.gpus[0])
        if vp.cancel_pending:
            self._release(vp.gpus)
            self.executor.discard(req, vp.gpus)
            self._drop_video(vp, RequestStatus.CANCELLED, ev.time)
            self._mark(vp.gpus[0])
            return
        if vp.steps_done >= req.steps:
            leader = vp.gpus[0]
            freed = vp.gpus[1:]
            vp.gpus = (leader,)
            vp.decoding = True
            if freed:
                self._release(freed)
                self._freed(freed)
            end = ev.time + self.profile.video_decode(req.model, req.width, req.height, req.frames)
            vp.busy_until = end
            self._busy[leader] = end
            self._busy_end[leader] = end
            self.executor.decode(req, leader)
            return
        self._boundary.append(req.id)

    def _on_video_done(self, ev: VideoDone) -> None:
        vp = self._videos.get(ev.request_id)
        if vp is None or not vp.decoding:
            raise GenServeError(f"VideoDone for {ev.request_id!r}, which is not decoding")
        self._busy[vp.gpus[0]] = NEG_INF
        self._busy_end.pop(vp.gpus[0], None)
        self._release(vp.gpus)
        status = RequestStatus.CANCELLED if vp.cancel_pending else RequestStatus.DONE
        self._drop_video(vp, status, ev.time)
        self._freed(vp.gpus)

    def _on_batch(self, ev: BatchDone) -> None:
        key = None
        for k, b in self._batches.items():
            if b.gpu == ev.gpu and b.request_ids == tuple(ev.request_ids):
                key = k
                break
        if key is None:
            raise GenServeError(f"BatchDone on GPU {ev.gpu} for {ev.request_ids}, which is not running there")
        b = self._batches.pop(key)
        if self.correction is not None:
            r = self.requests[b.request_ids[0]]
            n = len(b.request_ids)
            self.correction.observe_batch(r.model, r.width, r.height, n, ev.duration,
                                          self.base_profile.image_latency(r.model, r.width, r.height, n, r.steps))
        self._busy[b.gpu] = NEG_INF
        self._busy_end.pop(b.gpu, None)
        self._release((b.gpu,))
        for rid in b.request_ids:
            req = self.requests[rid]
            self._finish(req, RequestStatus.CANCELLED if rid in b.cancelled else RequestStatus.DONE, ev.time)
        self._freed((b.gpu,))

    def _on_failed(self, ev: Failed) -> None:
        now = ev.time
        named = set(ev.request_ids)
        handled: set[str] = set()
        for rid in ev.request_ids:
            req = self.requests.get(rid)
            if req is None or req.status.terminal or rid in handled:
                continue
            rec = self.records[rid]
            if req.modality is Modality.IMAGE:
                # the whole batch stops: members the event names follow ev.retryable, the others run again
                members: tuple[str, ...] = (rid,)
                cancelled: set[str] = set()
                for k, b in list(self._batches.items()):
                    if rid in b.request_ids:
                        self._busy[b.gpu] = NEG_INF
                        self._busy_end.pop(b.gpu, None)
                        self._release((b.gpu,))
                        del self._batches[k]
                        members, cancelled = b.request_ids, b.cancelled
                        break
                for m in members:
                    handled.add(m)
                    if m in cancelled:
                        self._finish(self.requests[m], RequestStatus.CANCELLED, now)
                    else:
                        self._requeue_image(self.requests[m], now, ev.retryable or m not in named)
            else:
                vp = self._videos[rid]
                if req.status is _RUNNING:
                    self._multi.pop(rid, None)
                    self._release(vp.gpus)
                    if vp.decoding:
                        self._busy[vp.gpus[0]] = NEG_INF
                        self._busy_end.pop(vp.gpus[0], None)
                elif req.status is _PAUSED:
                    self._paused -= 1
                    self._paused_homes.pop(rid, None)
                self._leave_node(rid)
                if ev.retryable and req.status is _RUNNING:
                    req.transition(_QUEUED, now)
                    self._queued_videos += 1
                    rec.retries += 1
                    self._videos[rid] = VideoProgress(req)
                    self._stale.add(rid)
                    if self.dispatcher is not None:
                        self.dispatcher.place(req)
                else:
                    self._drop_video(vp, RequestStatus.FAILED, now)
        self._mark_all()

    def _requeue_image(self, req: Request, now: float, retryable: bool) -> None:
        if req.status.terminal:
            return
        if retryable:
            if req.status is _RUNNING:
                req.transition(_QUEUED, now)
                self.records[req.id].retries += 1
                self._images[req.id] = self._image_view(req)
                if self.dispatcher is not None:
                    self.dispatcher.place(req)
        else:
            self._images.pop(req.id, None)
            self._finish(req, RequestStatus.FAILED, now)

    # ---- profile ---------------------------------------------------------------------------------------------
    def _use_profile(self, profile) -> None:
        self.base_profile = profile
        if self.correction is not None:
            from genserve.profiles.online import CorrectedProfile

            profile = CorrectedProfile(profile, self.correction)
        self.profile = profile
        # (profile, the request shapes `validate` accepted with it), replaced as one
        self._valid_shapes: tuple = (profile, set())
        self._max_batch: dict[str, int] = {}  # image model -> the profile's largest batch (checked per plan batch)
        # video shape and degree -> the degree `_growth_block` would grow to (None: none faster), while the
        # profile's figures are fixed (not with online correction)
        self._grow_degree: dict[tuple, int | None] = {}

    def set_profile(self, profile) -> None:
        """Plan with another profile from now on (e.g. one calibrated on this machine). Online correction, when
        on, starts over: its factors were measured against the old profile."""
        if self.correction is not None:
            from genserve.profiles.online import OnlineCorrection

            c = self.correction
            self.correction = OnlineCorrection(c.alpha, c.lo, c.hi, c.min_samples, c.deadband, c.pool_models)
        self._use_profile(profile)

    # ---- bookkeeping ---------------------------------------------------------------------------------------
    def _mark(self, gpu: int) -> None:
        """An event on `gpu`'s node calls for a round."""
        self._mark_node(gpu // self.cluster.gpus_per_node)

    def _freed(self, gpus: tuple[int, ...]) -> None:
        """GPUs became idle: a round, except in two-level mode when nothing waits anywhere and no running video of
        their node could grow into them (its next degree's block holds only its GPUs and idle ones): such a round
        could only confirm the plan in force. (A video's freed GPUs never complete another's block: aligned
        blocks nest, so such a block would hold the decoding leader.)"""
        if self.dispatcher is None or self.dispatcher.node_of or self._could_grow(gpus):
            self._mark(gpus[0])

    def _could_grow(self, gpus: tuple[int, ...]) -> bool:
        videos = self._videos
        for rid in self._by_node[gpus[0] // self.cluster.gpus_per_node]:
            vp = videos[rid]
            if not vp.decoding:
                b = self._growth_block(vp.request, vp.gpus)
                if b is not None:
                    lo, hi = b
                    for g in gpus:
                        if lo <= g <= hi:
                            return True
        return False

    def _growth_block(self, req: Request, gpus: tuple[int, ...]) -> tuple[int, int] | None:
        """The first and last GPU of the next degree's aligned block around a running video's `gpus` when the
        GenServe DP could grow it there now: the block holds only its GPUs and idle ones, and a step there is
        faster. (The DP may also grow over another running video's GPUs, pausing or shrinking it, but with nothing
        waiting in the node it practically never does.)"""
        p = len(gpus)
        key = (req.model, req.width, req.height, req.frames, p)
        q = self._grow_degree.get(key, _UNKNOWN)
        if q is _UNKNOWN:
            q = self._next_faster_degree(req, p)
            if self.correction is None:  # (corrected step times change as measurements come in)
                self._grow_degree[key] = q
        if q is None:
            return None
        per = self.cluster.gpus_per_node
        start = gpus[0] - gpus[0] % q
        own = 0
        for g in gpus:
            own |= 1 << (g % per)
        block = ((1 << q) - 1) << (start % per)  # (bit masks of the node's GPUs; an aligned block fits a node)
        if block & ~(self._free_masks[start // per] | own):
            return None
        return start, start + q - 1

    def _next_faster_degree(self, req: Request, p: int) -> int | None:
        """The next usable profiled degree above `p` for this video when a step there is faster, else None."""
        prof = self.profile
        degs = prof.degrees(req.model)
        q = next((d for d in self.cluster.usable_degrees if d > p and d in degs), None)
        if q is None or (prof.video_step(req.model, req.width, req.height, req.frames, q)
                         >= prof.video_step(req.model, req.width, req.height, req.frames, p)):
            return None
        return q

    def _mark_node(self, node: int) -> None:
        self._dirty = True
        if self._touched is not None:
            self._touched.add(node)

    def _mark_all(self) -> None:
        """An event that concerns the whole cluster (an arrival, a cancellation, a wake-up, a failure)."""
        self._dirty = True
        self._touched = None

    def _release(self, gpus: Iterable[int]) -> None:
        per, masks = self.cluster.gpus_per_node, self._free_masks
        for g in gpus:
            self._free.add(g)
            masks[g // per] |= 1 << (g % per)

    def _claim(self, gpus: Iterable[int]) -> None:
        per, masks = self.cluster.gpus_per_node, self._free_masks
        for g in gpus:
            self._free.discard(g)
            masks[g // per] &= ~(1 << (g % per))

    def _finish(self, req: Request, status: RequestStatus, now: float) -> None:
        req.transition(status, now)
        if self.dispatcher is not None:
            self.dispatcher.drop(req.id)
        rec = self.records[req.id]
        rec.status = status.value
        rec.finish = now
        self.live -= 1
        if self.on_finish is not None:
            self.on_finish(rec)

    def _drop_video(self, vp: VideoProgress, status: RequestStatus, now: float) -> None:
        rid = vp.request.id
        rec = self.records[rid]
        rec.pauses = vp.pauses
        rec.sp_changes = vp.sp_changes
        del self._videos[rid]
        self._views.pop(rid, None)
        self._renumbered.pop(rid, None)
        self._stale.discard(rid)
        self._multi.pop(rid, None)
        self._order.pop(rid, None)
        self._leave_node(rid)
        self._finish(vp.request, status, now)

    def _leave_node(self, rid: str) -> None:
        node = self._run_node.pop(rid, None)
        if node is not None:
            del self._by_node[node][rid]

    # ---- rounds --------------------------------------------------------------------------------------------
    def round_due(self) -> bool:
        """Whether `flush` runs a round now.

        "always": after any event, arrival, cancellation or wake-up, and at every step boundary.
        "events_or_waiting": every event (as "always"), and step boundaries only while a request is queued or
        paused; with nothing waiting a boundary round could only move running videos among themselves, which the
        round at the last event already decided (plus the boundaries of videos that plan wanted to pause or move).
        "events": the same without plain step boundaries: a video reaches a round at its boundary only when the
        last plan wanted it to pause or move while it was mid-step (the policy's decisions change only on events
        and on the wake-ups it asks for with Plan.wake_at).
        "when_waiting" and "never" declare a policy that only starts or resumes waiting requests (and, for
        "when_waiting", preempts for them): with nothing queued or paused such a round could only confirm the
        status quo, so it is skipped. "never" also skips step boundaries and rounds with no free GPU."""
        mode = self.step_rounds
        if mode == "always":
            return self._dirty or bool(self._boundary)
        if mode == "events_or_waiting":
            if self._dirty:
                return True
            if not self._boundary:
                return False
            scope = self._wait_scope()
            if scope is None:
                return False
            if scope is _ALL:
                return True
            per = self.cluster.gpus_per_node
            videos = self._videos
            for rid in self._boundary:
                vp = videos.get(rid)
                if vp is not None and vp.gpus and vp.gpus[0] // per in scope:
                    return True
            return False
        if mode == "events":
            return self._dirty
        if not (self._dirty or self._boundary):
            return False
        if not (self._images or self._queued_videos > 0 or self._paused > 0):
            return False
        if mode == "never":
            return self._dirty and bool(self._free)
        return True

    def _wait_scope(self):
        """Where waiting work could use a video's GPUs at its step boundary ("events_or_waiting"): None (nothing
        queued or paused), _ALL (a queued image or video, or a paused video whose home GPU is finishing a batch
        or a decode: they may go anywhere), else the set of nodes holding a paused video's state (it resumes
        around its home GPU, inside that node). With a dispatcher: the nodes where an image waits."""
        if self.dispatcher is not None:
            return self.dispatcher.image_nodes() or None
        if self._images or self._queued_videos > 0:
            return _ALL
        homes = self._paused_homes
        if not homes:
            return None
        per = self.cluster.gpus_per_node
        busy = self._busy
        nodes = set()
        for h in homes.values():
            if busy[h] != NEG_INF:
                return _ALL
            nodes.add(h // per)
        return nodes

    def _in_scope(self, vp: VideoProgress, scope) -> bool:
        return scope is not None and (scope is _ALL or vp.gpus[0] // self.cluster.gpus_per_node in scope)

    def flush(self) -> None:
        """Run a round if one is due, then let every video still at a boundary continue where it is."""
        if self.round_due():
            self.round()
        else:
            self._dirty = False
            if self._grow_due:
                self._apply_growth(self.clock.now())
        self._grow_due.clear()
        if self._boundary:
            now = self.clock.now()
            for rid in self._boundary:
                vp = self._videos.get(rid)
                if vp is not None and not vp.in_flight and not vp.decoding and vp.request.status is _RUNNING:
                    self._run_step(vp, vp.gpus, now)
            self._boundary.clear()
        if self._multi and self._boundary_when_waiting:
            d = self.dispatcher
            if d is not None:
                # only nodes that started waiting since the last flush: runs issued later in a waiting node are
                # single steps, and earlier ones there were cut already
                scope = d.image_nodes()  # (what _wait_scope says; the same object until its set of nodes changes)
                if scope is self._cut_nodes:
                    scope = None
                else:
                    new = scope - self._cut_nodes
                    self._cut_nodes = scope
                    scope = new or None
            else:
                scope = self._wait_scope()
            if scope is not None:
                # something waits: step boundaries where it could get GPUs get rounds again, so multi-step runs
                # there end at their next boundary (in the order the runs began)
                if scope is _ALL:
                    cut = list(self._multi.values())
                else:
                    per = self.cluster.gpus_per_node
                    cut = [vp for vp in self._multi.values() if vp.gpus[0] // per in scope]
                for vp in cut:
                    if not vp.truncated:
                        vp.truncated = True
                        self.executor.truncate(vp.request)

    def snapshot(self, nodes: list[int] | None = None) -> Snapshot:
        """The snapshot of the cluster, or of `nodes` (sorted; GPUs renumbered 0.. in node order, see
        engine/scope.py)."""
        now = self.clock.now()
        views = self._views
        if self._stale:
            videos = self._videos
            for rid in self._stale:
                if rid in videos:
                    views[rid] = self._view(videos[rid])
            self._stale.clear()
        # videos inside a multi-step run: progress and next boundary estimated from the profile ("never" policies
        # only continue running videos)
        runs = self._multi if self.step_rounds != "never" else {}
        d = self.dispatcher
        if runs and (nodes is None or d is None):
            self._refresh_runs(now, nodes)
        busy = self._busy
        busy_end = self._busy_end  # GPUs in non-preemptible work: a passed estimate reads "ends now" (live engine)
        info = {"round": self.rounds, "policy": self.policy_name}
        if nodes is None:
            overdue = [g for g, b in busy_end.items() if b <= now]
            if overdue:
                busy = list(busy)
                for g in overdue:
                    busy[g] = now + _EPS
            return Snapshot(now=now, cluster=self.cluster, profile=self.profile, images=tuple(self._images.values()),
                            videos=tuple(views.values()), busy_until=tuple(busy),
                            last_image_arrival=self._last_image_arrival, info=info)
        cl = self.cluster
        per = cl.gpus_per_node
        gmap = gpu_map(per, nodes)
        if len(nodes) == 1:
            busy = busy[nodes[0] * per:nodes[0] * per + per]
        else:
            busy = [busy[g] for g in gmap]
        if busy_end and min(busy_end.values()) <= now:  # (only the live engine's estimates pass)
            busy = [b if busy_end.get(g, _INF) > now else now + _EPS for g, b in zip(gmap, busy)]
        busy = tuple(busy)
        if d is not None:  # only this scope's videos, in submission order (as the whole-cluster view has them)
            order, waiting = self._order, d.items
            rids = [rid for n in nodes for rid in self._by_node[n]]
            for n in nodes:
                if waiting[n]:
                    rids.extend([rid for rid in waiting[n] if rid in order])
            rids.sort(key=order.__getitem__)
            # (a run's progress goes straight into the renumbered copy, not into the cluster-wide view)
            items = [(views[rid], run_position(runs[rid], now) if rid in runs else None) for rid in rids]
            videos = renumbered_views(items, per, nodes, self._renumbered)
            images = assigned_images(self._images.values(), per, nodes, d.node_of) if self._images else ()
        else:
            videos, images = scoped_views(views.values(), self._images.values(), per, nodes)
        info["scope"] = nodes
        return fast_snapshot(now, sub_cluster(len(gmap), per, cl.sp_degrees), self.profile, images,
                             videos, busy, self._last_image_arrival, info)

    def _refresh_runs(self, now: float, nodes: list[int] | None = None) -> None:
        """Views of videos inside a multi-step run: progress and next boundary estimated from the profile (exact
        in the simulator, where these runs exist). Only those led in `nodes` when given."""
        views = self._views
        multi = self._multi
        runs = (multi.items() if nodes is None
                else [(rid, multi[rid]) for n in nodes for rid in self._by_node[n] if rid in multi])
        for rid, vp in runs:
            done, nxt = run_position(vp, now)
            old = views.get(rid)
            if old is None:
                old = views[rid] = self._view(vp)
            if old.steps_done != done or old.busy_until != nxt:
                new = object.__new__(VideoView)  # a copy of the frozen view with two fields changed (fast)
                d = new.__dict__
                d.update(old.__dict__)
                d["steps_done"] = done
                d["busy_until"] = nxt
                views[rid] = new

    @staticmethod
    def _image_view(r: Request) -> ImageView:
        v = object.__new__(ImageView)  # the frozen dataclass's __init__ without its per-field setattr (hot path)
        v.__dict__.update(id=r.id, model=r.model, width=r.width, height=r.height, steps=r.steps, arrival=r.arrival,
                          deadline=r.deadline)
        return v

    @staticmethod
    def _view(vp: VideoProgress) -> VideoView:
        r = vp.request
        v = object.__new__(VideoView)  # the frozen dataclass's __init__ without its per-field setattr (hot path)
        v.__dict__.update(id=r.id, model=r.model, width=r.width, height=r.height, frames=r.frames, steps=r.steps,
                          steps_done=vp.steps_done, arrival=r.arrival, deadline=r.deadline, status=r.status,
                          gpus=vp.gpus if r.status is _RUNNING else (), home_gpu=vp.home_gpu,
                          busy_until=vp.busy_until, decoding=vp.decoding, pauses=vp.pauses,
                          sp_changes=vp.sp_changes)
        return v

    def _round_scope(self) -> list[int] | None:
        """The nodes this round plans, or None for the whole cluster (see engine/scope.py): only while nothing
        waits anywhere (no queued image or video, no paused video that would resume outside its home node)."""
        touched = self._touched
        if self.dispatcher is not None and touched is not None:
            return self._nodes_or_all(set(touched))
        if not self.scoped or touched is None or self._images or self._queued_videos > 0:
            return None
        if self._wait_scope() is _ALL:
            return None
        if self._paused and self._free and any(h not in self._free for h in self._paused_homes.values()):
            return None  # a paused video whose home is taken may resume on the idle GPUs of any node
        return self._nodes_or_all(set(touched))

    def _nodes_or_all(self, nodes: set[int]) -> list[int] | None:
        """`nodes` plus those of the videos at a step boundary, or None when that is every node."""
        per = self.cluster.gpus_per_node
        for rid in self._boundary:
            vp = self._videos.get(rid)
            if vp is not None and vp.gpus:
                nodes.add(vp.gpus[0] // per)
        if not nodes or len(nodes) * per >= self.cluster.num_gpus:
            return None
        return sorted(nodes)

    def round(self) -> Plan:
        """Snapshot, plan, apply. Returns the plan (for tests and tracing)."""
        self._dirty = False
        self.rounds += 1
        scope = self._round_scope()
        if scope is not None and self.dispatcher is not None and self.dispatcher.node_of:
            self.dispatcher.rebalance(scope)  # idle GPUs in these nodes take the cluster's most urgent waiting work
        self._touched = set()
        snap = self.snapshot(scope)
        gmap = None
        if scope is not None:
            gmap = gpu_map(self.cluster.gpus_per_node, scope)
            self.scoped_rounds += 1
        plan = self.policy.plan(snap)
        if not isinstance(plan, Plan):
            raise PlanError(f"policy {self.policy_name} returned {type(plan).__name__}, not a Plan")
        if self.strict:
            from genserve.scheduling.validate import plan_violations

            bad = plan_violations(snap, plan, self.max_paused_per_gpu)
            if bad:
                raise PlanError(f"policy {self.policy_name} returned an invalid plan at t={snap.now:.6f}: "
                                + "; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""))
        if gmap is not None:
            plan = lift_plan(plan, gmap)
        self._apply(plan, snap.now)
        wake = plan.wake_at
        if (wake is None and self.idle_retry_s is not None and self.live > 0
                and len(self._free) == self.cluster.num_gpus):
            wake = snap.now + self.idle_retry_s  # nothing runs, so no event will come: ask again later
        if wake is not None and wake > snap.now:
            self.wake_at = wake if self.wake_at is None or self.wake_at <= snap.now else min(self.wake_at, wake)
        return plan

    def _err(self, now: float, msg: str) -> PlanError:
        return PlanError(f"policy {self.policy_name} returned an invalid plan at t={now:.6f}: {msg}")

    def _apply(self, plan: Plan, now: float) -> None:
        """Two phases: decide every operation (raising PlanError on a broken plan, state untouched), then do them."""
        actions = plan.actions
        cluster = self.cluster
        free = set(self._free)
        claimed: set[int] = set()
        pauses: list[VideoProgress] = []
        steps: list[tuple[VideoProgress, tuple[int, ...]]] = []
        moves: list[tuple[VideoProgress, tuple[int, ...]]] = []
        launches: list[tuple[VideoProgress, tuple[int, ...]]] = []
        batches: list[tuple[tuple[str, ...], int]] = []
        intents: list[VideoProgress] = []  # mid-step videos a plan wants to pause or move
        multi = self._multi

        def check_group(rid: str, gpus: tuple[int, ...], claims: bool = True) -> None:
            if not cluster.is_valid_group(gpus):
                raise self._err(now, f"video {rid}: {gpus} is not an aligned SP group of a valid degree")
            for g in (gpus if claims else ()):
                if g in claimed:
                    raise self._err(now, f"GPU {g} is assigned twice")

        videos, images = self._videos, self._images
        for rid in actions:
            if rid not in videos and rid not in images:
                raise self._err(now, f"action for unknown or finished request {rid}")

        # 1. videos at a step boundary: pause, continue, or move
        room_check = None

        def room(leader: int) -> bool:  # built on the first pause only (most plans pause nothing)
            nonlocal room_check
            if room_check is None:
                room_check = self._pause_room(actions)
            return room_check(leader)

        kept: set[int] = set()
        for rid in self._boundary:
            vp = self._videos.get(rid)
            if vp is None or vp.in_flight or vp.request.status is not _RUNNING:
                continue
            a = actions.get(rid)
            kind = _CONTINUE if a is None else a.kind
            if kind is _HOLD and not room(vp.gpus[0]):
                kind = _CONTINUE  # the resume that would make room cannot run now: pausing would break the limit
                a = None
                kept.update(vp.gpus)  # launches planned on these GPUs wait for a later round
            if kind is _HOLD:
                pauses.append(vp)
                free.update(vp.gpus)
            elif kind is _CONTINUE:
                if a is not None and a.gpus != vp.gpus:
                    raise self._err(now, f"video {rid}: continue must keep its GPUs {vp.gpus}, got {a.gpus}")
                steps.append((vp, vp.gpus))
                claimed.update(vp.gpus)
            elif kind is _RECONFIGURE:
                check_group(rid, a.gpus, claims=False)  # double booking: checked below, once `kept` is known
                moves.append((vp, a.gpus))
                free.update(vp.gpus)
            else:
                raise self._err(now, f"video {rid} (running) cannot {kind.value}")
        if moves:
            blocked_moves = [(vp, t) for vp, t in moves if not kept.isdisjoint(t)]
            moves = [(vp, t) for vp, t in moves if kept.isdisjoint(t)]
            for vp, target in moves:
                if not claimed.isdisjoint(target):
                    raise self._err(now, f"video {vp.request.id}: GPUs of {target} are assigned twice")
                claimed.update(target)
            while moves:  # moves whose targets are free now (possibly freed by another move) go first
                ready = [(vp, t) for vp, t in moves if free.issuperset(t)]
                if not ready:
                    break
                for vp, target in ready:
                    free.difference_update(target)
                    steps.append((vp, target))
                moves = [(vp, t) for vp, t in moves if not any(vp is r for r, _ in ready)]
            for vp, target in moves + blocked_moves:  # target busy (mid-step video, batch, kept): stay, or pause
                if free.issuperset(vp.gpus):
                    free.difference_update(vp.gpus)
                    steps.append((vp, vp.gpus))
                else:
                    pauses.append(vp)

        # 2. every other live request: check kinds; launch what fits now
        two_level = self.dispatcher is not None
        for rid, a in actions.items():
            kind = a.kind
            if kind is _BATCH:
                continue
            vp = videos.get(rid)
            if kind is _CONTINUE and vp is not None and vp.request.status is _RUNNING and (vp.in_flight or vp.decoding):
                if a.gpus != vp.gpus:  # fast path: a running video keeps its GPUs (they stay owned)
                    raise self._err(now, f"video {rid}: continue must keep its GPUs {vp.gpus}, got {a.gpus}")
                vp.grow_to = None
                if two_level:
                    vp.replan = False  # two-level mode: the latest plan for it wants no change at its boundary
                continue
            if kind is _HOLD:
                if vp is not None:
                    if vp.decoding:
                        raise self._err(now, f"video {rid} is decoding and must continue on {vp.gpus}")
                    if vp.in_flight:
                        vp.grow_to = None
                        intents.append(vp)
                continue
            if vp is None:
                raise self._err(now, f"image {rid} cannot {kind.value}")
            status = vp.request.status
            if status is _RUNNING:
                if kind is _CONTINUE:
                    if a.gpus != vp.gpus:
                        raise self._err(now, f"video {rid}: continue must keep its GPUs {vp.gpus}, got {a.gpus}")
                    if vp.in_flight or vp.decoding:
                        claimed.update(vp.gpus)
                elif kind is _RECONFIGURE:
                    if vp.decoding:
                        raise self._err(now, f"video {rid} is decoding and must continue on {vp.gpus}")
                    if vp.in_flight:
                        intents.append(vp)
                        # two-level mode: a pure scale-up (nothing is freed for others) needs no round at the
                        # boundary when nothing else happens in the node by then: it is applied at the flush
                        vp.grow_to = (a.gpus if two_level and len(a.gpus) > len(vp.gpus)
                                      and set(vp.gpus).issubset(a.gpus) else None)
                        if kept.isdisjoint(a.gpus):  # (a GPU kept by a refused pause: nothing to reserve)
                            check_group(rid, a.gpus)
                            claimed.update(a.gpus)  # reserved on paper; re-decided at its boundary
                else:
                    raise self._err(now, f"video {rid} (running) cannot {kind.value}")
                continue
            if (status is _QUEUED and kind is not _START) or (status is _PAUSED and kind is not _RESUME):
                raise self._err(now, f"video {rid} ({status.value}) cannot {kind.value}")
            if not kept.isdisjoint(a.gpus):
                continue
            check_group(rid, a.gpus)
            claimed.update(a.gpus)
            if free.issuperset(a.gpus):
                free.difference_update(a.gpus)
                launches.append((vp, a.gpus))
        max_batch_cache = self._max_batch
        for i, b in enumerate(plan.batches):
            ids = b.request_ids
            if not ids:
                raise self._err(now, f"batch {i} is empty")
            first = self._images.get(ids[0])
            for rid in ids:
                im = self._images.get(rid)
                if im is None:
                    raise self._err(now, f"batch {i} holds {rid}, which is not a queued image")
                if im.batch_key != first.batch_key:
                    raise self._err(now, f"batch {i} mixes models, resolutions or step counts")
            mb = max_batch_cache.get(first.model)
            if mb is None:
                mb = max_batch_cache[first.model] = self.profile.max_batch(first.model)
            if len(ids) > mb or len(set(ids)) != len(ids):
                raise self._err(now, f"batch {i} has {len(ids)} images (profiled maximum {mb}) or repeats one")
            g = b.gpu
            if not 0 <= g < cluster.num_gpus:
                raise self._err(now, f"batch {i}: GPU {g} does not exist")
            if g in kept:
                continue
            if g in claimed:
                raise self._err(now, f"GPU {g} is assigned twice")
            claimed.add(g)
            if g in free:
                free.discard(g)
                batches.append((ids, g))

        # 3. do it (nothing above changed state)
        for vp in intents:
            vp.replan = True
            if multi and not vp.truncated and vp.request.id in multi:
                vp.truncated = True
                self.executor.truncate(vp.request)
        for vp in pauses:
            self._pause(vp, now)
        for vp, gpus in steps:
            self._run_step(vp, gpus, now)
        for vp, gpus in launches:
            if vp.request.status is _PAUSED:
                self._paused -= 1
                self._paused_homes.pop(vp.request.id, None)
            else:
                self._queued_videos -= 1
            if self.dispatcher is not None:
                self.dispatcher.drop(vp.request.id)
            self._run_step(vp, gpus, now)
        for ids, g in batches:
            self._start_batch(ids, g, now)
        self._boundary.clear()

    def _pause_room(self, actions: dict) -> Callable[[int], bool]:
        """A check `room(leader)`: may one more video pause with its state on `leader` this round?

        A plan may pause a video on a GPU that already holds a paused one while resuming that one elsewhere; when
        the resume cannot start now (its GPUs are busy), applying only the pause would exceed the paused-per-GPU
        limit. Paused videos whose RESUME can start now (on GPUs free now or freed by this round's boundary
        pauses and moves) do not count.
        """
        limit = self.max_paused_per_gpu
        if limit is None:
            return lambda leader: True
        freed = set(self._free)
        for rid in self._boundary:
            vp = self._videos.get(rid)
            a = actions.get(rid)
            if vp is not None and a is not None and a.kind in (_HOLD, _RECONFIGURE) and not vp.in_flight:
                freed.update(vp.gpus)
        held: dict[int, int] = {}
        for rid, home in self._paused_homes.items():
            a = actions.get(rid)
            if a is not None and a.kind is _RESUME and freed.issuperset(a.gpus):
                continue
            held[home] = held.get(home, 0) + 1

        def room(leader: int) -> bool:
            if held.get(leader, 0) >= limit:
                return False
            held[leader] = held.get(leader, 0) + 1
            return True

        return room

    def _pause(self, vp: VideoProgress, now: float) -> None:
        req = vp.request
        leader = vp.gpus[0]
        self._release(vp.gpus)
        req.transition(_PAUSED, now)
        self._leave_node(req.id)
        vp.home_gpu = leader
        vp.pauses += 1
        self.preemptions += 1
        self._paused += 1
        self._paused_homes[req.id] = leader
        self._stale.add(req.id)
        if self.dispatcher is not None:
            self.dispatcher.assign(req.id, leader // self.cluster.gpus_per_node, 1)
        self.executor.pause(req, leader)

    def _run_step(self, vp: VideoProgress, gpus: tuple[int, ...], now: float) -> None:
        req = vp.request
        p = len(gpus)
        prof = self.profile
        step_s = prof.video_step(req.model, req.width, req.height, req.frames, p)
        dur = step_s
        source = None
        rec = self.records[req.id]
        if not vp.ever_ran:
            setup = _SETUP_FRESH
            dur += prof.text_encode(req.model)
            req.transition(_RUNNING, now)
            rec.start = now
            vp.ever_ran = True
        elif req.status is _PAUSED:
            setup = _SETUP_RESUME
            source = vp.home_gpu
            dur += prof.resume_cost(req.model, p)
            req.transition(_RUNNING, now)
        elif gpus != vp.gpus:
            setup = _SETUP_RECONFIGURE
            source = vp.gpus[0]
            dur += prof.reconfigure_cost(req.model, p)
            self._release(vp.gpus)
            # a running video changes degree one step at a time: ask again at its boundary (in two-level mode only
            # when it grew and the next larger block around it could be taken)
            if self._replan_moves and (self.dispatcher is None or (p > len(vp.gpus) and self._growth_block(req, gpus))):
                vp.replan = True
        else:
            setup = _SETUP_CONTINUE
        if vp.last_degree and p != vp.last_degree:
            vp.sp_changes += 1
            self.sp_changes += 1
        vp.last_degree = p
        if p > rec.max_degree:
            rec.max_degree = p
        if setup is not _SETUP_CONTINUE:
            self._claim(gpus)
            vp.gpus = gpus
            self._leave_node(req.id)
            node = gpus[0] // self.cluster.gpus_per_node
            self._run_node[req.id] = node
            self._by_node[node][req.id] = None
        self._stale.add(req.id)  # busy_until (and maybe gpus / status) changed
        vp.home_gpu = gpus[0]
        vp.in_flight = True
        vp.busy_until = now + dur
        count = (req.steps - vp.steps_done
                 if self.coalesce and not (self._boundary_when_waiting
                                           and (vp.replan or self._in_scope(vp, self._wait_scope()))) else 1)
        # executors report a multi-step run's steady step time, a single step's time with its setup inside
        vp.run_plain = setup is _SETUP_CONTINUE or count > 1
        vp.run_base = vp.steps_done
        vp.run_end = vp.steps_done + count
        if count > 1:
            vp.run_start = now
            vp.run_first = dur
            vp.step_s = step_s
            self._multi[req.id] = vp
            self.executor.run_step(req, vp.steps_done, gpus, setup, source, count=count)
        else:
            self.executor.run_step(req, vp.steps_done, gpus, setup, source)

    def _apply_growth(self, now: float) -> None:
        """Two-level mode, no round due: videos whose last plan scaled them up while mid-step do it now."""
        plan = Plan()
        for vp in self._grow_due:
            if vp.grow_to is not None and vp.request.id in self._boundary and not vp.in_flight:
                plan.actions[vp.request.id] = Action(_RECONFIGURE, vp.grow_to)
            vp.grow_to = None
        if plan.actions:
            self._apply(plan, now)

    def _start_batch(self, ids: tuple[str, ...], gpu: int, now: float) -> None:
        reqs = []
        for rid in ids:
            del self._images[rid]
            if self.dispatcher is not None:
                self.dispatcher.drop(rid)
            req = self.requests[rid]
            req.transition(_RUNNING, now)
            rec = self.records[rid]
            rec.start = now
            rec.batch_size = len(ids)
            rec.max_degree = 1
            reqs.append(req)
        first = reqs[0]
        self._batch_seq += 1
        self._batches[self._batch_seq] = _RunningBatch(ids, gpu)
        self._claim((gpu,))
        end = now + self.profile.image_latency(first.model, first.width, first.height, len(ids), first.steps)
        self._busy[gpu] = end
        self._busy_end[gpu] = end
        self.executor.start_batch(reqs, gpu)

    # ---- read-only views -------------------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No live request at all."""
        return self.live == 0

    def queued(self) -> int:
        return len(self._images) + self._queued_videos

    def free_gpus(self) -> list[int]:
        return sorted(self._free)
