"""Two-level scheduling on multi-node clusters: each waiting request belongs to one node, each round plans nodes.

The flat GenServe DP sees the whole cluster in every round, and a round is due on every arrival and, while
anything waits, at every video step boundary anywhere: at 64 GPUs that is ~6 rounds per request at ~1 ms each.
Here a cheap cluster-level dispatcher gives every waiting request (queued image, queued video, paused video) a
node, and rounds plan only the nodes concerned with the very same policy code (engine/scope.py builds their
sub-snapshot): an arrival plans its node, a step boundary gets a round only in a node where an image waits (see
below), and an event plans the node it happened in.

Placement (`place`), at arrival or requeue:
* the node with a free aligned block big enough for the request (an image: one GPU; a video: the smallest degree
  that meets its deadline from now, else the largest free block), counting free GPUs already promised to the
  node's own waiting work; best fit (the fewest free GPUs) keeps large blocks whole for videos;
* else the node whose waiting work needs the fewest GPUs, then, for an image, whose running videos that could
  give GPUs away (positive slack, or a degree above 1) reach a step boundary first (a node DP preempts or shrinks
  a video only at its boundary), for a video the one holding the running video with the most slack (the flat
  DP's victim order).
Rebalancing (`rebalance`): before a round, a node with idle GPUs takes the most urgent waiting requests of the
cluster (its own, and those of nodes without an idle GPU) that its idle GPUs can hold: images first, then videos
that can still meet their deadline, shortest work first (the flat DP's order for queued videos). A paused video
so taken resumes there (its state moves, as "resume elsewhere" does in the flat DP).

Step boundaries are scheduling points only in nodes where an image waits. Images have deadlines of seconds and get
GPUs by preemption at boundaries; waiting videos (deadlines of minutes) are planned at arrivals, at completions
that free GPUs in their node, at image-driven rounds there, and through rebalancing: preempting a running video
for a queued one at some boundary rarely pays, and those boundary rounds were most of the rounds under load.

What it gives up against the flat DP: a waiting request is weighed against the videos of one node, not of the
cluster, and same-shape images waiting in different nodes are not batched together. The attainment study
(docs/simulator.md, `python -m genserve.experiments.two_level`) compares both at 16-64 GPUs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genserve.core.request import Modality, Request, RequestStatus
from genserve.engine.controller import run_position

if TYPE_CHECKING:
    from genserve.engine.controller import Controller

_RUNNING = RequestStatus.RUNNING


class NodeDispatcher:
    """Which node each waiting request belongs to (see the module docstring)."""

    def __init__(self, ctl: "Controller") -> None:
        self.ctl = ctl
        cl = ctl.cluster
        self.per = cl.gpus_per_node
        self.num_nodes = cl.num_gpus // cl.gpus_per_node
        self.degrees = tuple(p for p in cl.usable_degrees)
        # per degree, largest first: the bit masks of its aligned blocks inside a node
        self._masks = [(p, [((1 << p) - 1) << s for s in range(0, self.per, p)]) for p in reversed(self.degrees)]
        self._blocks: dict[int, int] = {}  # idle-GPU bit mask of a node -> its largest aligned block
        self.node_of: dict[str, int] = {}  # waiting request -> node
        self._need: dict[str, int] = {}  # waiting request -> GPUs it asks for (for placement arithmetic)
        self.items: list[dict[str, None]] = [{} for _ in range(self.num_nodes)]  # per node, in arrival order
        self.need = [0] * self.num_nodes  # per node: GPUs its waiting work asks for
        self.images = [0] * self.num_nodes  # per node: waiting images
        self._image_nodes: frozenset[int] | None = frozenset()  # nodes with images > 0 (None: to recompute)
        self.pulls = 0

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def assign(self, rid: str, node: int, need: int) -> None:
        self.drop(rid)
        self.node_of[rid] = node
        self._need[rid] = need
        self.items[node][rid] = None
        self.need[node] += need
        if self.ctl.requests[rid].modality is Modality.IMAGE:
            self.images[node] += 1
            if self.images[node] == 1:  # (the set of nodes changes only when a count leaves or reaches 0)
                self._image_nodes = None

    def drop(self, rid: str) -> None:
        node = self.node_of.pop(rid, None)
        if node is not None:
            self.need[node] -= self._need.pop(rid)
            del self.items[node][rid]
            if self.ctl.requests[rid].modality is Modality.IMAGE:
                self.images[node] -= 1
                if not self.images[node]:
                    self._image_nodes = None

    def waiting_nodes(self) -> set[int]:
        return {n for n, it in enumerate(self.items) if it}

    def image_nodes(self) -> frozenset[int]:
        """Nodes where an image waits: their step boundaries are scheduling points. (Asked several times per
        round: the same object until a node gains its first image or loses its last; read-only.)"""
        nodes = self._image_nodes
        if nodes is None:
            nodes = self._image_nodes = frozenset(n for n, k in enumerate(self.images) if k)
        return nodes

    # ---- placement ---------------------------------------------------------------------------------------
    def _largest_block(self, m: int) -> int:
        """The largest aligned block (a usable degree) inside one node's idle GPUs (bit mask `m`)."""
        p = self._blocks.get(m)
        if p is None:
            p = self._blocks[m] = next((p for p, masks in self._masks for b in masks if m & b == b), 0)
        return p

    def _wanted_degree(self, req: Request, now: float) -> int:
        """The smallest degree that meets the deadline from now (the largest one when none does)."""
        prof = self.ctl.profile
        profiled = set(prof.degrees(req.model))
        degs = [p for p in self.degrees if p in profiled] or [1]
        extra = now + prof.text_encode(req.model) + prof.video_decode(req.model, req.width, req.height, req.frames)
        for p in degs:
            if extra + req.steps * prof.video_step(req.model, req.width, req.height, req.frames, p) <= req.deadline:
                return p
        return degs[-1]

    def _yield_times(self, nodes) -> tuple[list[float], list[float]]:
        """Per node of `nodes` (inf / -inf for the others): the earliest step boundary of a running video that
        could give GPUs away (positive slack at its degree, or a degree above 1 to shrink from), and the largest
        slack of such a video (inf / -inf when none)."""
        ctl = self.ctl
        now = ctl.clock.now()
        per = self.per
        prof = ctl.profile
        first = [float("inf")] * self.num_nodes
        most = [float("-inf")] * self.num_nodes
        multi = ctl._multi
        videos = ctl._videos
        times: dict[tuple, tuple[float, float]] = {}  # video shape and degree -> (step, decode): few per cluster
        for rid in [rid for n in nodes for rid in ctl._by_node[n]]:  # running videos led in `nodes`
            vp = videos[rid]
            req = vp.request
            if req.status is not _RUNNING or vp.decoding or not vp.gpus:
                continue
            p = len(vp.gpus)
            key = (req.model, req.width, req.height, req.frames, p)
            tt = times.get(key)
            if tt is None:
                tt = times[key] = (prof.video_step(*key), prof.video_decode(*key[:4]))
            ts, dec = tt
            done = vp.steps_done
            if req.id in multi and vp.step_s > 0:
                done, t = run_position(vp, now)
            else:
                t = vp.busy_until if vp.in_flight else now
            slack = req.deadline - (t + (req.steps - done - 1) * ts + dec)
            if slack <= 0 and p == 1:
                continue
            n = vp.gpus[0] // per
            if t < first[n]:
                first[n] = t
            if slack > most[n]:
                most[n] = slack
        return first, most

    def place(self, req: Request) -> int:
        """Give a newly waiting request a node (and return it)."""
        now = self.ctl.clock.now()
        masks = self.ctl._free_masks  # (idle GPUs carry no batch or decode)
        room = [m.bit_count() - need for m, need in zip(masks, self.need)]
        if req.modality is Modality.IMAGE:
            want = 1
            fits = [n for n in range(self.num_nodes) if room[n] >= 1]
        else:
            want = self._wanted_degree(req, now)
            blocks = [self._largest_block(m) if r > 0 else 0 for m, r in zip(masks, room)]
            fits = [n for n in range(self.num_nodes) if blocks[n] >= want]
            if not fits:
                best = max(blocks)
                fits = [n for n in range(self.num_nodes) if best and blocks[n] == best]
        # (min and max return the first best: with candidates in node order, ties go to the lowest node)
        if fits:
            node = min(fits, key=room.__getitem__)
        else:  # no room: where a running video can give GPUs away soonest (images) / has the most slack (videos)
            low = min(self.need)  # (only the nodes whose waiting work needs the fewest GPUs are candidates)
            cands = [n for n in range(self.num_nodes) if self.need[n] == low]
            if len(cands) == 1:
                node = cands[0]
            else:
                first, most = self._yield_times(cands)
                if req.modality is Modality.IMAGE:
                    node = min(cands, key=first.__getitem__)
                else:
                    node = max(cands, key=most.__getitem__)
        self.assign(req.id, node, want)
        return node

    def _priority(self, rid: str, now: float) -> tuple:
        """Who gets idle GPUs first: images (earliest deadline first), then videos that can still meet their
        deadline, shortest work first (the flat DP's anchor order), then the others."""
        req = self.ctl.requests[rid]
        if req.modality is Modality.IMAGE:
            return (0, req.deadline)
        vp = self.ctl._videos[rid]
        prof = self.ctl.profile
        rem = req.steps - vp.steps_done
        t1 = prof.video_step(req.model, req.width, req.height, req.frames, 1)
        fixed = prof.video_decode(req.model, req.width, req.height, req.frames) + (
            0.0 if vp.ever_ran else prof.text_encode(req.model))
        profiled = set(prof.degrees(req.model))
        fast = min(prof.video_step(req.model, req.width, req.height, req.frames, p)
                   for p in self.degrees if p in profiled)
        feasible = now + fixed + rem * fast <= req.deadline
        return (1 if feasible else 2, rem * t1, req.deadline)

    def rebalance(self, nodes) -> list[int]:
        """Before a round: each of `nodes` with idle GPUs takes the most urgent waiting requests of the cluster
        (its own and those of nodes without an idle GPU) up to what its idle GPUs hold. Returns the nodes that
        gave work away."""
        masks = self.ctl._free_masks
        takers = [m for m in nodes if masks[m]]
        if not takers or not self.node_of:
            return []
        donors = [n for n in range(self.num_nodes) if self.items[n] and not masks[n]]
        if not donors:
            return []
        now = self.ctl.clock.now()
        prio = self._priority
        pool = {rid: (prio(rid, now), n) for n in donors for rid in self.items[n]}
        changed: set[int] = set()
        for m in takers:
            ranked = sorted([(prio(rid, now), rid, m) for rid in self.items[m]]
                            + [(k, rid, n) for rid, (k, n) in pool.items()])
            room = masks[m].bit_count()
            for _, rid, n in ranked:
                if room <= 0:
                    break
                room -= self._need[rid]
                if n != m:
                    self.assign(rid, m, self._need[rid])
                    del pool[rid]
                    changed.add(n)
                    self.pulls += 1
        return sorted(changed)
