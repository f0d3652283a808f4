"""The GenServe policy: one DP over preemption, elastic sequence parallelism and image batching.

Each round (a pure function of the snapshot):
1. classify GPUs: locked (a decoding video), held by a running video, busy finishing an image batch, free;
2. image side: EDF batching onto GPU slots gives the best image plan B*(g) for every budget g (images.py);
3. video side: per video a few candidates anchored to concrete aligned groups (hold / continue / one degree down /
   one degree up / resume or start at any degree around its anchor), valued (recoverable, 1/(1+|laxity|));
4. the tree DP (solver.py) gives the best video value for every GPU count k, exactly under the no-shared-GPU rule,
   the paused-per-GPU limit and the tail guard;
5. for every k, the images get the GPUs the videos leave; the best total (requests meeting their deadlines, then
   score) wins; the choice is backtracked and materialised as Plan actions.
"""

from __future__ import annotations

import gc
import weakref
from functools import lru_cache, partial

from genserve.core.plan import HOLD, Action, ActionKind, Plan
from genserve.core.request import RequestStatus
from genserve.core.snapshot import ClusterSpec, Snapshot, VideoView
from genserve.profiles import Profile
from genserve.scheduling.dp.images import ImageTable, plan_images
from genserve.scheduling.dp.solver import VideoDP, VideoOptions, build_tree, solve
from genserve.scheduling.dp.tuning import DEFAULT, Tuning
from genserve.scheduling.options import PolicyOptions

INF = float("inf")
_RUNNING_S = RequestStatus.RUNNING
_PAUSED_S = RequestStatus.PAUSED


# tests set this: every candidate's finish time, computed inline in the candidate loops, is checked against
# `_Round.finish`
_CHECK_FINISH = False

# VideoOptions built at C speed (the named tuple's own __new__ is a Python call; one per video per round)
_video_options = partial(tuple.__new__, VideoOptions)

# a video candidate: (block, value for the solver, kind, count, score), a plain tuple (the hot path builds
# thousands per round); value = count * big + score
_BLOCK, _VALUE, _KIND, _COUNT, _SCORE = range(5)

# Actions are immutable and the same (kind, block) recurs every round: one object each (bounded by the number of
# aligned groups times the action kinds)
_ACTIONS: dict[tuple, Action] = {}


def _action(kind: ActionKind, block: tuple[int, ...]) -> Action:
    a = _ACTIONS.get((kind, block))
    if a is None:
        a = _ACTIONS[(kind, block)] = Action(kind, block)
    return a


@lru_cache(maxsize=64)
def _cluster_info(num_gpus: int, per_node: int, degrees: tuple[int, ...]):
    """Per-cluster constants: usable degrees, and for every (GPU, degree) the aligned block around it."""
    cl = ClusterSpec(num_gpus, per_node, degrees)
    usable = cl.usable_degrees
    around: dict[int, list] = {}
    groups = {p: cl.groups(p) for p in usable}
    for p in usable:
        table: list = [None] * num_gpus
        for b in groups[p]:
            for g in b:
                table[g] = b
        around[p] = table
    valid = frozenset(b for gs in groups.values() for b in gs)
    return usable, around, groups, valid


# A plain Profile never changes (its lookups are memoised), so the timing memos a round fills (step times, decode
# times, costs, per-shape tables) live as long as it does. Other profiles (online correction) learn as they go:
# fresh memos every round.
_TIMING_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _timing_memos(profile) -> tuple[dict, dict, dict, dict, dict]:
    if type(profile) is not Profile:
        return {}, {}, {}, {}, {}
    memos = _TIMING_MEMOS.get(profile)
    if memos is None:
        memos = _TIMING_MEMOS[profile] = ({}, {}, {}, {}, {})
    return memos


class _Round:
    """Everything derived from one snapshot."""

    def __init__(self, snap: Snapshot, options: PolicyOptions, tuning: Tuning) -> None:
        self.snap = snap
        self.opt = options
        self.tun = tuning
        self.now = now = snap.now
        self.cluster = cl = snap.cluster
        self.profile = snap.profile
        n = self.n = cl.num_gpus
        self.owner = [-1] * n  # running (non-decoding) video index holding the GPU
        self.locked = [False] * n
        self.videos = list(snap.videos)
        self.usable, self.around, self.groups, self.valid = _cluster_info(n, cl.gpus_per_node, cl.sp_degrees)
        # _degs: (model, usable degrees) -> the model's usable profiled degrees, and (model, usable, degree) -> (one
        # degree down, one degree up)
        self._ts, self._dec, self._cost, self._shapes, self._degs = _timing_memos(snap.profile)
        self._bstart: dict[tuple, float] = {}  # block -> when a video that does not run now could start on it
        self._vshape: list = [None] * len(self.videos)
        step_end = self.step_end = [0.0] * len(self.videos)
        owner, locked = self.owner, self.locked
        for i, v in enumerate(self.videos):
            if v.status is _RUNNING_S:
                if v.decoding:
                    for g in v.gpus:
                        locked[g] = True
                    step_end[i] = v.busy_until if v.busy_until > now else now
                    continue
                for g in v.gpus:
                    owner[g] = i
                b = v.busy_until
                step_end[i] = (b if b > now else now) if b >= now - 1e-9 else self._step_end(v)
            else:
                b = v.busy_until
                step_end[i] = b if b > now else now
        bu = snap.busy_until
        # veligible: GPUs a video may take this round (its own, another running video's, or idle ones);
        # free: idle ones; avail: when each GPU could start an image if no video keeps it
        self.veligible = veligible = [False] * n
        self.free = free = [False] * n
        self.avail = avail = [0.0] * n
        for g in range(n):
            o = owner[g]
            b = bu[g]
            if locked[g]:
                avail[g] = INF
            elif o >= 0:
                veligible[g] = True
                e = step_end[o]
                avail[g] = e if e >= b else b
            else:
                if b <= now:
                    veligible[g] = free[g] = True
                avail[g] = b if b > now else now
        self.image_active = (snap.last_image_arrival is not None
                             and now - snap.last_image_arrival < options.idle_resume_s)

    def _step_end(self, v: VideoView) -> float:
        """When a running video's in-flight step ends (now when it is at a step boundary).

        A view whose `busy_until` lies in the past is read as "mid-step, the step began then": a view may keep
        the last boundary time while the video continues (the controller refreshes views on changes only), and
        a round at a video's boundary happens at exactly that time.
        """
        now = self.now
        if v.status is not RequestStatus.RUNNING or v.decoding:
            return max(now, v.busy_until)
        b = v.busy_until
        if b >= now - 1e-9:
            return max(now, b)
        dur = self.profile.video_step(v.model, v.width, v.height, v.frames, max(1, len(v.gpus)))
        if dur <= 0:
            return now
        k = int((now - b) / dur) + 1
        return b + k * dur

    # ---- video timing --------------------------------------------------------------------------------
    def degrees(self, v: VideoView) -> tuple[int, ...]:
        key = (v.model, self.usable)
        d = self._degs.get(key)
        if d is None:
            prof = set(self.profile.degrees(v.model))
            d = self._degs[key] = tuple(p for p in self.usable if p in prof)  # (shared across rounds)
        return d

    def t_step(self, v: VideoView, p: int) -> float:
        key = (v.model, v.width, v.height, v.frames, p)
        t = self._ts.get(key)
        if t is None:
            t = self._ts[key] = self.profile.video_step(v.model, v.width, v.height, v.frames, p)
        return t

    def decode(self, v: VideoView) -> float:
        key = (v.model, v.width, v.height, v.frames)
        t = self._dec.get(key)
        if t is None:
            t = self._dec[key] = self.profile.video_decode(v.model, v.width, v.height, v.frames)
        return t

    def block_start(self, vi: int, block: tuple[int, ...]) -> float:
        """Earliest time video vi could run on `block`: other occupants first finish their in-flight step."""
        t = self.now
        for g in block:
            o = self.owner[g]
            if o >= 0 and o != vi:
                t = max(t, self.step_end[o])
        return t

    def _shape(self, vi: int):
        """Per-video memo: (step time by degree, decode time), shared by videos of one shape."""
        v = self.videos[vi]
        key = (v.model, v.width, v.height, v.frames)
        sh = self._shapes.get(key)
        if sh is None:
            sh = self._shapes[key] = ({}, self.decode(v))
        self._vshape[vi] = sh
        return sh

    def finish(self, vi: int, block: tuple[int, ...]) -> float:
        # the same arithmetic as t_step / decode / block_start / cost, with per-video memos (hot path)
        v = self.videos[vi]
        p = len(block)
        sh = self._vshape[vi] or self._shape(vi)
        ts = sh[0].get(p)
        if ts is None:
            ts = sh[0][p] = self.t_step(v, p)
        dec = sh[1]
        rem = v.steps - v.steps_done
        status = v.status
        if status is _RUNNING_S:
            t0 = self.step_end[vi]
            r = max(0, rem - 1) if t0 > self.now else rem
            if block == v.gpus:
                return t0 + r * ts + dec
            t = max(t0, self.block_start(vi, block))
            return t + self.cost("reconf", v.model, p) + r * ts + dec
        t = self.block_start_idle(block)
        if status is _PAUSED_S:
            t += self.cost("resume", v.model, p)
        else:
            t += self.cost("encode", v.model, 0)
        return t + rem * ts + dec

    def block_start_idle(self, block: tuple[int, ...]) -> float:
        """`block_start` for a video that does not run now (no GPU of the block is its own): a per-round memo."""
        t = self._bstart.get(block)
        if t is None:
            t = self.now
            owner, step_end = self.owner, self.step_end
            for g in block:
                o = owner[g]
                if o >= 0:
                    e = step_end[o]
                    if e > t:
                        t = e
            self._bstart[block] = t
        return t

    def cost(self, kind: str, model: str, p: int) -> float:
        key = (kind, model, p)
        c = self._cost.get(key)
        if c is None:
            prof = self.profile
            if kind == "reconf":
                c = prof.reconfigure_cost(model, p)
            elif kind == "resume":
                c = prof.resume_cost(model, p)
            else:
                c = prof.text_encode(model)
            self._cost[key] = c
        return c

    def budget_tight(self, v: VideoView) -> bool:
        """The paper's resume trigger: time to deadline below the remaining time at SP 1."""
        return v.deadline - self.now < v.remaining_steps * self.t_step(v, 1) + self.decode(v)

class GenServePolicy:
    """`genserve`: the SLO-aware DP scheduler (spec sections 3-5), with a tail guard."""

    name = "genserve"
    # rounds on every event, at step boundaries only while something is queued or paused (and at the next boundary
    # of a video that just changed degree: it moves one degree per round); see the controller's round_due.
    # Same SAR per seed as "always" on the compare settings, far fewer rounds, and the simulator coalesces steps.
    step_rounds = "events_or_waiting"
    # while nothing waits, the DP decomposes by node: the controller may plan only the touched nodes
    # (engine/scope.py)
    node_scoped_rounds = True
    # on several nodes: two-level scheduling, each waiting request dispatched to one node (engine/dispatch.py)
    node_dispatch = True

    def __init__(self, options: PolicyOptions | None = None, tuning: Tuning | None = None) -> None:
        self.options = options or PolicyOptions()
        self.tuning = tuning or DEFAULT
        self.preemptive = bool(self.options.preemption)
        self.batching = self.options.batching_or(True)

    def plan(self, snapshot: Snapshot) -> Plan:
        # A round allocates many short-lived containers (candidates, DP vectors) and creates no reference cycles
        # (checked: gc.collect() finds nothing after a round), so the cyclic collector has nothing to find here.
        # Left on, its young-generation passes re-scan the round's live objects and its older passes the whole
        # heap of the caller (a simulator's 100,000 records): 40-60 % of a 1024-GPU round. Off for the round,
        # restored after; plans are unchanged.
        gc_on = gc.isenabled()
        if gc_on:
            gc.disable()
        try:
            r = _Round(snapshot, self.options, self.tuning)
            if not self.options.dp:
                from genserve.scheduling.dp.greedy import greedy_plan

                return greedy_plan(r, self.batching)
            return _dp_plan(r, self.batching)
        finally:
            if gc_on:
                gc.enable()


# ---- the DP round -------------------------------------------------------------------------------------
def _fast_path(r: _Round) -> Plan | None:
    """Nothing waits, no GPU is idle and every running video is on time at its degree, which is faster than the
    next smaller one: all continue.

    (The DP would choose the same: a pause, a degree drop or a move frees GPUs nobody can use and finishes no
    sooner, and no video needs another's GPUs to become feasible. Tested against the DP.)"""
    if r.snap.images or any(r.free):
        return None
    plan = Plan()
    for vi, v in enumerate(r.videos):
        if v.status is not RequestStatus.RUNNING:
            return None
        if not v.decoding:
            if v.deadline < r.finish(vi, tuple(v.gpus)):
                return None
            p = len(v.gpus)
            lower = [q for q in r.degrees(v) if q < p] if r.opt.elastic_sp else []
            if lower and r.t_step(v, lower[-1]) <= r.t_step(v, p):
                return None  # a smaller group would be as fast (e.g. 256p at SP 8): let the DP decide
        plan.actions[v.id] = Action(ActionKind.CONTINUE, tuple(v.gpus))
    return plan


def _dp_plan(r: _Round, batching: bool) -> Plan:
    fast = _fast_path(r)
    if fast is not None:
        return fast
    opt, tun, cl = r.opt, r.tun, r.cluster
    videos = r.videos
    nv = len(videos)
    big = 2.0 * (nv + len(r.snap.images) + 2)  # value = count * big + score, score sums stay below big
    elastic = opt.elastic_sp
    limit = max(0, opt.max_paused_per_gpu)
    tree = build_tree(cl.num_gpus, cl.gpus_per_node, cl.sp_degrees)
    around = r.around

    def block_around(g: int, p: int) -> tuple[int, ...] | None:
        t = around.get(p)
        return t[g] if t is not None else None

    # aligned blocks are contiguous GPU ranges: a prefix count of ineligible GPUs checks one in O(1)
    inel = [0] * (r.n + 1)
    acc = 0
    for g, ok in enumerate(r.veligible):
        if not ok:
            acc += 1
        inel[g + 1] = acc

    def eligible(b: tuple[int, ...]) -> bool:
        return inel[b[-1] + 1] == inel[b[0]]

    cands: list[list[tuple]] = [[] for _ in range(nv)]  # (block, value, kind, count, score), see _BLOCK..
    feasible = [False] * nv  # some candidate meets the deadline (counts)
    hold_val: list[tuple[int, float]] = [(0, 0.0)] * nv
    anchor: list[int | None] = [None] * nv
    fixed: dict[int, Action] = {}
    paused_home: dict[int, list[int]] = {}

    now = r.now
    slack_ref = [0.0] * nv  # slack at the current degree (running) or at SP 1 from now (others)
    r.slack_ref = slack_ref
    prefer_fast, w_victim = tun.prefer_fast, tun.victim_weight
    lost_score = tun.lost_video_score
    age_after = tun.age_after if opt.tail_guard else None

    check_finish = _CHECK_FINISH

    def add(vi: int, v: VideoView, kind: ActionKind, block: tuple[int, ...], f: float) -> None:
        """Candidate (kind, block) of video vi, finishing at f (`_Round.finish`), valued (recoverable, score).

        Paper: score 1/(1+|laxity|). Ours (`prefer_fast`): among feasible candidates the earlier finish scores
        higher (idle GPUs make videos finish sooner, which frees them for later arrivals), optionally plus a
        per-video term `victim_weight`/(1+slack) (0 by default: it made things worse). A candidate that misses
        the deadline scores `lost_video_score`/(1+|laxity|) and counts zero, unless the tail guard's ageing
        (`age_after` x its SLO past its deadline) makes it count again, so feasible work cannot starve it."""
        if check_finish and f != r.finish(vi, block):  # (tests: the inlined arithmetic is `finish`'s)
            raise AssertionError(f"video {v.id}: finish on {block} is {r.finish(vi, block)}, the loop said {f}")
        lax = v.deadline - f
        if lax >= 0:
            c = 1
            feasible[vi] = True
            if prefer_fast:
                s = 0.5 + (0.5 - w_victim) / (1.0 + (f - now)) + w_victim / (1.0 + max(0.0, slack_ref[vi]))
            else:
                s = 1.0 / (1.0 + lax)
        else:
            s = lost_score / (1.0 - lax)
            c = 0
            if age_after is not None and now - v.deadline >= age_after * max(1e-9, v.deadline - v.arrival):
                c = 1
                feasible[vi] = True
        cands[vi].append((block, c * big + s, kind, c, s))

    def hold_value(v: VideoView, p_ref: int, base: float) -> tuple[int, float]:
        """A hold scores zero in the paper. With `hold_counts`, a video that can still finish on time after a
        pause of `hold_horizon_s` at degree p_ref stays counted; its score drops by 0.25/(1+slack), so among
        videos that can afford a pause the one with the most slack is paused first (the paper's victim order)."""
        if not tun.hold_counts:
            return 0, 0.0
        f = r.now + tun.hold_horizon_s + v.remaining_steps * r.t_step(v, p_ref) + r.decode(v)
        slack = v.deadline - f
        if slack < 0:
            return 0, 0.0
        return 1, base - 0.25 / (1.0 + slack)

    pool: list[int] = []
    gated_until = None
    RUNNING, PAUSED = RequestStatus.RUNNING, RequestStatus.PAUSED
    CONT, RECONF = ActionKind.CONTINUE, ActionKind.RECONFIGURE
    valid = r.valid
    hold_counts = tun.hold_counts
    t_step, decode = r.t_step, r.decode
    nbr = r._degs
    usable = r.usable
    any_free = any(r.free)
    # finish times below are `_Round.finish` inlined, with the same arithmetic (hot path: thousands per round)
    owner, step_end, vshape, cost = r.owner, r.step_end, r._vshape, r.cost
    for vi, v in enumerate(videos):
        status = v.status
        if status is RUNNING:
            gpus = v.gpus
            if v.decoding:
                fixed[vi] = _action(CONT, gpus)
                continue
            tsd, dec = vshape[vi] or r._shape(vi)
            p = len(gpus)
            rem = v.steps - v.steps_done
            t0 = step_end[vi]
            rr = (rem - 1 if rem > 0 else 0) if t0 > now else rem  # steps after the one in flight
            on_valid = gpus in valid
            if on_valid:
                ts = tsd.get(p)
                if ts is None:
                    ts = tsd[p] = t_step(v, p)
                f = t0 + rr * ts + dec
                slack_ref[vi] = v.deadline - f
                anchor[vi] = gpus[0]
                add(vi, v, CONT, gpus, f)
            else:
                slack_ref[vi] = v.deadline - now - (v.steps - v.steps_done) * t_step(v, 1) - decode(v)
                anchor[vi] = gpus[0]
            if elastic:
                key = (v.model, usable, p)
                ud = nbr.get(key)
                if ud is None:
                    degs = r.degrees(v)
                    lower = [q for q in degs if q < p]
                    higher = [q for q in degs if q > p]
                    ud = nbr[key] = (lower[-1] if lower else 0, higher[0] if higher else 0)
                for q in ud:  # one degree down, then one up (0: none)
                    if not q or q not in around:
                        continue
                    if q > p:
                        lo, hi = (gpus[0], gpus[-1]) if on_valid else (min(gpus), max(gpus))
                        b = around[q][lo]
                        if not (b and b[0] <= lo and hi <= b[-1] and eligible(b)):
                            continue
                        if tun.gate_scale_up and r.image_active and not slack_ref[vi] < 0:
                            continue
                    else:
                        b = around[q][gpus[0]]
                        if not b:
                            continue
                    t = t0 if t0 >= now else now  # others on the block first finish their step
                    for g in b:
                        o = owner[g]
                        if o >= 0 and o != vi:
                            e = step_end[o]
                            if e > t:
                                t = e
                    tq = tsd.get(q)
                    if tq is None:
                        tq = tsd[q] = t_step(v, q)
                    add(vi, v, RECONF, b, t + cost("reconf", v.model, q) + rr * tq + dec)
            if hold_counts:
                c0 = cands[vi][0] if cands[vi] else None
                base = c0[_SCORE] if c0 is not None and c0[_COUNT] else 0.5
                hold_val[vi] = hold_value(v, p, base)
            continue
        if not v.decoding:
            slack_ref[vi] = v.deadline - now - (v.steps - v.steps_done) * t_step(v, 1) - decode(v)
        if status is PAUSED:
            h = v.home_gpu
            if h is not None:
                paused_home.setdefault(h, []).append(vi)
            hold_val[vi] = hold_value(v, 1, 0.5)
            if tun.gate_resume and r.image_active and not r.budget_tight(v):
                gated_until = r.snap.last_image_arrival + opt.idle_resume_s
                continue
            if h is not None and 0 <= h < r.n and r.veligible[h] and not (
                    tun.resume_elsewhere and not r.free[h] and any_free):
                anchor[vi] = h
            else:
                pool.append(vi)
        else:
            hold_val[vi] = hold_value(v, 1, 0.5)
            pool.append(vi)

    # pool videos (queued, or paused with an unusable home): allocate an anchor in EDF order, best fit
    _anchor_pool(r, pool, anchor)

    # leaf constraints: paused-per-GPU limit, no preemption, tail guard
    must: dict[int, set[int]] = {}

    def require(g: int, allowed: set[int]) -> None:
        must[g] = must[g] & allowed if g in must else set(allowed)

    preemption = opt.preemption
    critical = tun.critical_rule
    soft: dict[int, set[int]] = {}
    guard = opt.tail_guard
    max_pauses, cap_feasible_only = tun.max_pauses, tun.cap_feasible_only
    RESUME, START = ActionKind.RESUME, ActionKind.START
    for vi, v in enumerate(videos):
        a = anchor[vi]
        if a is None or vi in fixed:
            continue
        if v.status is not RUNNING:
            kind = RESUME if v.status is PAUSED else START
            tsd, dec = vshape[vi] or r._shape(vi)
            rem = v.steps - v.steps_done
            for q in (r.degrees(v) if elastic else (1,)):
                b = block_around(a, q)
                if b and eligible(b):
                    tq = tsd.get(q)
                    if tq is None:
                        tq = tsd[q] = t_step(v, q)
                    t = r.block_start_idle(b) + cost("resume" if kind is RESUME else "encode", v.model,
                                                     q if kind is RESUME else 0)
                    add(vi, v, kind, b, t + rem * tq + dec)
            continue
        L = v.gpus[0]
        ph = paused_home.get(L)
        if not preemption or (len(ph) if ph else 0) >= limit:
            homed = [u for u in ph if anchor[u] == L] if ph else []
            require(L, {vi} | (set(homed) if preemption else set()))
        # never pause a video with slack <= 0 that can still make it (a hopeless one may yield)
        if critical and slack_ref[vi] <= 0 and feasible[vi]:
            require(L, {vi})
        if guard and v.pauses >= max_pauses and (not cap_feasible_only or feasible[vi]):
            soft[L] = {vi}

    options = [_video_options((hc * big + hs, co)) for (hc, hs), co in zip(hold_val, cands)]

    must_f = {g: frozenset(x) for g, x in must.items()}
    merged = None
    if soft:
        m2 = {g: set(x) for g, x in must.items()}
        for g, x in soft.items():
            m2[g] = m2[g] & x if g in m2 else set(x)
        if all(m2.values()):
            merged = {g: frozenset(x) for g, x in m2.items()}

    locked = frozenset(g for g in range(r.n) if r.locked[g]) if any(r.locked) else frozenset()
    cap = len(r.snap.images)  # images never use more GPUs than there are images
    dps: dict = {}

    def run_solve(forbid=frozenset()):
        for key, m in (("guard", merged), ("must", must_f), ("none", {})):
            if m is None or (key == "none" and forbid):
                continue
            if tree is None:
                sol = solve(None, r.n, options, m, forbid)
            else:
                dp = dps.get(key)
                if dp is None:
                    dp = dps[key] = VideoDP(tree, r.n, options, m, locked)
                sol = dp.solve(forbid, cap)
            if sol is not None:
                return sol
        return None

    if not r.snap.images:
        # the best video solution: the first k of the highest value, as the branch and bound below would pick
        sol = run_solve()
        vbest = sol.best
        choice, batches = sol.choose(max(vbest, key=vbest.__getitem__)), []
    else:
        # images: slots left by each video solution; branch and bound over k with an optimistic image bound
        table = ImageTable(r.snap.images, r.profile, batching, tun.lost_image_score)
        img_gpus = [g for g in range(r.n) if not r.locked[g]]
        owner_lax = {}
        for g in (img_gpus if table.images else ()):
            o = r.owner[g]
            if o >= 0 and o not in owner_lax:
                owner_lax[o] = slack_ref[o]
        # slot order: earliest first; among equal times idle GPUs, then the GPUs of the video with the most laxity
        all_slots = sorted((r.avail[g], -owner_lax[r.owner[g]] if r.owner[g] >= 0 else -INF, g)
                           for g in (img_gpus if table.images else ()))
        all_slots = [(x[0], x[2]) for x in all_slots]
        if table.images:
            _, ub_c, _ = plan_images(table, all_slots)
        else:
            ub_c = [0]

        n_img = len(table.images)
        lost_img = tun.lost_image_score

        def img_bound(budget: int) -> float:
            # an upper bound on the image value with `budget` GPUs: at most ub_c[j] on time (the earliest slots), each
            # scoring <= 1, the rest <= lost_image_score. (The score sum of the earliest slots is no bound: an image
            # started later has less slack and scores higher.)
            j = min(budget, len(ub_c) - 1)
            c = ub_c[j]
            return c * big + c + max(0, n_img - c) * lost_img

        locked_n = r.n - len(img_gpus)
        best = None

        def bnb(sol) -> None:
            nonlocal best
            order = sorted(sol.best.items(), key=lambda kv: -(kv[1] + img_bound(r.n - locked_n - kv[0])))
            for k, vval in order:
                bound = vval + img_bound(r.n - locked_n - k)
                if best is not None and bound <= best[0] + 1e-9:
                    break
                choice = sol.choose(k)
                used = set()
                for vi, ci in choice.items():
                    used.update(cands[vi][ci][_BLOCK])
                if table.images:
                    slots = []
                    need = len(table.images)  # one batch per slot, at least one image per batch
                    for t, g in all_slots:
                        if g not in used:
                            slots.append((t, g))
                            if len(slots) >= need:
                                break
                    batches, c, s = plan_images(table, slots)
                    ival, icount = c[-1] * big + s[-1], c[-1]
                else:
                    batches, ival, icount = [], 0.0, 0
                total = vval + ival
                if best is None or total > best[0] + 1e-9:
                    best = (total, choice, batches, icount)

        bnb(run_solve())
        if table.images and best[3] < ub_c[-1]:
            # keep the g earliest slots for images (the per-k optimum does not know which GPUs it leaves)
            for g in range(1, len(ub_c)):
                if ub_c[g] == ub_c[g - 1]:
                    continue  # that slot adds no image on time
                forbid = frozenset(gpu for _, gpu in all_slots[:g])
                sol = run_solve(forbid)
                if sol is not None:
                    bnb(sol)
                if best[3] >= ub_c[-1]:
                    break  # every image that can be on time is

        _, choice, batches, _ = best

    plan = Plan(wake_at=gated_until)
    for vi, v in enumerate(videos):
        if vi in fixed:
            plan.actions[v.id] = fixed[vi]
        elif vi in choice:
            c = cands[vi][choice[vi]]
            kind, block = c[_KIND], c[_BLOCK]
            if kind is ActionKind.RECONFIGURE and block == v.gpus:
                kind = ActionKind.CONTINUE
            plan.actions[v.id] = _action(kind, block)
        else:
            plan.actions[v.id] = HOLD
    for im in r.snap.images:
        plan.actions[im.id] = HOLD
    for b in batches:
        plan.add_batch(b.ids, b.gpu)
    return plan


def _anchor_pool(r: _Round, pool: list[int], anchor: list) -> None:
    """Give each queued video (and each paused one whose home is unusable) an anchor GPU: videos that can still
    meet their deadline first, shortest work first (see below).

    The anchor is the first GPU of a free aligned block of the smallest degree that meets its deadline from now
    (best fit: blocks in the fullest node region first, which keeps large blocks whole). With no free block the
    anchor is the leader of the running video with the most slack (the paper's victim order), so the DP can
    weigh a swap. The DP then considers every degree around the anchor.
    """
    if not pool:
        return
    videos = r.videos
    free = list(r.free)
    for vi, a in enumerate(anchor):  # paused videos anchored at home keep their home out of the pool
        if a is not None and videos[vi].status is RequestStatus.PAUSED:
            free[a] = False
    top_deg = r.usable[-1]
    top = r.around[top_deg]
    # blocks are contiguous GPU ranges: count the GPUs that are not free in one with a prefix sum
    taken = [0] * (len(free) + 1)
    acc = 0
    for g, f in enumerate(free):
        if not f:
            acc += 1
        taken[g + 1] = acc
    fill: dict[tuple, int] | None = None
    # candidate free blocks per degree, best fit first (built when first needed; stale entries are skipped)
    free_blocks: dict[int, list] = {}

    def blocks_of(q: int) -> list:
        nonlocal fill
        lst = free_blocks.get(q)
        if lst is None:
            if fill is None:
                fill = {b: taken[b[-1] + 1] - taken[b[0]] for b in r.groups.get(top_deg, ())}
            lst = [(-fill.get(top[b[0]], 0), b[0], b) for b in r.groups.get(q, ())
                   if taken[b[-1] + 1] == taken[b[0]]]
            lst.sort()
            free_blocks[q] = lst
        return lst

    # Anchor order (beyond the paper, which is EDF): videos that can still meet their deadline first, shortest
    # work first among them. EDF hands free GPUs to the oldest, often already lost, videos and collapses under
    # sustained overload (heavy mix, 400 requests at 24/min: 23% SLO met, SRTF 69%; with this order 64%).
    wants: dict[int, tuple[int, bool]] = {}
    elastic = r.opt.elastic_sp
    order: dict[int, tuple] = {}
    for vi in pool:
        v = videos[vi]
        degs = r.degrees(v) if elastic else (1,)
        rem = v.steps - v.steps_done
        extra = r.now + r.cost("encode", v.model, 0) + r.decode(v)
        w = (degs[-1], False)
        for q in degs:
            if extra + rem * r.t_step(v, q) <= v.deadline:
                w = (q, True)
                break
        wants[vi] = w
        order[vi] = (not w[1], rem * r.t_step(v, 1), v.deadline, v.id)
    pool = sorted(pool, key=order.__getitem__)
    victims = None
    next_victim = 0
    head: dict[int, int] = {}
    usable = r.usable
    for vi in pool:
        v = videos[vi]
        degs = r.degrees(v) if elastic else (1,)
        want = wants[vi][0]
        got = None
        for q in [q for q in degs if q <= want][::-1]:
            lst = blocks_of(q) if q in usable else None
            if not lst:
                continue
            pos = head.get(q, 0)
            while pos < len(lst) and not all(free[g] for g in lst[pos][2]):
                pos += 1  # taken since: never free again this round
            head[q] = pos
            if pos < len(lst):
                got = lst[pos][2]
                break
        if got is not None:
            anchor[vi] = got[0]
            for g in got:
                free[g] = False
            continue
        if not r.opt.preemption:
            continue
        if victims is None:  # running videos by descending slack, each the anchor of at most one pool video
            victims = []
            for ui, u in enumerate(videos):
                if u.status is RequestStatus.RUNNING and not u.decoding and u.gpus:
                    slack = r.slack_ref[ui]
                    if slack > 0:
                        victims.append((-slack, u.id, ui))
            victims.sort()
        if next_victim < len(victims):
            ui = victims[next_victim][2]
            next_victim += 1
            anchor[vi] = videos[ui].gpus[0]
