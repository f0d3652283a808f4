"""The Ray executor: the same workers as Ray actors on logical GPUs (a local Ray, 2 actors, CPU)."""

from __future__ import annotations

import queue

import pytest
import torch

from genserve.core.events import StepDone, VideoDone
from genserve.executors.base import StepSetup
from genserve.profiles import Profile
from genserve.scheduling.options import PolicyOptions
from genserve.scheduling.registry import make_policy
from genserve.workers.driver import run_live
from live_helpers import alive, clone, image, load_raw, video, wait_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(170)]


def _steps(ex, q, req, gpus, n, kill_at=None):
    for k in range(n):
        ex.run_step(req, k, gpus, StepSetup.FRESH if k == 0 else StepSetup.CONTINUE, None)
        if k == kill_at:
            ex.kill_worker(gpus[-1])
        ev = wait_event(q, ("StepDone",), req.id, timeout=90)
        assert isinstance(ev, StepDone), ev
    ex.decode(req, gpus[0])
    assert isinstance(wait_event(q, ("VideoDone",), req.id, timeout=60), VideoDone)
    return load_raw(ex.outputs[req.id])


def test_ray_actors_serve_sp2_and_recover_from_a_killed_actor(tmp_path):
    from genserve.executors.ray import RayExecutor

    ex = RayExecutor(2, output_dir=tmp_path, save_raw=True, ray_init={"num_cpus": 2, "num_gpus": 2},
                     startup_timeout_s=150)
    ex.start()
    pids = []
    try:
        pids = [p for p in ex.worker_pids() if p]
        assert len(pids) == 2
        # served by the Controller (genserve policy): an image and a video
        reqs = [video("rv", steps=6), image("ri")]
        res = run_live(make_policy("genserve", PolicyOptions()), ex, reqs, Profile.load("tiny-cpu"), timeout_s=90)
        assert {r: rec.status for r, rec in res.records.items()} == {"rv": "done", "ri": "done"}
        # SP 2 across the two actors; then the same with actor 1 killed mid-video: recovered bit for bit
        q: queue.Queue = queue.Queue()
        ex.attach(q.put)
        ref = video("rsp2", steps=6, seed=3)
        want = _steps(ex, q, ref, (0, 1), 6)
        got = _steps(ex, q, clone(ref, "rsp2-killed"), (0, 1), 6, kill_at=2)
        assert torch.equal(got, want)
        assert ex.restarts == 1 and ex.ready_all()
        pids += [p for p in ex.worker_pids() if p and p not in pids]
    finally:
        ex.close()
    import ray

    assert not ray.is_initialized()
    assert not [p for p in pids if alive(p)]


def test_make_engine_ray_serves_an_image_and_a_video(tmp_path):
    """make_engine("ray"): the Engine over a RayExecutor on 2 logical GPUs (a local Ray started and stopped by the
    engine): an image and a video complete with real files; the online correction learned from their durations."""
    import os

    from genserve.engine.runtime import make_engine
    from genserve.executors.ray import RayExecutor

    eng = make_engine("ray", profile="tiny-cpu", policy="genserve", devices=["cpu", "cpu"], output_dir=tmp_path,
                      startup_timeout_s=150)
    assert isinstance(eng.executor, RayExecutor) and eng.kind == "ray" and eng.cluster.num_gpus == 2
    eng.start()
    pids = []
    try:
        pids = [p for p in eng.executor.worker_pids() if p]
        assert len(pids) == 2
        now = eng.now
        eng.submit(video("ray-v", steps=6, arrival=now, deadline=now + 90))
        eng.submit(image("ray-i", arrival=now, deadline=now + 90))
        for rid, suffix in (("ray-v", ".mp4"), ("ray-i", ".png")):
            u = eng.wait(rid, timeout=90)
            assert u is not None and u.status.value == "done", u
            assert u.outputs and u.outputs[0].endswith(suffix) and os.path.getsize(u.outputs[0]) > 0
        corr = eng.ctl.correction  # on by default in the real engines
        assert corr is not None and corr.samples >= 2, corr
    finally:
        eng.close(drain=True)
    import ray

    assert not ray.is_initialized()
    assert not [p for p in pids if alive(p)]
