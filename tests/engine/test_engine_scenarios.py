"""Tiny scenarios (2 GPUs, 3 requests, the hand-made profile of conftest.py) with completion times on paper."""

import pytest

from genserve.scheduling.options import PolicyOptions
from genserve.scheduling.registry import make_policy
from genserve.sim import run_simulation


def finish(result):
    return {r.id: round(r.finish, 9) for r in result.records}


@pytest.mark.parametrize("coalesce", [False, True])
def test_fcfs_image_starves_behind_videos(tiny, make, coalesce):
    # v1 at 0 on GPU 0: encode 0.5 + 4 steps x 1.0 = 4.5, decode 1.0 -> 5.5.
    # v2 at 1 on GPU 1: 1 + 5.5 = 6.5.
    # i1 at 2: both GPUs busy; starts when v1's decode frees GPU 0 at 5.5 -> 5.5 + 1.5 = 7.0 (deadline 4.25: missed).
    reqs = [make.video("v1", 0.0, tiny), make.video("v2", 1.0, tiny), make.image("i1", 2.0, tiny)]
    res = run_simulation(reqs, "fcfs", 2, tiny, strict=True, log=True, coalesce_steps=coalesce)
    assert finish(res) == {"v1": 5.5, "v2": 6.5, "i1": 7.0}
    s = res.summary()
    assert s["sar"] == {"overall": pytest.approx(2 / 3), "image": 0.0, "video": 1.0}
    assert s["queue_wait"]["image"]["p50"] == pytest.approx(3.5)
    assert s["preemptions"] == 0


@pytest.mark.parametrize("coalesce", [False, True])
def test_srtf_preempts_the_longest_video_at_its_step_boundary(tiny, make, coalesce):
    # t=1: v2 (5.5 left) and v1 (4 steps + decode = 5.0 left) both fit: v2 starts on GPU 1.
    # t=2: i1 (1.5) < v1 (3 steps left + decode = 4.0; step 1 in flight) < v2 (4 + 1 = 5.0): v2 loses.
    #      v2 is mid-step (its step 0 ends at 1 + 0.5 + 1.0 = 2.5): it pauses then, on GPU 1 (its home).
    # t=2.5: i1 starts on GPU 1 -> 4.0 (deadline 4.25: met).
    # t=4.0: v2 resumes on GPU 1: resume 0.25 + 3 steps = 7.25, decode -> 8.25 (deadline 9.25: met).
    # v1 is never touched: 5.5.
    reqs = [make.video("v1", 0.0, tiny), make.video("v2", 1.0, tiny), make.image("i1", 2.0, tiny)]
    res = run_simulation(reqs, "srtf", 2, tiny, strict=True, log=True, coalesce_steps=coalesce)
    assert finish(res) == {"v1": 5.5, "v2": 8.25, "i1": 4.0}
    s = res.summary()
    assert s["sar"]["overall"] == 1.0
    assert s["preemptions"] == 1
    rec = {r.id: r for r in res.records}
    assert rec["v2"].pauses == 1 and rec["v1"].pauses == 0
    pauses = [iv for iv in res.log if iv.kind == "pause"]
    assert [(iv.gpu, iv.start) for iv in pauses] == [(1, 2.5)]


def test_dedicated_pools_keep_images_fast_and_videos_waiting(tiny, make):
    # image pool = GPU 1, video pool = GPU 0.
    # v1 at 0 on GPU 0 -> 5.5. v2 at 1 waits for GPU 0 -> 5.5 + 5.5 = 11.0 (deadline 9.25: missed).
    # i1 at 2 on GPU 1 -> 3.5.
    reqs = [make.video("v1", 0.0, tiny), make.video("v2", 1.0, tiny), make.image("i1", 2.0, tiny)]
    res = run_simulation(reqs, make_policy("dedicated", PolicyOptions(image_gpus=1)), 2, tiny, strict=True)
    assert finish(res) == {"v1": 5.5, "v2": 11.0, "i1": 3.5}


def test_rasp_runs_a_big_video_at_sp2(make, tiny):
    # RASP maps by pixels; 64x64 is small (SP 1). A 2-GPU group is used when RASP says 2: patch the mapping.
    from genserve.scheduling import baselines

    class Rasp2(baselines.RASP):
        def degree(self, snap, v):
            return 2

    # v1 at 0 on GPUs (0, 1): encode 0.5 + 4 x 0.5 = 2.5, then decode on GPU 0 -> 3.5; GPU 1 frees at 2.5.
    # i1 at 1 waits for GPU 1 (frees at 2.5) -> 2.5 + 1.5 = 4.0.
    # v2 at 1.5 waits for a whole aligned pair: after v1's decode at 3.5 and i1 at 4.0 -> 4.0 + 2.5 + 1 = 7.5.
    reqs = [make.video("v1", 0.0, tiny), make.image("i1", 1.0, tiny), make.video("v2", 1.5, tiny)]
    res = run_simulation(reqs, Rasp2(), 2, tiny, strict=True, log=True)
    assert finish(res) == {"v1": 3.5, "i1": 4.0, "v2": 7.5}
    assert {r.id: r.max_degree for r in res.records} == {"v1": 2, "i1": 1, "v2": 2}


def test_fcfs_batching_groups_waiting_images(tiny, make):
    # One GPU for images (GPU 1; GPU 0 runs v1 until 5.5).
    # i1 at 0.1 runs alone -> 1.6. i2 (0.2) and i3 (0.3) wait; at 1.6 neither can meet its deadline alone
    # (1.6 + 1.5 = 3.1 > 2.45 and > 2.55), so they batch: T_img(2) = 2.0 -> both 3.6.
    reqs = [make.video("v1", 0.0, tiny), make.image("i1", 0.1, tiny), make.image("i2", 0.2, tiny),
            make.image("i3", 0.3, tiny)]
    res = run_simulation(reqs, make_policy("fcfs", PolicyOptions(batching=True)), 2, tiny, strict=True)
    assert finish(res) == {"v1": 5.5, "i1": 1.6, "i2": 3.6, "i3": 3.6}
    assert {r.id: r.batch_size for r in res.records if r.modality == "image"} == {"i1": 1, "i2": 2, "i3": 2}
    # unbatched: i2 1.6 -> 3.1, i3 3.1 -> 4.6
    res = run_simulation(reqs, "fcfs", 2, tiny, strict=True)
    assert finish(res) == {"v1": 5.5, "i1": 1.6, "i2": 3.1, "i3": 4.6}


def test_sjf_serves_the_short_image_before_an_earlier_video(tiny, make):
    # One GPU. v1 at 0 -> 5.5. v2 at 1 and i1 at 2 wait; SJF picks i1 (1.5 s) first: 5.5 -> 7.0; v2 7.0 -> 12.5.
    reqs = [make.video("v1", 0.0, tiny), make.video("v2", 1.0, tiny), make.image("i1", 2.0, tiny)]
    res = run_simulation(reqs, "sjf", 1, tiny, strict=True)
    assert finish(res) == {"v1": 5.5, "i1": 7.0, "v2": 12.5}
    res = run_simulation(reqs, "fcfs", 1, tiny, strict=True)
    assert finish(res) == {"v1": 5.5, "v2": 11.0, "i1": 12.5}


@pytest.mark.parametrize("coalesce", [False, True])
@pytest.mark.parametrize("mode", ["always", "events", "when_waiting"])
def test_step_round_modes_give_the_same_srtf_schedule(tiny, make, coalesce, mode):
    # the SRTF scenario above; whatever the step-round mode, v2 must pause at its boundary at 2.5
    from genserve.scheduling.baselines import SRTF

    class Srtf(SRTF):
        step_rounds = mode

    reqs = [make.video("v1", 0.0, tiny), make.video("v2", 1.0, tiny), make.image("i1", 2.0, tiny)]
    res = run_simulation(reqs, Srtf(), 2, tiny, strict=True, coalesce_steps=coalesce)
    assert finish(res) == {"v1": 5.5, "v2": 8.25, "i1": 4.0}
