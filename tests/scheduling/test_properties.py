"""Property tests: random snapshots always produce valid plans, for every ablation rung."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genserve.core.plan import ActionKind
from genserve.core.request import RequestStatus
from genserve.scheduling import plan_violations
from genserve.scheduling.dp import GenServePolicy
from genserve.scheduling.options import PolicyOptions

from snapshots import random_snapshot

RUNGS = {
    "default": PolicyOptions(),
    "fcfs": PolicyOptions(dp=False, preemption=False, elastic_sp=False, batching=False),
    "preemption": PolicyOptions(dp=False, elastic_sp=False),
    "dp": PolicyOptions(elastic_sp=False),
    "no-preemption": PolicyOptions(preemption=False),
    "no-guard": PolicyOptions(tail_guard=False),
    "two-paused": PolicyOptions(max_paused_per_gpu=2),
    "zero-paused": PolicyOptions(max_paused_per_gpu=0),
}


def _check(seed: int, opts: PolicyOptions, n: int | None = None) -> None:
    snap = random_snapshot(seed, n, max_paused=opts.max_paused_per_gpu)
    plan = GenServePolicy(opts).plan(snap)
    bad = plan_violations(snap, plan, opts.max_paused_per_gpu)
    assert not bad, (seed, bad)
    # every live request has exactly one action and nothing else has one
    live = {im.id for im in snap.images} | {v.id for v in snap.videos}
    assert set(plan.actions) == live
    for v in snap.videos:
        a = plan.actions[v.id]
        if v.decoding:
            assert a.kind is ActionKind.CONTINUE and a.gpus == v.gpus
        if a.kind is not ActionKind.HOLD:
            assert len(a.gpus) in snap.cluster.usable_degrees
            assert a.gpus[0] % len(a.gpus) == 0
        if not opts.preemption and v.status is RequestStatus.RUNNING:
            assert a.kind is not ActionKind.HOLD
    used = plan.gpus_used()
    assert len(used) == len(set(used)) <= snap.cluster.num_gpus


@pytest.mark.parametrize("rung", list(RUNGS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_random_snapshots_give_valid_plans(rung, seed):
    _check(seed, RUNGS[rung])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([16, 24, 32]))
def test_multi_node_clusters(seed, n):
    _check(seed, PolicyOptions(), n)


def test_plans_are_pure_functions_of_the_snapshot():
    pol = GenServePolicy()
    for seed in range(50):
        snap = random_snapshot(seed)
        a, b = pol.plan(snap), GenServePolicy().plan(snap)
        assert a.actions == b.actions and a.batches == b.batches


def test_attributes():
    pol = GenServePolicy(PolicyOptions())
    assert pol.name == "genserve" and pol.preemptive is True
    from genserve.scheduling.registry import make_policy

    assert isinstance(make_policy("genserve"), GenServePolicy)


def test_inlined_finish_times_equal_round_finish(monkeypatch):
    # the candidate loops compute finish times inline (the hot path); with the check on, every candidate's finish
    # time is compared with _Round.finish, exactly, on random snapshots and on a simulated run's rounds
    import genserve.scheduling.dp.policy as policy_mod
    from genserve.profiles import Profile
    from genserve.sim import run_simulation
    from genserve.workloads import WorkloadSpec, generate_trace, to_requests

    monkeypatch.setattr(policy_mod, "_CHECK_FINISH", True)
    for seed in range(200):
        GenServePolicy().plan(random_snapshot(seed))
    prof = Profile.load("paper")
    reqs = to_requests(generate_trace(WorkloadSpec(requests=150, rate=48, mix="heavy", seed=3), prof), prof, 1.0)
    res = run_simulation(reqs, "genserve", 16, prof)
    assert res.preemptions > 0 and res.sp_changes > 0  # pauses, resumes and moves were all planned
    # the check is live, in both parts: a finish time off by a second is caught
    real = policy_mod._Round.finish
    monkeypatch.setattr(policy_mod._Round, "finish", lambda self, vi, block: real(self, vi, block) + 1.0)
    with pytest.raises(AssertionError, match="finish on"):
        GenServePolicy().plan(random_snapshot(0))
    with pytest.raises(AssertionError, match="finish on"):
        run_simulation(reqs, "genserve", 16, prof)
