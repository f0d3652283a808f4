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

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

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


class VideoOptions(NamedTuple):
    """What the solver needs of one video: the value of holding and its non-hold candidates (block, value, ...):
    tuples whose first two fields are the block and the value (a policy may keep more fields after them).
    A named tuple: a round builds one per video."""

    hold: float
    cands: Sequence[tuple] = ()


@dataclass
class Solution:
    best: dict[int, float]  # k GPUs for videos -> best total video value (holds included)
    _pick: object  # k -> the choice (a closure over the solve)

    def choose(self, k: int) -> dict[int, int]:
        """video index -> candidate index for the best solution using k GPUs (videos not listed hold)."""
        return self._pick(k)


def _merge(a: dict, b: dict) -> dict:
    """Max-plus convolution of two sibling vectors k -> (value, picks); their sizes add up to at most the parent's,
    so no cap is needed. Ties keep the first combination found."""
    out: dict[int, tuple] = {}
    for ka, (va, pa) in a.items():
        for kb, (vb, pb) in b.items():
            k = ka + kb
            v = va + vb
            o = out.get(k)
            if o is None or v > o[0]:
                out[k] = (v, pa + pb)
    return out


class VideoDP:
    """The tree DP for one round, reusable across `forbid` sets (only the node roots they touch are redone)."""

    def __init__(self, tree: Tree, num_gpus: int, videos: list[VideoOptions],
                 must: dict[int, frozenset[int]] | None = None, ignore: frozenset[int] | set[int] = frozenset()):
        self.tree = tree
        self.n = num_gpus
        self.videos = videos
        self.must = must or {}
        self.base = sum(v.hold for v in videos)
        nb = len(tree.blocks)
        on_block: dict[int, list[tuple[int, int, float, tuple[int, ...]]]] = {}
        index = tree.index
        for vi, v in enumerate(videos):
            cands = v.cands
            if not cands:
                continue
            hold = v.hold
            first_max, last_min = -1, num_gpus
            for ci, c in enumerate(cands):
                block = c[0]
                value = c[1]
                if block[0] > first_max:
                    first_max = block[0]
                if block[-1] < last_min:
                    last_min = block[-1]
                if value == NEG:
                    continue
                b = index.get(block)
                if b is None:
                    raise ValueError(f"candidate block {block} is not an aligned group")
                lst = on_block.get(b)
                if lst is None:
                    on_block[b] = [(vi, ci, value - hold, block)]
                else:
                    lst.append((vi, ci, value - hold, block))
            if first_max > last_min:  # blocks are contiguous: they share a GPU iff max(first) <= min(last)
                raise ValueError(f"video {vi}: candidates must share an anchor GPU (lie on one path of the tree)")
        self.on_block = on_block
        active = [False] * nb
        cons: dict[int, list[int]] = {}
        for b in on_block:
            x = b
            while x >= 0 and not active[x]:
                active[x] = True
                x = tree.parent[x]
        for g in self.must:
            x = tree.leaf[g]
            while x >= 0:
                active[x] = True
                cons.setdefault(x, []).append(g)
                x = tree.parent[x]
        self.active = active
        self.cons = cons
        # per constrained block: the videos allowed to take it whole (in every must set of the GPUs below it)
        allowed: dict[int, frozenset[int]] = {}
        for x, gs in cons.items():
            a = self.must[gs[0]]
            for g in gs[1:]:
                a = a & self.must[g]
            allowed[x] = a
        self.allowed = allowed
        self.ignore = frozenset(ignore)
        root_of = tree.__dict__.get("_root_of")
        if root_of is None:
            root_of = tree.__dict__["_root_of"] = {g: r for r in tree.roots for g in tree.blocks[r]}
        self.root_of = root_of
        size_eff = {r: len(tree.blocks[r]) for r in tree.roots}
        for g in self.ignore:
            r = root_of.get(g)
            if r is not None:
                size_eff[r] -= 1
        self.size_eff = size_eff
        self._cache: dict[tuple, tuple] = {}
        self._prefix: list = []  # (root vector, merge state after it, back-pointers) of the last solve
        self._prefix_key: tuple | None = None

    def _root(self, r: int, forbid: frozenset[int]) -> dict:
        """F of one root block, k -> (value, picks: the (video, candidate) pairs that reach it), candidates touching
        `forbid` excluded. (Nodes are small: carrying the picks is cheaper than back-pointers.)"""
        key = (r, forbid)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        tree, active, cons, allowed, on_block = self.tree, self.active, self.cons, self.allowed, self.on_block
        children = tree.children
        sizes = _sizes(tree)
        F: dict[int, dict[int, tuple]] = {}
        for x in _subtree(tree, r):  # bottom-up
            if not active[x]:
                continue
            best_self = None
            here = on_block.get(x)
            if here:
                ok = allowed.get(x)
                for vi, ci, val, block in here:
                    if ok is not None and vi not in ok:
                        continue
                    if forbid and not forbid.isdisjoint(block):
                        continue
                    if best_self is None or val > best_self[0]:
                        best_self = (val, ((vi, ci),))
            ch = children[x]
            if not ch:  # a leaf: nothing below it, so taking it whole always beats k = 1 otherwise
                if best_self is None:
                    F[x] = _EMPTY if x in cons else _ZERO
                else:
                    F[x] = {1: best_self} if x in cons else {0: _NONE, 1: best_self}
                continue
            cur = None
            for c in ch:
                if not active[c]:
                    continue  # an idle child adds nothing
                cur = F[c] if cur is None or cur is _ZERO else _merge(cur, F[c])
            if cur is None:
                cur = _ZERO
            if best_self is not None:
                o = cur.get(sizes[x])
                if o is None or best_self[0] > o[0]:
                    cur = dict(cur)
                    cur[sizes[x]] = best_self
            F[x] = cur
        out = F[r]
        self._cache[key] = out
        return out

    def solve(self, forbid: frozenset[int] | set[int] = frozenset(), cap: int | None = None) -> "Solution | None":
        """Best total value for every number k of GPUs the videos take (None when the constraints cannot hold).

        With `cap`, solutions leaving more than `cap` usable GPUs (not in `ignore`) are merged into one bucket,
        k = usable - cap, holding the best of them: enough when images can use at most `cap` GPUs.
        """
        forbid = frozenset(forbid)
        if forbid and any(g in forbid for g in self.must):
            return None
        tree = self.tree
        n_eff = self.n - len(self.ignore)
        U = n_eff if cap is None else max(0, min(cap, n_eff))
        offset = 0
        parts = []
        by_root: dict[int, set[int]] = {}
        root_of = self.root_of
        for g in forbid:
            by_root.setdefault(root_of.get(g), set()).add(g)
        none = frozenset()
        for r in tree.roots:
            if not self.active[r]:
                offset += self.size_eff[r]
                continue
            sub = frozenset(by_root[r]) if r in by_root else none
            f = self._root(r, sub)
            if not f:
                return None
            parts.append((r, f))
        base = self.base
        if len(parts) == 1 and not offset:  # one node: no merge over roots (the merge below, specialised)
            r, f = parts[0]
            se = self.size_eff[r]
            best: dict[int, tuple] = {}
            for k, fk in f.items():
                u = se - k
                if u > U:
                    u = U
                o = best.get(u)
                if o is None or fk[0] > o[0]:
                    best[u] = fk
            return Solution({n_eff - u: fk[0] + base for u, fk in best.items()},
                            lambda k: dict(best[n_eff - k][1]))
        # merge over roots in "unused usable GPUs" u, capped at U. The merge states after each root are kept: a
        # later solve (another forbid set) whose first roots are the same reuses them (same operations, same result)
        cur: dict[int, float] = {min(offset, U): 0.0}
        steps = []
        prev = self._prefix if self._prefix_key == (U, offset) else []
        chain: list = []
        reuse = True
        for i, (r, f) in enumerate(parts):
            if reuse and i < len(prev) and prev[i][0] is f:
                _, cur, arg = prev[i]
                steps.append(arg)
                chain.append(prev[i])
                continue
            reuse = False
            se = self.size_eff[r]
            new: dict[int, float] = {}
            arg: dict[int, tuple[int, int]] = {}
            for u1, v1 in cur.items():
                for k, (v2, _) in f.items():
                    u = u1 + se - k
                    if u > U:
                        u = U
                    v = v1 + v2
                    if v > new.get(u, NEG):
                        new[u] = v
                        arg[u] = (u1, k)
            cur = new
            steps.append(arg)
            chain.append((f, cur, arg))
        self._prefix, self._prefix_key = chain, (U, offset)
        if not cur:
            return None

        def pick(k: int) -> dict[int, int]:
            u = n_eff - k
            out: dict[int, int] = {}
            for (_, f), arg in zip(reversed(parts), reversed(steps)):
                u, kr = arg[u]
                if kr:
                    out.update(f[kr][1])
            return out

        return Solution({n_eff - u: v + base for u, v in cur.items()}, pick)


_NONE = (0.0, ())  # no GPU used, nothing picked
_ZERO = {0: _NONE}  # shared, never mutated
_EMPTY: dict[int, tuple] = {}


def _sizes(tree: Tree) -> list[int]:
    hit = tree.__dict__.get("_sizes")
    if hit is None:
        hit = tree.__dict__["_sizes"] = [len(b) for b in tree.blocks]
    return hit


def _subtree(tree: Tree, r: int) -> list[int]:
    """Blocks of the subtree rooted at r, children before parents."""
    cache = tree.__dict__.setdefault("_sub", {})
    hit = cache.get(r)
    if hit is None:
        order = []
        stack = [r]
        while stack:
            x = stack.pop()
            order.append(x)
            stack.extend(tree.children[x])
        hit = cache[r] = order[::-1]
    return hit


def solve(tree: Tree | None, num_gpus: int, videos: list[VideoOptions],
          must: dict[int, frozenset[int]] | None = None, forbid: frozenset[int] | set[int] = frozenset()
          ) -> Solution | None:
    """Best video value for every GPU count k, or None when the leaf constraints cannot all be met.

    `forbid`: GPUs no video may take (kept for images).
    """
    if tree is None:
        must = must or {}
        if forbid:
            if any(g in forbid for g in must):
                return None
            videos = [VideoOptions(v.hold, [(c[0], c[1] if forbid.isdisjoint(c[0]) else NEG) for c in v.cands])
                      for v in videos]
        return _solve_generic(num_gpus, videos, must, sum(v.hold for v in videos))
    return VideoDP(tree, num_gpus, videos, must).solve(forbid)


def _solve_generic(num_gpus: int, videos: list[VideoOptions], must: dict[int, frozenset[int]], base: float):
    """Exact DP over videos with the set of used GPUs as state (degrees that are not laminar; small clusters)."""
    states: dict[int, tuple[float, tuple]] = {0: (0.0, ())}
    for vi, v in enumerate(videos):
        nxt = dict(states)
        for mask, (val, picks) in states.items():
            for ci, c in enumerate(v.cands):
                block, value = c[0], c[1]
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
