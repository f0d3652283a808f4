"""Node-scoped rounds: plan only the nodes an event touched, when nothing waits anywhere.

With no queued image, no queued video and no paused video that could resume outside its node (its home GPU is
unusable, or taken while another GPU is idle: genserve then resumes it elsewhere), the GenServe DP decomposes by
node: SP groups never span nodes, the image side is empty, and the value of a
plan is a sum over nodes. The best plan for the cluster is then the best plan of each node, and a node whose state
did not change since it was last planned keeps that plan (its running videos are mid-step; its next event or step
boundary that matters brings it back into a round). So such a round plans the touched nodes only, on a snapshot
of just those nodes, with the very same policy code; the plan is mapped back to cluster GPU ids.

A policy opts in with `node_scoped_rounds = True` (it must be correct on any sub-cluster of whole nodes).
"""

from __future__ import annotations

from genserve.core.plan import Action, Plan
from genserve.core.snapshot import ClusterSpec, Snapshot, VideoView

_CLUSTERS: dict[tuple, ClusterSpec] = {}


def sub_cluster(num_gpus: int, per_node: int, degrees: tuple[int, ...]) -> ClusterSpec:
    """One ClusterSpec object per shape (policies cache per-cluster tables on it)."""
    key = (num_gpus, per_node, degrees)
    c = _CLUSTERS.get(key)
    if c is None:
        c = _CLUSTERS[key] = ClusterSpec(num_gpus, per_node, degrees)
    return c


def _moved(v: VideoView, local: dict[int, int]) -> VideoView:
    new = object.__new__(VideoView)  # a copy of the frozen view with its GPU ids renumbered (fast)
    d = new.__dict__
    d.update(v.__dict__)
    d["gpus"] = tuple(local[g] for g in v.gpus)
    if v.home_gpu is not None:
        d["home_gpu"] = local[v.home_gpu]
    return new


def sub_snapshot(snap: Snapshot, nodes: list[int]) -> tuple[Snapshot, list[int]]:
    """The snapshot restricted to `nodes` (sorted), GPUs renumbered 0.. in node order, and the map local -> global.

    Keeps running videos led in those nodes and paused videos homed there; queued work must not exist (the caller
    scopes only rounds where nothing waits)."""
    cl = snap.cluster
    per = cl.gpus_per_node
    gmap = [n * per + i for n in nodes for i in range(per)]
    local = {g: i for i, g in enumerate(gmap)}
    keep = set(nodes)
    videos = []
    for v in snap.videos:
        lead = v.gpus[0] if v.gpus else v.home_gpu
        if lead is not None and lead // per in keep:
            videos.append(_moved(v, local))
    busy = snap.busy_until
    sub = Snapshot(now=snap.now, cluster=sub_cluster(len(gmap), per, cl.sp_degrees), profile=snap.profile,
                   images=snap.images, videos=tuple(videos), busy_until=tuple(busy[g] for g in gmap),
                   last_image_arrival=snap.last_image_arrival, info={**snap.info, "scope": list(nodes)})
    return sub, gmap


def lift_plan(plan: Plan, gmap: list[int]) -> Plan:
    """A plan on a sub-snapshot, with GPU ids mapped back to the cluster."""
    out = Plan(wake_at=plan.wake_at)
    for rid, a in plan.actions.items():
        out.actions[rid] = Action(a.kind, tuple(gmap[g] for g in a.gpus), a.batch) if a.gpus else a
    for b in plan.batches:
        out.add_batch(b.request_ids, gmap[b.gpu])
    return out
