"""The arithmetic of `genserve bench fidelity` (sim/compare.py) and the simulator's engine costs (the optional
profile fields of profiles/schema.py): absent they change nothing, present each one costs what it says."""

import math

import pytest

from genserve.core.events import StepDone
from genserve.core.request import Request
from genserve.core.snapshot import ClusterSpec
from genserve.executors.base import StepSetup
from genserve.executors.sim import SimExecutor
from genserve.profiles import Profile
from genserve.sim.compare import agreement, compare, goals, quantile, rank_correlation, rel_errors, sar
from genserve.sim.run import run_simulation
from genserve.workloads import WorkloadSpec, generate_trace, to_requests


def test_quantile_and_rel_errors():
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([0.0, 10.0], 0.9) == pytest.approx(9.0)
    assert math.isnan(quantile([], 0.5))
    errs = rel_errors({"a": 1.5, "b": None, "c": 2.0}, {"a": 1.0, "b": 1.0, "c": 4.0, "d": 1.0})
    assert errs == {"a": 0.5, "c": 0.5}  # b unfinished in the prediction, d missing: left out


def test_rank_correlation():
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "w": None}
    assert rank_correlation(a, {"x": 10.0, "y": 20.0, "z": 30.0, "w": 1.0}) == pytest.approx(1.0)  # scale-free
    assert rank_correlation(a, {"x": 3.0, "y": 2.0, "z": 1.0}) == pytest.approx(-1.0)
    assert rank_correlation(a, {"x": 1.0, "y": 1.0, "z": 2.0}) == pytest.approx(math.sqrt(3) / 2)  # a tie
    assert math.isnan(rank_correlation({"x": 1.0}, {"x": 1.0}))


def test_agreement_and_sar():
    assert agreement({"a": True, "b": False}, {"a": True, "b": True}) == 0.5
    assert agreement({"a": True}, {}) == 0.0  # missing on the other side disagrees
    assert sar({"a": (1.0, True), "b": (None, False), "c": (2.0, False)}) == pytest.approx(1 / 3)


def test_compare_sim_vs_mean_of_live_and_the_noise_floor():
    live = [{"a": (1.0, True), "b": (2.0, False)}, {"a": (3.0, False), "b": (2.0, False)}]
    sim = {"a": (2.0, True), "b": (3.0, True)}
    s = compare(live, sim)
    # live means: a 2.0, b 2.0 -> errors 0 and 0.5
    assert s["median_rel_error"] == pytest.approx(0.25)
    assert s["p90_rel_error"] == pytest.approx(0.45)
    assert s["sar_live"] == pytest.approx(0.25) and s["sar_live_runs"] == [0.5, 0.0]
    assert s["sar_sim"] == 1.0
    assert s["outcome_agreement"] == pytest.approx((0.5 + 0.0) / 2)
    # leave one out: run 0 vs run 1 (a: |1-3|/3, b: 0), run 1 vs run 0 (a: 2/1, b: 0)
    assert s["live_median_rel_error"] == pytest.approx(quantile([2 / 3, 0.0, 2.0, 0.0], 0.5))
    assert s["live_outcome_agreement"] == 0.5
    assert s["per_request"]["a"] == {"live_mean_s": 2.0, "sim_s": 2.0, "rel_error": 0.0}
    g = goals(s, policy="fcfs")
    # the live floor (median 0.33, p90 1.6) is above 5 % / 15 %: the errors are judged against it
    assert g == {"sar_within_3_points": False, "median_error": True, "p90_error": True, "outcome_agreement": False}
    assert math.isnan(compare(live[:1], sim)["live_outcome_agreement"])


def test_goals_use_the_live_floor_when_it_is_higher():
    s = {"sar_sim": 0.80, "sar_live": 0.78, "median_rel_error": 0.20, "p90_rel_error": 0.40,
         "outcome_agreement": 0.85, "live_median_rel_error": 0.25, "live_p90_rel_error": 0.50,
         "live_outcome_agreement": 0.80}
    assert all(goals(s, policy="genserve").values())
    assert not goals(s, policy="fcfs")["outcome_agreement"]  # fcfs needs 95 % whatever the floor


# ---- engine costs in the profile and the simulated executor ------------------------------------------------------
def _with(**video_fields) -> Profile:
    d = Profile.load("tiny-cpu").to_dict()
    vm = d["video_models"]["tiny-wan"]
    for k, v in video_fields.items():
        if k == "write_s":
            for p in vm["points"]:
                p["write_s"] = v
        else:
            vm[k] = v
    return Profile.from_dict(d, "test")


def test_profiles_without_the_fields_are_unchanged():
    for name in ("paper", "tiny-cpu"):
        p = Profile.load(name)
        assert Profile.from_dict(p.to_dict()).to_dict() == p.to_dict()
        assert all(k not in str(p.to_dict()) for k in ("write_s", "dispatch_s", "handover_s", "busy_factor"))
        m = p.doc.defaults.video_model
        assert p.dispatch_cost(m) == 0.0 and p.handover_cost(m, 1) is None and p.busy_factor(m) == 1.0


def test_write_and_prepare_enter_the_latencies():
    base = Profile.load("tiny-cpu")
    p = _with(write_s=0.05, prepare_s=0.02)
    assert p.video_decode("tiny-wan", 64, 64, 9) == pytest.approx(base.video_decode("tiny-wan", 64, 64, 9) + 0.05)
    assert p.text_encode("tiny-wan") == 0.02
    d = base.to_dict()
    d["image_models"]["tiny-sd3"]["prepare_s"] = 0.01
    img = Profile.from_dict(d)
    step = base.image_latency("tiny-sd3", 32, 32, 4) - base.text_encode("tiny-sd3")
    assert img.image_latency("tiny-sd3", 32, 32, 4) == pytest.approx(step + 4 * 0.01)  # encoded per image


class _Sched:
    def __init__(self):
        self.events = []

    def __call__(self, t, ev):
        entry = [t, len(self.events), ev]
        self.events.append(entry)
        return entry


class _Clock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t


def _video(rid="v"):
    return Request(id=rid, modality="video", model="tiny-wan", prompt="p", width=64, height=64, frames=9, steps=4,
                   seed=1, arrival=0.0, deadline=1e6)


def _image(rid="i"):
    return Request(id=rid, modality="image", model="tiny-sd3", prompt="p", width=32, height=32, steps=8, seed=1,
                   arrival=0.0, deadline=1e6)


def test_handover_waits_for_the_holder_and_dispatch_is_per_command():
    p = _with(handover_s={"1": 0.01, "2": 0.02, "4": 0.03, "8": 0.04}, dispatch_s=0.001)
    clock, sched = _Clock(), _Sched()
    ex = SimExecutor(p, ClusterSpec(2), clock, sched)
    step = p.video_step("tiny-wan", 64, 64, 9, 1)
    img = p.image_latency("tiny-sd3", 32, 32, 1, 8)
    ex.start_batch([_image()], 0)  # the holder (GPU 0) is busy until img (the image model has no dispatch_s)
    ex.run_step(_video(), 1, (1,), StepSetup.RESUME, source_gpu=0)
    ev = sched.events[-1][2]
    assert isinstance(ev, StepDone)
    assert ev.time == pytest.approx(img + 0.01 + step + 0.001)
    assert ex.ready[0] == pytest.approx(img + 0.01)  # the holder is busy for the move
    # without handover_s the same resume charges resume_s and waits for nobody
    q = _with(dispatch_s=0.001)
    ex2 = SimExecutor(q, ClusterSpec(2), _Clock(), s2 := _Sched())
    ex2.start_batch([_image()], 0)
    ex2.run_step(_video(), 1, (1,), StepSetup.RESUME, source_gpu=0)
    assert s2.events[-1][2].time == pytest.approx(q.resume_cost("tiny-wan", 1) + step + 0.001)


def test_busy_factor_slows_a_command_started_while_others_compute():
    p = _with(busy_factor=1.5)
    clock, sched = _Clock(), _Sched()
    ex = SimExecutor(p, ClusterSpec(2), clock, sched)
    step = p.video_step("tiny-wan", 64, 64, 9, 1)
    ex.run_step(_video("a"), 1, (0,), StepSetup.CONTINUE)
    assert sched.events[-1][2].time == pytest.approx(step)  # alone
    ex.run_step(_video("b"), 1, (1,), StepSetup.CONTINUE)
    assert sched.events[-1][2].time == pytest.approx(1.5 * step)  # GPU 0 busy when it starts


def test_simulated_results_identical_without_the_fields_and_slower_with_them():
    prof = Profile.load("tiny-cpu")
    trace = generate_trace(WorkloadSpec(requests=40, rate=900, seed=3), prof)
    reqs = to_requests(trace, prof, 2.0)
    a = run_simulation(reqs, "genserve", 2, prof, coalesce_steps=False)
    b = run_simulation(reqs, "genserve", 2, Profile.from_dict(prof.to_dict()), coalesce_steps=False)
    assert [(r.id, r.finish) for r in a.records] == [(r.id, r.finish) for r in b.records]
    slow = _with(write_s=0.05, dispatch_s=0.002, busy_factor=1.3)
    c = run_simulation(reqs, "genserve", 2, prof, coalesce_steps=False, executor_profile=slow)
    lat = lambda res: sum(r.latency for r in res.records if r.modality == "video")  # noqa: E731
    assert all(r.done for r in c.records)
    assert lat(c) > lat(a) + 0.05 * sum(r.modality == "video" for r in a.records)  # at least each write
