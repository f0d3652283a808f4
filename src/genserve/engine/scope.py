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

from functools import lru_cache

from genserve.core.plan import Action, ImageBatch, Plan
from genserve.core.snapshot import ClusterSpec, Snapshot, VideoView

_CLUSTERS: dict[tuple, ClusterSpec] = {}


def sub_cluster(num_gpus: int, per_node: int, degrees: tuple[int, ...]) -> ClusterSpec:
    """One ClusterSpec object per shape (policies cache per-cluster tables on it)."""
    key = (num_gpus, per_node, degrees)
    c = _CLUSTERS.get(key)
    if c is None:
        c = _CLUSTERS[key] = ClusterSpec(num_gpus, per_node, degrees)
    return c


def _moved(v: VideoView, local: dict[int, int], groups: dict[tuple, tuple]) -> VideoView:
    new = object.__new__(VideoView)  # a copy of the frozen view with its GPU ids renumbered (fast)
    d = new.__dict__
    d.update(v.__dict__)
    gpus = v.gpus
    if gpus:
        g = groups.get(gpus)
        if g is None:
            g = groups[gpus] = tuple(local[g] for g in gpus)
        d["gpus"] = g
    h = v.home_gpu
    if h is not None:
        d["home_gpu"] = local.get(h)  # None: a paused video dispatched here from another node
    return new


@lru_cache(maxsize=1024)
def _maps(per: int, nodes: tuple[int, ...]):
    """For a node set: local -> global GPU ids, global -> local, the set (read-only), and a cache of GPU groups
    renumbered global -> local (a node holds few distinct groups)."""
    gmap = [n * per + i for n in nodes for i in range(per)]
    return gmap, {g: i for i, g in enumerate(gmap)}, frozenset(nodes), {}


def gpu_map(per: int, nodes) -> list[int]:
    """Local -> global GPU ids for a sorted node set (shared: do not modify)."""
    return _maps(per, tuple(nodes))[0]


def renumbered_views(items, per: int, nodes: list[int], cache: dict[str, tuple]) -> tuple[VideoView, ...]:
    """The views of `items` ((view, progress) of videos in `nodes` (sorted)), GPUs renumbered as `scoped_views`
    does; progress, when not None, is (steps_done, busy_until) to put in the copy (a video inside a multi-step
    run). `cache` (video id -> (view, numbering, copy, progress), owned by the caller) keeps each copy while its
    view object, the node set's numbering and the progress stay the same: a view changes only at its video's
    events (and its progress at step boundaries), so most copies are reused from round to round."""
    _, local, _, groups = _maps(per, tuple(nodes))
    out = []
    for v, pos in items:
        hit = cache.get(v.id)
        if hit is not None and hit[0] is v and hit[1] is local and hit[3] == pos:  # (it holds v: no id reuse)
            out.append(hit[2])
            continue
        new = _moved(v, local, groups)
        if pos is not None:
            d = new.__dict__
            d["steps_done"], d["busy_until"] = pos
        cache[v.id] = (v, local, new, pos)
        out.append(new)
    return tuple(out)


def scoped_views(views, images, per: int, nodes: list[int], assigned: dict[str, int] | None = None):
    """The videos and images of `nodes` (sorted), GPUs renumbered 0.. in node order (see `sub_snapshot`)."""
    _, local, keep, groups = _maps(per, tuple(nodes))
    out = []
    for v in views:
        if v.gpus:
            node = v.gpus[0] // per
        elif assigned is not None:
            node = assigned.get(v.id)
        elif v.home_gpu is not None:
            node = v.home_gpu // per
        else:
            continue
        if node in keep:
            out.append(_moved(v, local, groups))
    return tuple(out), assigned_images(images, per, nodes, assigned)


def assigned_images(images, per: int, nodes: list[int], assigned: dict[str, int] | None) -> tuple:
    """The queued images assigned to `nodes` (every image without `assigned`: they may go anywhere)."""
    if assigned is None:
        return tuple(images)
    keep = _maps(per, tuple(nodes))[2]
    return tuple(im for im in images if assigned.get(im.id) in keep)


def sub_snapshot(snap: Snapshot, nodes: list[int], assigned: dict[str, int] | None = None
                 ) -> tuple[Snapshot, list[int]]:
    """The snapshot restricted to `nodes` (sorted), GPUs renumbered 0.. in node order, and the map local -> global.

    Keeps running videos led in those nodes. Waiting work: without `assigned`, paused videos homed there (queued
    work must not exist: the caller scopes such rounds only while nothing waits); with `assigned` (request ->
    node, engine/dispatch.py), the queued and paused requests assigned to those nodes, a paused one homed
    elsewhere without a home GPU (it resumes on GPUs of these nodes)."""
    cl = snap.cluster
    gmap = gpu_map(cl.gpus_per_node, nodes)
    videos, images = scoped_views(snap.videos, snap.images, cl.gpus_per_node, nodes, assigned)
    busy = tuple(snap.busy_until[g] for g in gmap)
    sub = Snapshot(now=snap.now, cluster=sub_cluster(len(gmap), cl.gpus_per_node, cl.sp_degrees),
                   profile=snap.profile, images=images, videos=videos, busy_until=busy,
                   last_image_arrival=snap.last_image_arrival, info={**snap.info, "scope": list(nodes)})
    return sub, gmap


_LIFTED: dict[int, tuple] = {}  # per GPU map (by identity): (the map, id(action) -> (action, lifted action))


def lift_plan(plan: Plan, gmap: list[int]) -> Plan:
    """A plan on a sub-snapshot, with GPU ids mapped back to the cluster. (`gmap` is cached by identity, as
    `gpu_map` shares it: do not modify it.)"""
    entry = _LIFTED.get(id(gmap))
    if entry is None or entry[0] is not gmap:  # (the entry holds its map: the id is not reused while cached)
        if len(_LIFTED) > 1024:
            _LIFTED.clear()
        entry = _LIFTED[id(gmap)] = (gmap, {})
    lifted = entry[1]
    actions = {}
    for rid, a in plan.actions.items():
        if a.gpus:
            # policies reuse their Action objects round after round: the lifted one is found by identity (hashing
            # an Action runs Python code); the pair holds the action, so its id is not reused while cached
            hit = lifted.get(id(a))
            if hit is not None and hit[0] is a:
                a = hit[1]
            else:
                if len(lifted) > 4096:  # (a policy that builds new actions every round)
                    lifted.clear()
                m = Action(a.kind, tuple(gmap[g] for g in a.gpus), a.batch)
                lifted[id(a)] = (a, m)
                a = m
        actions[rid] = a
    batches = [_image_batch(b.request_ids, gmap[b.gpu]) for b in plan.batches] if plan.batches else []
    out = object.__new__(Plan)  # (the dataclass's __init__ with its default factories costs more than the rest)
    out.__dict__.update(actions=actions, batches=batches, wake_at=plan.wake_at)
    return out


def _image_batch(request_ids: tuple[str, ...], gpu: int) -> ImageBatch:
    b = object.__new__(ImageBatch)  # the frozen dataclass's __init__ without its per-field setattr
    b.__dict__.update(request_ids=request_ids, gpu=gpu)
    return b


def fast_snapshot(now: float, cluster: ClusterSpec, profile, images: tuple, videos: tuple, busy: tuple,
                  last_image_arrival: float | None, info: dict) -> Snapshot:
    """A Snapshot built without the frozen dataclass's per-field checks (the controller's hot path: its fields
    are consistent by construction)."""
    s = object.__new__(Snapshot)
    s.__dict__.update(now=now, cluster=cluster, profile=profile, images=images, videos=videos, busy_until=busy,
                      last_image_arrival=last_image_arrival, info=info)
    return s
