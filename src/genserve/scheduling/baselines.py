"""The paper's baselines as policies: FCFS, SJF, SRTF, RASP, and dedicated pools.

Each is a class taking `PolicyOptions` and returning a full Plan from a Snapshot (pure; memo caches only hold
values that depend on a request's own fields). Defaults follow the spec (section 11): videos at SP 1 and images
unbatched, except RASP's static SP; `options.batching=True` batches same-resolution images for any of them,
EDF-style: the head image's batch takes queued same-shape images in deadline order while T_img of the bigger
batch still lets every member that could meet its deadline meet it (others are deferred).

Placement: a video takes the lowest aligned block of its degree that is free; an image takes the highest free
GPU (keeps low aligned blocks whole for SP groups).

FCFS, SJF, RASP and dedicated pools never preempt (`step_rounds = "never"`: a step boundary changes nothing for
them, so the controller skips those rounds). SRTF preempts at step boundaries while work waits.
"""

from __future__ import annotations

from genserve.core.errors import ValidationError
from genserve.core.plan import HOLD, Action, ActionKind, Plan
from genserve.core.request import RequestStatus
from genserve.core.snapshot import ImageView, Snapshot, VideoView
from genserve.scheduling.options import PolicyOptions

_RUNNING = RequestStatus.RUNNING
_PAUSED = RequestStatus.PAUSED
_QUEUED = RequestStatus.QUEUED
_CONTINUE = ActionKind.CONTINUE
_START = ActionKind.START
_RESUME = ActionKind.RESUME
_INF = float("inf")

# RASP: static SP degree by video resolution (pixels per frame). 256p -> 1, 480p -> 2, 720p (768) -> 4.
# Thresholds sit at the geometric means of neighbouring profiled sizes, so nearby sizes map the same way.
RASP_THRESHOLDS = ((122_880, 1), (368_640, 2))  # <= 256x256..480x480 boundary -> 1, <= ..768x768 -> 2, else 4
RASP_TOP = 4


def rasp_degree(width: int, height: int) -> int:
    px = width * height
    for limit, p in RASP_THRESHOLDS:
        if px <= limit:
            return p
    return RASP_TOP


def find_group(snap: Snapshot, degree: int, free: set[int], pool: set[int] | None = None) -> tuple[int, ...] | None:
    """The lowest aligned SP block of `degree` whose GPUs are all free (and in `pool`), else None."""
    if degree == 1:
        cands = free if pool is None else free & pool
        return (min(cands),) if cands else None
    for grp in snap.cluster.groups(degree):
        if all(g in free for g in grp) and (pool is None or all(g in pool for g in grp)):
            return grp
    return None


def image_batch(snap: Snapshot, head: ImageView, same_shape: list[ImageView], taken) -> list[str]:
    """EDF batching for `head`: add queued images of the same model, size and steps in deadline order while the
    bigger batch's latency lets every member that can meet its deadline still meet it; skip (defer) the rest."""
    prof = snap.profile
    now = snap.now
    model, w, h, steps = head.model, head.width, head.height, head.steps
    maxb = prof.max_batch(model)
    t1 = prof.image_latency(model, w, h, 1, steps)
    members = [head.id]
    limit = head.deadline if now + t1 <= head.deadline else _INF
    for c in same_shape:
        if len(members) >= maxb:
            break
        if c.id in taken or c.id == head.id:
            continue
        t = now + prof.image_latency(model, w, h, len(members) + 1, steps)
        lim = min(limit, c.deadline) if now + t1 <= c.deadline else limit
        if t <= lim:
            members.append(c.id)
            limit = lim
    return members


_CONTINUE_ACTIONS: dict[tuple[int, ...], Action] = {}


def continue_on(gpus: tuple[int, ...]) -> Action:
    """The (shared, immutable) CONTINUE action for a GPU set."""
    a = _CONTINUE_ACTIONS.get(gpus)
    if a is None:
        a = _CONTINUE_ACTIONS[gpus] = Action(_CONTINUE, gpus)
    return a


class _Baseline:
    """Shared machinery: running videos continue; queued requests are placed greedily in `order`, skipping those
    that do not fit (work-conserving: no GPU idles while a queued request fits)."""

    name = "baseline"
    preemptive = False
    step_rounds = "never"

    def __init__(self, options: PolicyOptions | None = None) -> None:
        self.options = options or PolicyOptions()
        self.batching = self.options.batching_or(False)
        self._memo: dict[str, float] = {}

    # ---- hooks -----------------------------------------------------------------------------------------------
    def degree(self, snap: Snapshot, v: VideoView) -> int:
        return 1

    def order(self, snap: Snapshot, queued: list) -> list:
        """Queued images and videos in service order (FCFS: arrival)."""
        return sorted(queued, key=lambda r: (r.arrival, r.id))

    def pools(self, snap: Snapshot) -> tuple[set[int] | None, set[int] | None]:
        """GPUs images may use, GPUs videos may use (None: any)."""
        return None, None

    # ---- estimates (memoised per request id; they depend only on the request) ----------------------------------
    def total_runtime(self, snap: Snapshot, r) -> float:
        """Estimated end-to-end runtime at the policy's degree, batch 1."""
        hit = self._memo.get(r.id)
        if hit is not None:
            return hit
        prof = snap.profile
        if isinstance(r, ImageView):
            value = prof.image_latency(r.model, r.width, r.height, 1, r.steps)
        else:
            value = (prof.text_encode(r.model) + r.steps * prof.video_step(r.model, r.width, r.height, r.frames,
                                                                           self._capped(snap, r))
                     + prof.video_decode(r.model, r.width, r.height, r.frames))
        self._memo[r.id] = value
        if len(self._memo) > 200_000:
            self._memo.clear()
        return value

    def _capped(self, snap: Snapshot, v: VideoView) -> int:
        p = self.degree(snap, v)
        usable = [d for d in snap.cluster.usable_degrees if d <= p]
        return usable[-1] if usable else 1

    # ---- plan ------------------------------------------------------------------------------------------------
    def plan(self, snap: Snapshot) -> Plan:
        plan = Plan()
        actions = plan.actions
        queued: list = []
        for v in snap.videos:
            st = v.status
            if st is _RUNNING:
                actions[v.id] = continue_on(v.gpus)
            elif st is _PAUSED:
                actions[v.id] = HOLD
            else:
                queued.append(v)
        free = set(snap.free_gpus())
        if not free or not (queued or snap.images):
            for v in queued:
                actions[v.id] = HOLD
            for im in snap.images:
                actions[im.id] = HOLD
            return plan
        queued.extend(snap.images)
        self.place(snap, plan, self.order(snap, queued), free)
        return plan

    def place(self, snap: Snapshot, plan: Plan, items: list, free: set[int]) -> None:
        actions = plan.actions
        img_pool, vid_pool = self.pools(snap)
        shapes: dict[tuple, list[ImageView]] | None = None
        for r in items:
            if not free:
                break
            if r.id in actions:
                continue
            if isinstance(r, ImageView):
                cands = free if img_pool is None else free & img_pool
                if not cands:
                    continue
                g = max(cands)
                if self.batching:
                    if shapes is None:
                        shapes = {}
                        for im in sorted(snap.images, key=lambda x: (x.deadline, x.arrival, x.id)):
                            shapes.setdefault(im.batch_key, []).append(im)
                    members = image_batch(snap, r, shapes[r.batch_key], actions)
                else:
                    members = [r.id]
                plan.add_batch(members, g)
                free.discard(g)
            else:
                grp = find_group(snap, self._capped(snap, r), free, vid_pool)
                if grp is not None:
                    actions[r.id] = Action(_START, grp)
                    free.difference_update(grp)
        for r in items:
            if r.id not in actions:
                actions[r.id] = HOLD


class FCFS(_Baseline):
    """First come, first served: arrival order, no preemption, SP 1, images unbatched by default."""

    name = "fcfs"


class SJF(_Baseline):
    """Shortest job first: shortest estimated total runtime (isolated, SP 1) first; non-preemptive."""

    name = "sjf"

    def order(self, snap: Snapshot, queued: list) -> list:
        return sorted(queued, key=lambda r: (self.total_runtime(snap, r), r.arrival, r.id))


class RASP(_Baseline):
    """Static SP degree by video resolution (256p -> 1, 480p -> 2, 720p -> 4), FCFS order, non-preemptive."""

    name = "rasp"

    def degree(self, snap: Snapshot, v: VideoView) -> int:
        return rasp_degree(v.width, v.height)


class Dedicated(_Baseline):
    """Dedicated pools: `options.image_gpus` GPUs (the highest-numbered) serve images only, the rest videos only;
    FCFS within each pool. Default: a quarter of the cluster (2 of 8) for images."""

    name = "dedicated"

    def image_gpu_count(self, n: int) -> int:
        x = self.options.image_gpus
        if x is None:
            x = max(1, n // 4)
        if not 1 <= x <= n - 1:
            raise ValidationError(f"dedicated pools need 1..{n - 1} image GPUs of {n}, got {x}")
        return x

    def pools(self, snap: Snapshot) -> tuple[set[int] | None, set[int] | None]:
        n = snap.cluster.num_gpus
        x = self.image_gpu_count(n)
        return set(range(n - x, n)), set(range(0, n - x))


class SRTF(_Baseline):
    """Shortest remaining time first, preemptive: each round the requests with the least remaining work (queued
    images and videos, running and paused videos) hold the GPUs; a running video that loses is paused at its next
    step boundary (its state stays on its leader; at most `max_paused_per_gpu` paused states per GPU, else it keeps
    running). Videos at SP 1; images are not preemptible. Rounds at step boundaries while work waits."""

    name = "srtf"
    preemptive = True
    step_rounds = "when_waiting"

    def remaining(self, snap: Snapshot, r) -> float:
        if isinstance(r, ImageView) or r.status is _QUEUED:
            return self.total_runtime(snap, r)
        p = r.degree if r.status is _RUNNING and r.degree else 1
        key = (r.id, p)
        hit = self._vmemo.get(key)
        if hit is None:
            prof = snap.profile
            hit = self._vmemo[key] = (prof.video_step(r.model, r.width, r.height, r.frames, p),
                                      prof.video_decode(r.model, r.width, r.height, r.frames))
            if len(self._vmemo) > 200_000:
                self._vmemo.clear()
        return (r.steps - r.steps_done) * hit[0] + hit[1]

    def __init__(self, options: PolicyOptions | None = None) -> None:
        super().__init__(options)
        self._vmemo: dict[tuple[str, int], tuple[float, float]] = {}

    def _batch_for(self, snap: Snapshot, r: ImageView, taken: set[str], state: dict) -> list[str]:
        shapes = state.get("shapes")
        if shapes is None:
            shapes = state["shapes"] = {}
            for im in sorted(snap.images, key=lambda x: (x.deadline, x.arrival, x.id)):
                shapes.setdefault(im.batch_key, []).append(im)
        return image_batch(snap, r, shapes[r.batch_key], taken)

    def plan(self, snap: Snapshot) -> Plan:
        plan = Plan()
        actions = plan.actions
        now = snap.now
        waiting: list[tuple[float, int, float, str, object]] = []
        running: list[VideoView] = []
        for v in snap.videos:
            st = v.status
            if st is _RUNNING:
                if v.decoding:
                    actions[v.id] = continue_on(v.gpus)
                else:
                    running.append(v)
            else:
                waiting.append((self.remaining(snap, v), 1 if st is _PAUSED else 2, v.arrival, v.id, v))
        for im in snap.images:
            waiting.append((self.total_runtime(snap, im), 2, im.arrival, im.id, im))
        free_now = snap.free_gpus()
        if len(waiting) <= len(free_now):
            # nobody has to give way: running videos continue, every waiting request gets a free GPU
            for v in running:
                actions[v.id] = continue_on(v.gpus)
            waiting.sort(key=lambda c: c[:4])
            self._assign(snap, plan, [c[4] for c in waiting], free_now, {}, set())
            return plan

        cands = waiting + [(self.remaining(snap, v), 0, v.arrival, v.id, v) for v in running]
        cands.sort(key=lambda c: c[:4])
        busy = snap.busy_until
        capacity = sum(1 for b in busy if b <= now)  # GPUs not held by batches or decodes
        winners: list = []
        used = 0
        batches: dict[str, list[str]] = {}
        taken: set[str] = set()
        state: dict = {}
        for c in cands:
            r = c[4]
            if r.id in taken:
                continue
            need = r.degree if isinstance(r, VideoView) and r.status is _RUNNING else 1
            if used + need > capacity:
                continue
            used += need
            winners.append(r)
            taken.add(r.id)
            if isinstance(r, ImageView) and self.batching:
                members = self._batch_for(snap, r, taken, state)
                batches[r.id] = members
                taken.update(members)
            if used >= capacity:
                break

        win_ids = {r.id for r in winners}
        losers = [v for v in running if v.id not in win_ids]
        maxp = self.options.max_paused_per_gpu
        slots: dict[int, int] = {}
        for v in snap.videos:
            if v.status is _PAUSED and v.id not in win_ids and v.home_gpu is not None:
                slots[v.home_gpu] = slots.get(v.home_gpu, 0) + 1
        forced: list[VideoView] = []
        pausing: list[VideoView] = []
        for v in sorted(losers, key=lambda v: -self.remaining(snap, v)):
            leader = v.gpus[0]
            if maxp is not None and slots.get(leader, 0) >= maxp:
                forced.append(v)
            else:
                slots[leader] = slots.get(leader, 0) + 1
                pausing.append(v)
        newcomers = [r for r in winners if not (isinstance(r, VideoView) and r.status is _RUNNING)]
        for v in forced:  # cannot pause: it keeps its GPUs, so the lowest-ranked newcomers give way
            give = v.degree
            while give > 0 and newcomers:
                give -= 1
                newcomers.pop()

        held: set[int] = set()
        for r in winners:
            if isinstance(r, VideoView) and r.status is _RUNNING:
                actions[r.id] = continue_on(r.gpus)
                held.update(r.gpus)
        for v in forced:
            actions[v.id] = continue_on(v.gpus)
            held.update(v.gpus)
        for v in pausing:
            actions[v.id] = HOLD
        at_boundary = [g for v in pausing if v.busy_until <= now for g in v.gpus]
        later = [g for v in pausing if v.busy_until > now for g in v.gpus]
        order = [g for g in free_now + at_boundary + later if g not in held]
        self._assign(snap, plan, newcomers, order, batches, None)
        for c in cands:
            rid = c[3]
            if rid not in actions:
                actions[rid] = HOLD
        return plan

    def _assign(self, snap: Snapshot, plan: Plan, newcomers: list, order: list[int], batches: dict[str, list[str]],
                taken: set[str] | None) -> None:
        """Give `newcomers` (in rank order) GPUs from `order` (preferred first): images (batched when on, unless
        `batches` already says), queued videos START, paused videos RESUME (on their home GPU when it is offered).
        With `taken` given, batches are formed here; whoever gets no GPU holds."""
        actions = plan.actions
        pool = set(order)
        state: dict = {}
        k = 0
        for r in newcomers:
            if r.id in actions:
                continue
            if not pool:
                actions[r.id] = HOLD
                continue
            while order[k] not in pool:
                k += 1
            g = order[k]
            if isinstance(r, ImageView):
                members = batches.get(r.id)
                if members is None:
                    if taken is not None and self.batching:
                        taken.add(r.id)
                        members = self._batch_for(snap, r, taken.union(actions), state)
                        taken.update(members)
                    else:
                        members = [r.id]
                plan.add_batch(members, g)
            else:
                if r.status is _PAUSED and r.home_gpu in pool:
                    g = r.home_gpu
                actions[r.id] = Action(_RESUME if r.status is _PAUSED else _START, (g,))
            pool.discard(g)
