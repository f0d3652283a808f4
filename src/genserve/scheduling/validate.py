"""Structural checks of a plan against its snapshot (used by tests and the simulator's strict mode)."""

from __future__ import annotations

from collections import Counter

from genserve.core.plan import ActionKind, Plan
from genserve.core.request import RequestStatus
from genserve.core.snapshot import Snapshot

_VIDEO_KINDS = {
    RequestStatus.QUEUED: {ActionKind.HOLD, ActionKind.START},
    RequestStatus.RUNNING: {ActionKind.HOLD, ActionKind.CONTINUE, ActionKind.RECONFIGURE},
    RequestStatus.PAUSED: {ActionKind.HOLD, ActionKind.RESUME},
}


def plan_violations(snapshot: Snapshot, plan: Plan, max_paused_per_gpu: int | None = None) -> list[str]:
    """Every rule the plan breaks, as readable strings (empty when the plan is valid).

    Rules: one action per live request and none for unknown ids; a GPU is used at most once; total allocation
    <= N; video GPU sets are valid aligned SP groups; image batches are same-resolution and within the
    profiled batch size; a decoding video keeps its GPU; paused videos per GPU stay within the limit.
    """
    out: list[str] = []
    cluster = snapshot.cluster
    live = {im.id: im for im in snapshot.images}
    videos = {v.id: v for v in snapshot.videos}
    live_ids = set(live) | set(videos)
    for rid in set(plan.actions) - live_ids:
        out.append(f"action for unknown request {rid}")
    for rid in live_ids - set(plan.actions):
        out.append(f"no action for request {rid}")

    used = Counter(plan.gpus_used())
    for g, n in used.items():
        if n > 1:
            out.append(f"GPU {g} used {n} times")
        if not 0 <= g < cluster.num_gpus:
            out.append(f"GPU {g} does not exist")
    if sum(used.values()) > cluster.num_gpus:
        out.append(f"allocates {sum(used.values())} GPUs of {cluster.num_gpus}")

    for rid, v in videos.items():
        a = plan.actions.get(rid)
        if a is None:
            continue
        if a.kind not in _VIDEO_KINDS[v.status]:
            out.append(f"video {rid} ({v.status.value}) cannot {a.kind.value}")
            continue
        if v.decoding and (a.kind is not ActionKind.CONTINUE or a.gpus != v.gpus):
            out.append(f"video {rid} is decoding and must continue on {v.gpus}")
        if a.kind is not ActionKind.HOLD and not cluster.is_valid_group(a.gpus):
            out.append(f"video {rid}: {a.gpus} is not an aligned SP group of a valid degree")
        if a.kind is ActionKind.CONTINUE and a.gpus != v.gpus:
            out.append(f"video {rid}: continue must keep its GPUs {v.gpus}, got {a.gpus}")

    for i, b in enumerate(plan.batches):
        if not b.request_ids:
            out.append(f"batch {i} is empty")
            continue
        sizes = set()
        for rid in b.request_ids:
            im = live.get(rid)
            if im is None:
                out.append(f"batch {i} holds {rid}, which is not a queued image")
                continue
            sizes.add(im.batch_key)
            a = plan.actions.get(rid)
            if a is None or a.kind is not ActionKind.BATCH or a.batch != i:
                out.append(f"image {rid} is in batch {i} but its action says otherwise")
        if len(sizes) > 1:
            out.append(f"batch {i} mixes models, resolutions or step counts {sorted(sizes)}")
        elif sizes:
            model = next(iter(sizes))[0]
            if len(b.request_ids) > snapshot.profile.max_batch(model):
                out.append(f"batch {i} has {len(b.request_ids)} images, above the profiled maximum")
    for rid, a in plan.actions.items():
        if rid in live and a.kind not in (ActionKind.HOLD, ActionKind.BATCH):
            out.append(f"image {rid} cannot {a.kind.value}")
        if rid in live and a.kind is ActionKind.BATCH and (a.batch is None or a.batch >= len(plan.batches)
                                                            or rid not in plan.batches[a.batch].request_ids):
            out.append(f"image {rid} points at a batch that does not hold it")

    if max_paused_per_gpu is not None:
        paused: Counter[int] = Counter()
        for rid, v in videos.items():
            a = plan.actions.get(rid)
            if a is None or a.kind is not ActionKind.HOLD:
                continue
            if v.status is RequestStatus.PAUSED and v.home_gpu is not None:
                paused[v.home_gpu] += 1
            elif v.status is RequestStatus.RUNNING and v.gpus:
                paused[v.gpus[0]] += 1  # pausing keeps the state on the leader
        for g, n in paused.items():
            if n > max_paused_per_gpu:
                out.append(f"GPU {g} would hold {n} paused videos (limit {max_paused_per_gpu})")
    return out
