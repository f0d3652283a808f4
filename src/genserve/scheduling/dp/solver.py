"""Stage 2 of the GenServe solver: the knapsack over videos with the no-shared-GPU rule, made exact by a tree DP.

Every video candidate is anchored to a concrete aligned SP group (a "block"). With the default degrees {1, 2, 4, 8}
(more generally, when each degree divides the next) aligned blocks form a laminar family: two blocks are either
disjoint or nested, so they are the nodes of a tree (GPU leaves, blocks of 2, of 4, ... up to the largest block in a
node; the cluster is the forest of those roots). All candidates of one video lie on one root path: they are blocks
around one anchor GPU (a running video's leader: down / continue / up; a paused video's home; a queued video's
allocated slot). Hence:

    F_X[k] = best value of the videos anchored inside block X, using exactly k GPUs of X, every chosen block in X
           = max( F_left (+) F_right [k],                       no video takes X whole
                  value(v, X) if k == |X| for v with a candidate on X )   one video takes X; the rest in X hold

where (+) is the max-plus convolution over k. Values are relative to "every video holds", so a video that is not
chosen anywhere holds. A video is counted at most once: its candidates lie on one path, and choosing a block
replaces everything below it. Two chosen blocks never overlap: siblings are disjoint and a chosen block excludes
its subtree. So the DP is exactly the best disjoint combination for every GPU count k (tested against brute
force). Cost: O(sum over blocks of |X|^2) = O(N * S) inside nodes of S GPUs, plus the merge of node roots,
O(nodes * N * S) with numpy, and O(candidates) to seed it.

Hard rules enter as leaf constraints: `must[g]` (GPU g must be covered by one of the videos in `allowed[g]`) encodes
both the paused-per-GPU limit (when the videos homed on g would overflow it, one of them must run there) and the
tail guard's "this video may not be paused again".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

NEG = float("-inf")


@dataclass
class Tree:
    blocks: list[tuple[int, ...]]  # block id -> GPUs, ordered bottom-up (degree ascending)
    index: dict[tuple[int, ...], int]
    children: list[list[int]]
    parent: list[int]
    roots: list[int]
    leaf: list[int]  # gpu -> leaf block id (-1 when the GPU is in no block)


@lru_cache(maxsize=64)
def build_tree(num_gpus: int, gpus_per_node: int, degrees: tuple[int, ...]) -> Tree | None:
    """The block forest of a cluster, or None when its degrees do not form a laminar family."""
    from genserve.core.snapshot import ClusterSpec

    cluster = ClusterSpec(num_gpus, gpus_per_node, degrees)
    degs = list(cluster.usable_degrees)
    if any(degs[i + 1] % degs[i] for i in range(len(degs) - 1)):
        return None
    blocks: list[tuple[int, ...]] = []
    for p in degs:
        blocks.extend(cluster.groups(p))
    index = {b: i for i, b in enumerate(blocks)}
    children: list[list[int]] = [[] for _ in blocks]
    parent = [-1] * len(blocks)
    by_degree = {p: {b[0]: index[b] for b in cluster.groups(p)} for p in degs}
    for i, b in enumerate(blocks):
        p = len(b)
        k = degs.index(p)
        for q in degs[k + 1:]:
            s = b[0] - b[0] % q
            j = by_degree[q].get(s)
            if j is not None:
                parent[i] = j
                children[j].append(i)
                break
    leaf = [-1] * num_gpus
    for b in cluster.groups(1):
        leaf[b[0]] = index[b]
    roots = [i for i in range(len(blocks)) if parent[i] < 0]
    return Tree(blocks, index, children, parent, roots, leaf)


@dataclass
class VideoOptions:
    """What the solver needs of one video: the value of holding and its non-hold candidates (block, value)."""

    hold: float
    cands: list[tuple[tuple[int, ...], float]] = field(default_factory=list)


@dataclass
class Solution:
    best: dict[int, float]  # k GPUs for videos -> best total video value (holds included)
    _pick: object  # backtracking closure

    def choose(self, k: int) -> dict[int, int]:
        """video index -> candidate index for the best solution using k GPUs (videos not listed hold)."""
        return self._pick(k)


def _merge(a: dict, b: dict, cap: int):
    out: dict[int, float] = {}
    arg: dict[int, tuple[int, int]] = {}
    for ka, va in a.items():
        for kb, vb in b.items():
            k = ka + kb
            if k > cap:
                continue
            v = va + vb
            if v > out.get(k, NEG):
                out[k] = v
                arg[k] = (ka, kb)
    return out, arg


def solve(tree: Tree | None, num_gpus: int, videos: list[VideoOptions],
          must: dict[int, frozenset[int]] | None = None, forbid: frozenset[int] | set[int] = frozenset()
          ) -> Solution | None:
    """Best video value for every GPU count k, or None when the leaf constraints cannot all be met.

    `forbid`: GPUs no video may take (kept for images).
    """
    must = must or {}
    if forbid:
        if any(g in forbid for g in must):
            return None
        videos = [VideoOptions(v.hold, [(b, val) if forbid.isdisjoint(b) else (b, NEG) for b, val in v.cands])
                  for v in videos]
    base = sum(v.hold for v in videos)
    if tree is None:
        return _solve_generic(num_gpus, videos, must, base)
    nb = len(tree.blocks)
    on_block: dict[int, list[tuple[int, int, float]]] = {}
    for vi, v in enumerate(videos):
        if len(v.cands) > 1 and not set(v.cands[0][0]).intersection(*(c[0] for c in v.cands[1:])):
            raise ValueError(f"video {vi}: candidates must share an anchor GPU (lie on one path of the tree)")
        for ci, (block, value) in enumerate(v.cands):
            if value == NEG:
                continue
            b = tree.index.get(block)
            if b is None:
                raise ValueError(f"candidate block {block} is not an aligned group")
            on_block.setdefault(b, []).append((vi, ci, value - v.hold))
    # which blocks need work: those with a candidate or a constrained leaf somewhere below
    active = [False] * nb
    cons: dict[int, list[int]] = {}  # block -> constrained GPUs inside
    for b in on_block:
        x = b
        while x >= 0 and not active[x]:
            active[x] = True
            x = tree.parent[x]
    for g in must:
        x = tree.leaf[g]
        while x >= 0:
            active[x] = True
            cons.setdefault(x, []).append(g)
            x = tree.parent[x]
    F: dict[int, dict[int, float]] = {}
    back: dict[int, object] = {}
    for x in range(nb):  # bottom-up: blocks are ordered by degree
        if not active[x]:
            continue
        ch = tree.children[x]
        if ch:
            cur: dict[int, float] = {0: 0.0}
            steps = []
            for c in ch:
                fc = F.get(c) if active[c] else {0: 0.0}
                cur, arg = _merge(cur, fc, len(tree.blocks[x]))
                steps.append((c, arg))
            split = steps
        else:
            cur = {} if x in cons else {0: 0.0}
            split = None
        size = len(tree.blocks[x])
        best_self = None
        cl = cons.get(x, ())
        for vi, ci, val in on_block.get(x, ()):
            if cl and any(vi not in must[g] for g in cl):
                continue
            if best_self is None or val > best_self[2]:
                best_self = (vi, ci, val)
        if best_self is not None and best_self[2] > cur.get(size, NEG):
            cur = dict(cur)
            cur[size] = best_self[2]
        else:
            best_self = None
        F[x] = cur
        back[x] = (split, best_self)
    # roots: merge with numpy when there are many, plain dicts otherwise
    roots = [r for r in tree.roots if active[r]]
    if any(not F[r] for r in roots):
        return None
    total, root_steps = _merge_roots([F[r] for r in roots], num_gpus)
    if not total:
        return None

    def pick_block(x: int, k: int, out: dict[int, int]) -> None:
        split, best_self = back[x]
        if best_self is not None and k == len(tree.blocks[x]):
            out[best_self[0]] = best_self[1]
            return
        if split is None:
            return
        ks = k  # walk the pairwise merges backwards
        for c, arg in reversed(split):
            ka, kc = arg[ks]
            if kc and active[c]:
                pick_block(c, kc, out)
            ks = ka

    def pick(k: int) -> dict[int, int]:
        out: dict[int, int] = {}
        for r, kr in zip(roots, root_steps(k)):
            if kr:
                pick_block(r, kr, out)
        return out

    return Solution({k: v + base for k, v in total.items()}, pick)


def _merge_roots(fs: list[dict[int, float]], cap: int):
    """Max-plus merge of the root vectors; returns (k -> value, k -> per-root GPU counts)."""
    if len(fs) <= 4:
        cur: dict[int, float] = {0: 0.0}
        args = []
        for f in fs:
            cur, arg = _merge(cur, f, cap)
            args.append(arg)

        def steps(k: int) -> list[int]:
            out = []
            for arg in reversed(args):
                ka, kb = arg[k]
                out.append(kb)
                k = ka
            return out[::-1]

        return cur, steps
    vec = np.full(cap + 1, NEG)
    vec[0] = 0.0
    hi = 0
    args = []
    for f in fs:
        new = np.full(cap + 1, NEG)
        arg = np.zeros(cap + 1, dtype=np.int32)
        top = min(cap, hi + max(f))
        for kb, vb in f.items():
            if kb > cap:
                continue
            n = min(hi, cap - kb) + 1
            cand = vec[:n] + vb
            seg = new[kb:kb + n]
            better = cand > seg
            if better.any():
                seg[better] = cand[better]
                arg[kb:kb + n][better] = kb
        hi = top
        vec = new
        args.append(arg)
    total = {int(k): float(vec[k]) for k in np.nonzero(vec > NEG)[0]}

    def steps(k: int) -> list[int]:
        out = []
        for arg in reversed(args):
            kb = int(arg[k])
            out.append(kb)
            k -= kb
        return out[::-1]

    return total, steps


def _solve_generic(num_gpus: int, videos: list[VideoOptions], must: dict[int, frozenset[int]], base: float):
    """Exact DP over videos with the set of used GPUs as state (degrees that are not laminar; small clusters)."""
    states: dict[int, tuple[float, tuple]] = {0: (0.0, ())}
    for vi, v in enumerate(videos):
        nxt = dict(states)
        for mask, (val, picks) in states.items():
            for ci, (block, value) in enumerate(v.cands):
                if value == NEG:
                    continue
                m = 0
                for g in block:
                    m |= 1 << g
                if mask & m:
                    continue
                if any(g in must and vi not in must[g] for g in block):
                    continue
                nm = mask | m
                nv = val + value - v.hold
                if nv > nxt.get(nm, (NEG,))[0]:
                    nxt[nm] = (nv, picks + ((vi, ci),))
        states = nxt
    best: dict[int, tuple[float, tuple]] = {}
    for mask, (val, picks) in states.items():
        if any(not (mask >> g) & 1 for g in must):
            continue
        k = bin(mask).count("1")
        if val > best.get(k, (NEG,))[0]:
            best[k] = (val, picks)
    if not best:
        return None
    return Solution({k: v + base for k, (v, _) in best.items()}, lambda k: dict(best[k][1]))
