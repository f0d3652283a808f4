"""Node-scoped rounds (engine/scope.py): while nothing waits, a round plans only the nodes an event touched.

The GenServe DP decomposes by node when nothing waits, so a scoped run must match an unscoped one request for
request; the sub-snapshot must renumber GPUs and keep exactly the touched nodes' videos."""

import pytest

from genserve.core.plan import Action, ActionKind, Plan
from genserve.core.request import RequestStatus
from genserve.core.snapshot import ClusterSpec, Snapshot, VideoView
from genserve.engine.scope import lift_plan, sub_snapshot
from genserve.profiles import Profile
from genserve.scheduling.dp import GenServePolicy
from genserve.sim import run_simulation
from genserve.workloads import WorkloadSpec, generate_trace, to_requests


@pytest.mark.parametrize("gpus,rate,mix,seed", [(16, 24.0, "balanced", 0), (32, 40.0, "heavy", 1)])
def test_scoped_rounds_match_whole_cluster_rounds(gpus, rate, mix, seed):
    prof = Profile.load("paper")
    reqs = to_requests(generate_trace(WorkloadSpec(requests=300, rate=rate, mix=mix, seed=seed), prof), prof, 1.0)
    whole = run_simulation(reqs, GenServePolicy(), gpus, prof, strict=True, scoped_rounds=False)
    # the policy opts in (two-level dispatch, which changes decisions, off: tests/sim/test_dispatch.py)
    scoped = run_simulation(reqs, GenServePolicy(), gpus, prof, strict=True, dispatch=False)
    assert whole.info["scoped_rounds"] == 0
    assert scoped.info["scoped_rounds"] > whole.rounds // 10  # a real share of rounds was scoped
    key = lambda rec: (rec.id, rec.status, rec.start, rec.finish, rec.pauses, rec.sp_changes)  # noqa: E731
    assert sorted(map(key, scoped.records)) == sorted(map(key, whole.records))
    assert (scoped.rounds, scoped.preemptions, scoped.sp_changes) == (whole.rounds, whole.preemptions,
                                                                      whole.sp_changes)


def test_single_node_and_baselines_are_never_scoped():
    prof = Profile.load("paper")
    reqs = to_requests(generate_trace(WorkloadSpec(requests=60, rate=24.0, seed=2), prof), prof, 1.0)
    one = run_simulation(reqs, "genserve", 8, prof)
    assert one.rounds > 0 and one.info["scoped_rounds"] == 0  # one node: nothing to scope
    assert run_simulation(reqs, "srtf", 16, prof).info["scoped_rounds"] == 0  # SRTF does not opt in


def _video(rid, status, gpus=(), home=None, busy=0.0):
    return VideoView(rid, "wan", 640, 480, 33, 40, 10, 0.0, 100.0, status, gpus, home, busy)


def test_sub_snapshot_keeps_the_nodes_videos_and_renumbers_gpus():
    cl = ClusterSpec(24, 8)
    videos = (_video("a", RequestStatus.RUNNING, (8, 9), 8, 1.0),  # node 1
              _video("b", RequestStatus.RUNNING, (0,), 0, 1.0),  # node 0: dropped
              _video("c", RequestStatus.PAUSED, (), 20),  # paused, homed on node 2
              _video("d", RequestStatus.RUNNING, (16, 17, 18, 19), 16, 2.0))  # node 2
    busy = tuple(float(g) for g in range(24))
    snap = Snapshot(5.0, cl, Profile.load("paper"), (), videos, busy)
    sub, gmap = sub_snapshot(snap, [1, 2])
    assert sub.cluster.num_gpus == 16 and sub.cluster.gpus_per_node == 8
    assert gmap == list(range(8, 24))
    got = {v.id: (v.gpus, v.home_gpu) for v in sub.videos}
    assert got == {"a": ((0, 1), 0), "c": ((), 12), "d": ((8, 9, 10, 11), 8)}
    assert sub.busy_until == busy[8:24]
    assert sub.now == snap.now and sub.info["scope"] == [1, 2]

    plan = Plan()
    plan.actions["a"] = Action(ActionKind.RECONFIGURE, (0, 1, 2, 3))
    plan.actions["c"] = Action(ActionKind.RESUME, (12,))
    plan.actions["d"] = Action(ActionKind.HOLD)
    up = lift_plan(plan, gmap)
    assert up.actions["a"].gpus == (8, 9, 10, 11)
    assert up.actions["c"].gpus == (20,)
    assert up.actions["d"].kind is ActionKind.HOLD
