"""Online profile correction (profiles/online.py): the unit behaviour of the EWMA, the no-op in the simulator, and
a drift the policy's profile does not know about (the simulated GPUs run 2x slower than the profile says)."""

import math

import pytest

from genserve.profiles import Profile
from genserve.profiles.online import CorrectedProfile, OnlineCorrection
from genserve.sim.run import run_simulation
from genserve.workloads import WorkloadSpec, generate_trace, to_requests

KEY = ("step", "m", 64, 64, 9, 1)


def test_ewma_bounds_and_min_samples():
    c = OnlineCorrection(alpha=0.5, lo=0.25, hi=4.0, min_samples=3, pool_models=False)
    c.observe(KEY, 2.0, 1.0)
    c.observe(KEY, 2.0, 1.0)
    assert c.factor(KEY) == 1.0  # two samples: not applied yet
    c.observe(KEY, 4.0, 1.0)
    assert c.factor(KEY) == pytest.approx(3.0)  # 2, then 2 + 0.5 * (4 - 2)
    for _ in range(20):
        c.observe(KEY, 100.0, 1.0)  # ratios clamp to hi
    assert c.factor(KEY) == pytest.approx(4.0)
    c.observe(KEY, 0.0, 1.0)  # no measurement: ignored
    assert c.skipped == 1
    other = ("step", "m", 32, 32, 5, 1)
    assert c.factor(other) == 1.0  # per key, no pooling here


def test_model_pooling_and_view():
    prof = Profile.load("tiny-cpu")
    c = OnlineCorrection(min_samples=2)
    view = CorrectedProfile(prof, c)
    t = prof.video_step("tiny-wan", 64, 64, 9, 1)
    for _ in range(2):
        c.observe_step("tiny-wan", 64, 64, 9, 1, 3 * t, t)
    assert view.video_step("tiny-wan", 64, 64, 9, 1) == pytest.approx(3 * t)
    # another size of the same model: the model's pooled factor until it has samples of its own
    assert view.video_step("tiny-wan", 32, 32, 5, 1) == pytest.approx(3 * prof.video_step("tiny-wan", 32, 32, 5, 1))
    # images are another kind: untouched; so is everything the view does not correct
    assert view.image_latency("tiny-sd3", 32, 32, 2) == prof.image_latency("tiny-sd3", 32, 32, 2)
    assert view.video_decode("tiny-wan", 64, 64, 9) == prof.video_decode("tiny-wan", 64, 64, 9)
    assert view.degrees("tiny-wan") == prof.degrees("tiny-wan") and view.doc is prof.doc
    iso = view.isolated_latency("video", "tiny-wan", 64, 64, 9, 10)
    want = prof.text_encode("tiny-wan") + 10 * 3 * t + prof.video_decode("tiny-wan", 64, 64, 9)
    assert iso == pytest.approx(want)


def _trace(truth, n=40, rate=30.0, sigma=1.5, seed=3):
    return to_requests(generate_trace(WorkloadSpec(requests=n, rate=rate, seed=seed), truth), truth, sigma)


def _outcome(res):
    return sorted((r.id, r.status, r.start, r.finish, r.max_degree, r.batch_size) for r in res.records)


def test_no_op_when_the_executor_follows_the_profile():
    """The simulator's executor follows the profile exactly: every factor stays exactly 1 and the run is the
    same, request by request, with and without correction."""
    prof = Profile.load("paper")
    reqs = _trace(prof)
    plain = run_simulation(reqs, "genserve", 4, prof)
    corr = run_simulation(reqs, "genserve", 4, prof, online_correction=True)
    factors = corr.info["correction"]
    assert factors and all(f == 1.0 for f in factors.values()), factors
    assert any(k.startswith("step:") for k in factors) and any(k.startswith("image:") for k in factors)
    assert _outcome(corr) == _outcome(plain)
    assert "correction" not in plain.info


def test_drift_is_learned_and_slo_attainment_recovers():
    """The GPUs run 2x slower than the policy's profile (deadlines follow the real speed). Without correction
    the policy over-commits; with it the estimates converge to the truth and SLO attainment comes back."""
    base = Profile.load("paper")
    truth = base.scaled(2.0, 2.0, "paper-x2")
    reqs = _trace(truth)
    oracle = run_simulation(reqs, "genserve", 4, truth).summary()["sar"]["overall"]
    stale = run_simulation(reqs, "genserve", 4, base, executor_profile=truth).summary()["sar"]["overall"]
    corr = OnlineCorrection()
    res = run_simulation(reqs, "genserve", 4, base, executor_profile=truth, online_correction=corr)
    fixed = res.summary()["sar"]["overall"]
    factors = res.info["correction"]
    assert factors and all(math.isclose(f, 2.0, rel_tol=1e-9) for f in factors.values()), factors
    view = CorrectedProfile(base, corr)
    r = next(q for q in reqs if q.modality.value == "video")
    p = 1
    assert view.video_step(r.model, r.width, r.height, r.frames, p) == pytest.approx(
        truth.video_step(r.model, r.width, r.height, r.frames, p))
    print(f"SAR oracle {oracle:.3f} stale {stale:.3f} corrected {fixed:.3f}")
    assert fixed >= stale + 0.1, (oracle, stale, fixed)
    assert fixed >= oracle - 0.1, (oracle, stale, fixed)


def test_engine_default_and_stats():
    """make_engine: off for "sim" unless asked; when on, the factors reach EngineStats and /metrics."""
    from genserve.core.request import Request
    from genserve.engine.runtime import make_engine

    assert make_engine("sim", profile="tiny-cpu", gpus=1).ctl.correction is None
    eng = make_engine("sim", profile="tiny-cpu", gpus=1, online_correction=True)
    eng.start()
    try:
        now = eng.now
        for j in range(2):
            eng.submit(Request(id=f"i{j}", modality="image", model="tiny-sd3", prompt="p", width=32, height=32,
                               steps=4, seed=j, arrival=now, deadline=now + 60))
        for j in range(2):
            assert eng.wait(f"i{j}", timeout=30).status.value == "done"
        stats = eng.stats()
    finally:
        eng.close()
    assert stats.profile_correction and set(stats.profile_correction.values()) == {1.0}, stats.profile_correction
    from genserve.server.metrics import Metrics

    text = Metrics(lambda: stats, dict).render().decode()
    key = next(iter(stats.profile_correction))
    assert f'genserve_profile_correction{{key="{key}"}} 1.0' in text
