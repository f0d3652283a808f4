"""Partial plan application must not exceed the paused-per-GPU limit.

A plan may pause a video on a GPU that already holds a paused one while resuming that one elsewhere; if the resume
cannot start now, the controller keeps the first video running instead of pausing it. Heavy mix, seed 3 hit this
(two paused videos on GPU 4 at t = 270 s) before the controller checked it.
"""

from genserve.profiles import Profile
from genserve.scheduling.dp import GenServePolicy
from genserve.scheduling.options import PolicyOptions
from genserve.sim import run_simulation
from genserve.workloads import WorkloadSpec, generate_trace, to_requests


def test_strict_heavy_trace_never_holds_two_paused_videos_on_one_gpu():
    prof = Profile.load("paper")
    reqs = to_requests(generate_trace(WorkloadSpec(requests=100, mix="heavy", seed=3), prof), prof, 1.0)
    res = run_simulation(reqs, GenServePolicy(PolicyOptions()), 8, prof, strict=True)  # strict: PlanError on a breach
    s = res.summary()
    assert s["unfinished"] == 0 and s["preemptions"] > 0
