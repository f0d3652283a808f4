"""Two-level scheduling (engine/dispatch.py): every waiting request belongs to one node, rounds plan nodes."""

import pytest

from genserve.core.request import Modality, Request, RequestStatus
from genserve.core.snapshot import ClusterSpec, ImageView, Snapshot, VideoView
from genserve.engine import Controller, VirtualClock
from genserve.engine.scope import sub_snapshot
from genserve.executors.sim import SimExecutor
from genserve.scheduling.dp import GenServePolicy
from genserve.sim import run_simulation
from test_sim_invariants import PAPER, check_invariants, trace


def _trace(n, gpus, rate_per_8, mix, seed):
    return trace(seed, n=n, rate=rate_per_8 * gpus / 8, mix=mix)


@pytest.mark.parametrize("gpus,rate,mix,seed", [(16, 36.0, "balanced", 1), (32, 24.0, "heavy", 0)])
def test_two_level_runs_hold_the_invariants(gpus, rate, mix, seed):
    reqs = _trace(160, gpus, rate, mix, seed)
    res = run_simulation(reqs, "genserve", gpus, PAPER, strict=True, log=True)  # dispatch: the policy's default
    assert res.info["scoped_rounds"] == res.rounds  # every round planned only some nodes
    assert res.preemptions > 0 and res.info["dispatch_pulls"] > 0  # overloaded: pauses and rebalancing happened
    check_invariants(reqs, res, gpus, "genserve")


def test_two_level_keeps_attainment_with_fewer_rounds():
    # an overloaded 16-GPU trace (36 req/min per 8 GPUs) on which the flat DP misses deadlines: two-level stays
    # within 3 points of it with a fraction of its rounds
    reqs = _trace(200, 16, 36.0, "balanced", 1)
    flat = run_simulation(reqs, "genserve", 16, PAPER, dispatch=False)
    two = run_simulation(reqs, "genserve", 16, PAPER)
    assert flat.summary()["sar"]["overall"] < 0.95  # precondition: a trade-off to weigh
    assert two.info["dispatch_pulls"] > 0 and flat.info["scoped_rounds"] < flat.rounds
    assert two.summary()["sar"]["overall"] >= flat.summary()["sar"]["overall"] - 0.03
    assert two.rounds < 0.5 * flat.rounds


def _controller(gpus=16, policy=None):
    clock = VirtualClock()
    cl = ClusterSpec(gpus)
    ex = SimExecutor(PAPER, cl, clock, lambda t, ev: [t, 0, ev])
    return Controller(policy or GenServePolicy(), cl, PAPER, ex, clock)


def _set_idle(ctl, gpus):
    """Make exactly `gpus` idle, through the controller's own bookkeeping (the set and the per-node masks)."""
    ctl._claim(set(ctl._free))
    ctl._release(gpus)


def test_dispatch_only_on_several_whole_nodes_and_for_policies_that_opt_in():
    from genserve.scheduling.baselines import SRTF

    assert _controller(16).dispatcher is not None
    assert _controller(8).dispatcher is None  # one node
    assert _controller(12).dispatcher is None  # a partial node: no node-scoped rounds at all
    assert _controller(16, SRTF()).dispatcher is None  # SRTF does not opt in


def _image(rid, t=0.0, deadline=5.0):
    w, h = PAPER.doc.defaults.image_sizes[0]
    return Request(rid, Modality.IMAGE, PAPER.doc.defaults.image_model, "p", w, h, 28, 0, t, deadline)


def _video(rid, t=0.0, deadline=1000.0):
    w, h, f = PAPER.doc.defaults.video_sizes[0]
    return Request(rid, Modality.VIDEO, PAPER.doc.defaults.video_model, "p", w, h, 50, 0, t, deadline, frames=f)


def test_placement_follows_idle_gpus_best_fit():
    ctl = _controller()
    d = ctl.dispatcher
    _set_idle(ctl, {3, 9, 10})  # node 0: one idle GPU; node 1: two
    ctl.submit(_image("a"))
    assert d.node_of["a"] == 0  # best fit: the node with the fewest idle GPUs that has room
    ctl.submit(_image("b"))
    assert d.node_of["b"] == 1  # node 0's idle GPU is promised to "a"
    _set_idle(ctl, {4, 5, 12})  # node 1's idle GPU is promised to "b": only node 0 has room beyond its waiting work
    ctl.submit(_video("v", deadline=1e6))
    assert d.node_of["v"] == 0
    _set_idle(ctl, set())
    before = list(d.need)
    ctl.submit(_image("c"))  # no room anywhere: the node whose waiting work asks for the fewest GPUs
    assert before[d.node_of["c"]] == min(before) and before[0] != before[1]
    assert d.node_of["c"] == 1 and d.waiting_nodes() == {0, 1}
    need0, images0 = d.need[0], d.images[0]
    d.drop("a")
    assert "a" not in d.node_of and "a" not in d.items[0]
    assert (d.need[0], d.images[0]) == (need0 - 1, images0 - 1)


def test_rebalance_moves_urgent_work_to_idle_gpus():
    ctl = _controller()
    d = ctl.dispatcher
    _set_idle(ctl, set())
    for rid, dl in (("late", 9.0), ("soon", 3.0)):
        ctl.submit(_image(rid, deadline=dl))
    d.assign("late", 0, 1)
    d.assign("soon", 0, 1)
    _set_idle(ctl, {12})  # node 1 gets one idle GPU; node 0 has none
    assert d.rebalance([1]) == [0]
    assert d.node_of["soon"] == 1 and d.node_of["late"] == 0  # the earliest deadline moves
    assert d.rebalance([0]) == []  # node 0 has no idle GPU: it takes nothing


def test_sub_snapshot_with_assignments():
    cl = ClusterSpec(16)
    q = RequestStatus.QUEUED
    p = RequestStatus.PAUSED
    videos = (VideoView("q", "wan", 640, 480, 33, 40, 0, 0.0, 100.0, q),
              VideoView("p0", "wan", 640, 480, 33, 40, 5, 0.0, 100.0, p, (), 2),  # homed in node 0
              VideoView("p1", "wan", 640, 480, 33, 40, 5, 0.0, 100.0, p, (), 11))  # homed in node 1
    images = (ImageView("i0", "sd3", 1024, 1024, 28, 0.0, 5.0), ImageView("i1", "sd3", 1024, 1024, 28, 0.0, 5.0))
    snap = Snapshot(now=1.0, cluster=cl, profile=PAPER, images=images, videos=videos)
    assigned = {"q": 1, "p0": 1, "p1": 0, "i0": 1, "i1": 0}
    sub, gmap = sub_snapshot(snap, [1], assigned)
    assert gmap == list(range(8, 16))
    assert [im.id for im in sub.images] == ["i0"]
    got = {v.id: v for v in sub.videos}
    assert set(got) == {"q", "p0"}  # p1 is homed here but dispatched to node 0
    assert got["p0"].home_gpu is None  # its state lives outside these nodes: it resumes anywhere in them


def test_fast_views_and_snapshots_equal_the_dataclass_ones():
    from genserve.engine.controller import VideoProgress
    from genserve.engine.scope import fast_snapshot

    r = _video("v", t=1.0, deadline=90.0)
    r.status = RequestStatus.RUNNING
    vp = VideoProgress(r, steps_done=7, gpus=(2, 3), home_gpu=2, busy_until=4.5, pauses=1, sp_changes=2)
    want = VideoView("v", r.model, r.width, r.height, r.frames, r.steps, 7, 1.0, 90.0, RequestStatus.RUNNING,
                     (2, 3), 2, 4.5, False, 1, 2)
    assert Controller._view(vp) == want
    cl = ClusterSpec(8)
    args = dict(now=2.0, cluster=cl, profile=PAPER, images=(), videos=(want,), busy_until=(0.0,) * 8,
                last_image_arrival=1.0, info={"round": 3})
    assert fast_snapshot(2.0, cl, PAPER, (), (want,), (0.0,) * 8, 1.0, {"round": 3}) == Snapshot(**args)


def test_a_partial_last_node_is_indexed():
    # 12 GPUs in nodes of 8: the second node holds GPUs 8-11. Two-level and scoped rounds are off there, but the
    # controller's per-node index of running videos must still cover it
    reqs = _trace(40, 8, 36.0, "balanced", 6)
    for policy in ("fcfs", "genserve"):
        res = run_simulation(reqs, policy, 12, PAPER, strict=True, log=True)
        assert res.summary()["finished"] == len(reqs)
        assert any(iv.kind == "step" and iv.gpu >= 8 for iv in res.log)  # a video ran in the partial node


def test_submission_numbers_never_repeat_after_videos_leave():
    # node snapshots sort their videos by these numbers (submission order); numbering by len() reused a number once
    # a video had left, so a later video could tie with an earlier one and be listed before it
    ctl = _controller()
    _set_idle(ctl, set())
    for rid in ("v1", "v2"):
        ctl.submit(_video(rid))
    assert ctl.cancel("v1")
    ctl.submit(_video("v3"))
    assert ctl._order["v2"] < ctl._order["v3"]
