"""The ablation rungs without the DP: FCFS, and FCFS + preemption (spec section 3's rules, applied greedily).

With every switch off this is FCFS: arrival order, running work is never interrupted, videos at SP 1 (or, with
elastic SP, the smallest degree that meets the deadline from now), images one per GPU (batched when on).
With preemption: an image that finds no free GPU pauses the running video with the most slack (never one with
slack <= 0), in descending slack order; paused videos resume when budget-tight or after an idle period.
"""

from __future__ import annotations

from genserve.core.plan import HOLD, Action, ActionKind, Plan
from genserve.core.request import RequestStatus


def greedy_plan(r, batching: bool) -> Plan:
    videos = r.videos
    snap = r.snap
    plan = Plan()
    free = [g for g in range(r.n) if r.free[g]]
    free_set = set(free)
    for im in snap.images:
        plan.actions[im.id] = HOLD
    running = []
    for vi, v in enumerate(videos):
        if v.status is RequestStatus.RUNNING:
            plan.actions[v.id] = Action(ActionKind.CONTINUE, tuple(v.gpus))
            if not v.decoding:
                running.append(vi)
        else:
            plan.actions[v.id] = HOLD

    images = sorted(snap.images, key=lambda im: (im.arrival, im.id))
    placed: set[str] = set()

    def batch_for(head, start: float) -> list:
        members = [head]
        if not batching:
            return members
        key = head.batch_key
        maxb = r.profile.max_batch(head.model)
        for im in images:
            if len(members) >= maxb:
                break
            if im.id in placed or im is head or im.batch_key != key:
                continue
            lat = r.profile.image_latency(head.model, head.width, head.height, len(members) + 1, head.steps)
            if all(start + lat <= m.deadline for m in members + [im]):
                members.append(im)
        return members

    def place_image(im, gpu: int, start: float) -> None:
        members = batch_for(im, start)
        placed.update(m.id for m in members)
        plan.add_batch([m.id for m in members], gpu)

    # FCFS over queued images, queued videos and resumable paused videos
    queue = [("i", im.arrival, im.id, im) for im in images]
    for vi, v in enumerate(videos):
        if v.status is RequestStatus.QUEUED:
            queue.append(("v", v.arrival, v.id, vi))
        elif v.status is RequestStatus.PAUSED:
            if not r.image_active or r.budget_tight(v):
                queue.append(("v", v.arrival, v.id, vi))
            else:  # wait for the idle period: ask for a round when it would end
                plan.wake_at = snap.last_image_arrival + r.opt.idle_resume_s
    queue.sort(key=lambda e: (e[1], e[2]))
    blocked = False
    for kind, _, _, item in queue:
        if blocked:
            break
        if kind == "i":
            if item.id in placed:
                continue
            if not free:
                blocked = True
                break
            g = free.pop(0)
            free_set.discard(g)
            place_image(item, g, r.now)
        else:
            v = videos[item]
            block = _video_block(r, v, free_set)
            if block is None:
                blocked = True
                break
            for g in block:
                free_set.discard(g)
            free = [g for g in free if g in free_set]
            k = ActionKind.RESUME if v.status is RequestStatus.PAUSED else ActionKind.START
            plan.actions[v.id] = Action(k, block)

    if not r.opt.preemption:
        return plan
    # preemption: waiting images take GPUs from the videos with the most slack
    waiting = sorted((im for im in images if im.id not in placed), key=lambda im: (im.deadline, im.id))
    if not waiting:
        return plan
    paused_at = dict.fromkeys(range(r.n), 0)
    for v in videos:
        if v.status is RequestStatus.PAUSED and v.home_gpu is not None:
            paused_at[v.home_gpu] += 1
    victims = []
    for vi in running:
        v = videos[vi]
        slack = v.deadline - r.finish(vi, tuple(v.gpus))
        if slack <= 0 or paused_at[v.gpus[0]] >= r.opt.max_paused_per_gpu:
            continue
        if r.opt.tail_guard and v.pauses >= r.tun.max_pauses:
            continue
        victims.append((-slack, v.id, vi))
    victims.sort()
    slots: list[tuple[float, int]] = []
    for _, _, vi in victims:
        if not waiting:
            break
        v = videos[vi]
        plan.actions[v.id] = HOLD
        paused_at[v.gpus[0]] += 1
        slots.extend((r.step_end[vi], g) for g in v.gpus)
        slots.sort()
        while slots and waiting:
            t, g = slots.pop(0)
            im = waiting.pop(0)
            if im.id in placed:
                continue
            place_image(im, g, t)
            waiting = [w for w in waiting if w.id not in placed]
    return plan


def _video_block(r, v, free_set: set[int]):
    degs = r.degrees(v) if r.opt.elastic_sp else [1]
    want = degs
    if r.opt.elastic_sp:
        ok = [q for q in degs if r.now + v.remaining_steps * r.t_step(v, q) + r.decode(v) <= v.deadline]
        want = ok + [q for q in reversed(degs) if q not in ok]
    for q in want:
        for b in r.cluster.groups(q):
            if all(g in free_set for g in b):
                if v.status is RequestStatus.PAUSED and v.home_gpu is not None:
                    around = [c for c in r.cluster.groups(q) if v.home_gpu in c and all(g in free_set for g in c)]
                    if around:
                        return around[0]
                return b
    return None
