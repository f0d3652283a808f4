"""The tree DP equals brute-force enumeration of every candidate combination."""

from __future__ import annotations

import itertools
import random

import pytest

from genserve.core.snapshot import ClusterSpec
from genserve.scheduling.dp import policy as policy_mod
from genserve.scheduling.dp.solver import VideoOptions, build_tree, solve
from genserve.scheduling.options import PolicyOptions

from snapshots import random_snapshot

NEG = float("-inf")


def brute_force(n: int, videos: list[VideoOptions], must: dict[int, frozenset[int]]) -> dict[int, float]:
    """k -> best total value over every combination (hold or one candidate per video) that is disjoint and
    covers every constrained GPU with one of its allowed videos."""
    best: dict[int, float] = {}
    choices = [[None] + list(range(len(v.cands))) for v in videos]
    for combo in itertools.product(*choices):
        owner: dict[int, int] = {}
        ok = True
        total = 0.0
        for vi, ci in enumerate(combo):
            if ci is None:
                total += videos[vi].hold
                continue
            block, value = videos[vi].cands[ci][:2]  # a policy may keep more fields after these
            if value == NEG:
                ok = False
                break
            total += value
            for g in block:
                if g in owner:
                    ok = False
                    break
                owner[g] = vi
            if not ok:
                break
        if not ok:
            continue
        if any(owner.get(g) not in allowed for g, allowed in must.items()):
            continue
        k = len(owner)
        if total > best.get(k, NEG):
            best[k] = total
    return best


def random_instance(rng: random.Random, cluster: ClusterSpec, nv: int, constrained: bool):
    videos = []
    degs = cluster.usable_degrees
    for _ in range(nv):
        anchor = rng.randrange(cluster.num_gpus)
        blocks = [b for p in degs for b in cluster.groups(p) if anchor in b]
        picked = rng.sample(blocks, rng.randint(0, len(blocks)))
        cands = [(b, rng.choice([0, 1, 1, 2]) * 10 + rng.random()) for b in picked]
        hold = rng.choice([0.0, 0.0, 10.0]) + rng.random() * 0.1
        videos.append(VideoOptions(hold, cands))
    must: dict[int, frozenset[int]] = {}
    if constrained:
        for _ in range(rng.randint(0, 2)):
            g = rng.randrange(cluster.num_gpus)
            must[g] = frozenset(rng.sample(range(nv), rng.randint(1, min(2, nv))))
    return videos, must


def _compare(cluster: ClusterSpec, videos, must) -> None:
    tree = build_tree(cluster.num_gpus, cluster.gpus_per_node, cluster.sp_degrees)
    sol = solve(tree, cluster.num_gpus, videos, must)
    want = brute_force(cluster.num_gpus, videos, must)
    if not want:
        assert sol is None
        return
    assert sol is not None
    assert set(sol.best) == set(want)
    for k, v in want.items():
        assert sol.best[k] == pytest.approx(v, abs=1e-9)
        # backtracking returns a disjoint combination with that value and k GPUs
        choice = sol.choose(k)
        used = [g for vi, ci in choice.items() for g in videos[vi].cands[ci][0]]
        assert len(used) == len(set(used)) == k
        value = sum(videos[vi].cands[ci][1] if vi in choice else videos[vi].hold
                    for vi, ci in [(vi, choice.get(vi)) for vi in range(len(videos))])
        assert value == pytest.approx(v, abs=1e-9)
        for g, allowed in must.items():
            assert any(g in videos[vi].cands[ci][0] and vi in allowed for vi, ci in choice.items())


@pytest.mark.parametrize("n,per_node", [(8, 8), (4, 4), (16, 8), (2, 2)])
def test_tree_dp_equals_brute_force(n, per_node):
    rng = random.Random(n * 1000 + per_node)
    cluster = ClusterSpec(n, per_node)
    for trial in range(250):
        videos, must = random_instance(rng, cluster, rng.randint(1, 5), constrained=trial % 2 == 1)
        _compare(cluster, videos, must)


def test_non_laminar_degrees_use_the_exact_generic_dp():
    cluster = ClusterSpec(6, 6, (1, 2, 3))
    assert build_tree(6, 6, (1, 2, 3)) is None
    rng = random.Random(7)
    for trial in range(150):
        videos = []
        for _ in range(rng.randint(1, 4)):
            blocks = [b for p in cluster.usable_degrees for b in cluster.groups(p)]
            cands = [(b, rng.random() * 20) for b in rng.sample(blocks, rng.randint(0, 4))]
            videos.append(VideoOptions(rng.random(), cands))
        _compare(cluster, videos, {})


def test_policy_instances_equal_brute_force(monkeypatch):
    """The solver inputs the policy builds from random snapshots (anchored candidates, paused-per-GPU limits,
    the critical-video rule, the tail guard, GPUs kept for images, the cap on unused GPUs) are solved exactly."""
    from genserve.scheduling.dp.solver import VideoDP

    captured = []
    real = VideoDP.solve

    def spy(self, forbid=frozenset(), cap=None):
        sol = real(self, forbid, cap)
        captured.append((self, frozenset(forbid), cap, sol))
        return sol

    monkeypatch.setattr(VideoDP, "solve", spy)
    checked = 0
    for seed in range(400):
        snap = random_snapshot(seed, n=8)
        captured.clear()
        policy_mod.GenServePolicy(PolicyOptions()).plan(snap)
        for dp, forbid, cap, sol in captured:
            videos = dp.videos
            size = 1
            for v in videos:
                size *= len(v.cands) + 1
            if size > 20000:
                continue
            if forbid:
                videos = [VideoOptions(v.hold, [(c[0], c[1]) if forbid.isdisjoint(c[0]) else (c[0], NEG) for c in v.cands])
                          for v in videos]
            want = brute_force(dp.n, videos, dp.must)
            if not want:
                assert sol is None
                continue
            n_eff = dp.n - len(dp.ignore)
            cap = n_eff if cap is None else min(cap, n_eff)
            bucket: dict[int, float] = {}
            for k, v in want.items():
                kk = max(k, n_eff - cap)
                bucket[kk] = max(bucket.get(kk, NEG), v)
            assert sol is not None and set(sol.best) == set(bucket)
            for k, v in bucket.items():
                assert sol.best[k] == pytest.approx(v, abs=1e-9)
                choice = sol.choose(k)
                used = [g for vi, ci in choice.items() for g in videos[vi].cands[ci][0]]
                assert len(used) == len(set(used))
                value = sum(videos[vi].cands[choice[vi]][1] if vi in choice else videos[vi].hold
                            for vi in range(len(videos)))
                assert value == pytest.approx(v, abs=1e-9)
            checked += 1
    assert checked > 300
