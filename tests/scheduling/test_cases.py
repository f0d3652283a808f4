"""Hand-built rounds: preemption, degree drops, resumes, scale-ups, batching, the ablation rungs."""

from __future__ import annotations

import dataclasses

from genserve.core.plan import ActionKind
from genserve.core.request import RequestStatus as S
from genserve.scheduling import plan_violations
from genserve.scheduling.dp import GenServePolicy
from genserve.scheduling.options import PolicyOptions

from snapshots import PROFILE, image, snapshot, video

T768 = PROFILE.video_step("wan2.2-t2v-5b", 768, 768, 81, 1)


def _plan(snap, opts=None):
    opts = opts or PolicyOptions()
    plan = GenServePolicy(opts).plan(snap)
    assert not plan_violations(snap, plan, opts.max_paused_per_gpu)
    return plan


def _full_cluster(now, slacks, sizes=None, done=None):
    """8 videos at SP 1, one per GPU, all at a step boundary; video k's deadline gives it slack slacks[k]."""
    vids = []
    for k, slack in enumerate(slacks):
        size = sizes[k] if sizes else 768
        steps_done = done[k] if done else 10
        rem = 50 - steps_done
        t = PROFILE.video_step("wan2.2-t2v-5b", size, size, 81, 1)
        finish = now + rem * t + PROFILE.video_decode("wan2.2-t2v-5b", size, size, 81)
        vids.append(video(f"v{k}", size, S.RUNNING, (k,), steps_done, arrival=0.0, deadline=finish + slack,
                          busy_until=now))
    return vids


def test_urgent_image_preempts_the_video_with_most_slack():
    now = 100.0
    slacks = [1.0, 5.0, 30.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    vids = _full_cluster(now, slacks, done=[40, 30, 0, 40, 40, 35, 30, 25])
    snap = snapshot(now, [image("i0", 768, arrival=now)], vids, last_image=now)
    plan = _plan(snap)
    held = [v.id for v in vids if plan.actions[v.id].kind is ActionKind.HOLD]
    assert held == ["v2"]
    assert plan.actions["i0"].kind is ActionKind.BATCH and plan.actions["i0"].gpus == (2,)
    # the greedy rung (no DP) follows the paper's rule literally: descending slack
    plan = _plan(snap, PolicyOptions(dp=False))
    assert [v.id for v in vids if plan.actions[v.id].kind is ActionKind.HOLD] == ["v2"]


def test_never_preempts_a_video_with_no_slack():
    now = 100.0
    slacks = [0.0, -0.5, 0.0, -0.1, 0.0, -0.2, 0.0, 0.0]
    vids = _full_cluster(now, slacks, sizes=[480] * 8, done=[25] * 8)
    snap = snapshot(now, [image("i0", 768, arrival=now)], vids, last_image=now)
    for opts in (PolicyOptions(), PolicyOptions(dp=False)):
        plan = _plan(snap, opts)
        for v in vids:
            assert plan.actions[v.id].kind is not ActionKind.HOLD, (opts, v.id)


def test_degree_drop_is_chosen_over_a_pause():
    now = 50.0
    # one 768p video on all 8 GPUs with enough slack to finish at SP 4, but not if paused for long
    t8 = PROFILE.video_step("wan2.2-t2v-5b", 768, 768, 81, 8)
    t4 = PROFILE.video_step("wan2.2-t2v-5b", 768, 768, 81, 4)
    rem = 30
    dec = PROFILE.video_decode("wan2.2-t2v-5b", 768, 768, 81)
    deadline = now + rem * t4 + dec + 0.5  # feasible at SP 4, not at SP 8 after a pause of a few seconds
    v = video("v", 768, S.RUNNING, tuple(range(8)), 50 - rem, arrival=0.0, deadline=deadline, busy_until=now)
    assert now + 5 + rem * t8 + dec > deadline
    imgs = [image(f"i{k}", 1024, arrival=now) for k in range(3)]
    snap = snapshot(now, imgs, [v], last_image=now)
    plan = _plan(snap)
    a = plan.actions["v"]
    assert a.kind is ActionKind.RECONFIGURE and len(a.gpus) == 4 and a.gpus[0] == 0
    assert all(plan.actions[i.id].kind is ActionKind.BATCH for i in imgs)
    assert {b.gpu for b in plan.batches} <= set(range(4, 8))


def test_paused_video_whose_budget_is_tight_resumes():
    now = 200.0
    rem = 30
    dec = PROFILE.video_decode("wan2.2-t2v-5b", 480, 480, 81)
    t1 = PROFILE.video_step("wan2.2-t2v-5b", 480, 480, 81, 1)
    deadline = now + rem * t1 + dec - 1.0  # budget-tight: cannot finish at SP 1 any more
    paused = video("p", 480, S.PAUSED, (), 50 - rem, arrival=150.0, deadline=deadline, home=3, pauses=1)
    others = _full_cluster(now, [20.0] * 8, done=[10] * 8)
    others = [v for v in others if v.gpus != (3,)] + [video("w", 768, S.RUNNING, (), 0, arrival=0.0)][:0]
    # GPU 3 is idle now; images keep arriving (not an idle period)
    snap = snapshot(now, [], others + [paused], last_image=now - 0.5)
    plan = _plan(snap)
    a = plan.actions["p"]
    assert a.kind is ActionKind.RESUME and 3 in a.gpus
    # the greedy rung resumes it too (budget-tight), and an idle period resumes a relaxed one
    assert _plan(snap, PolicyOptions(dp=False)).actions["p"].kind is ActionKind.RESUME
    relaxed = video("p", 480, S.PAUSED, (), 50 - rem, arrival=150.0, deadline=now + 100, home=3, pauses=1)
    busy = snapshot(now, [], others + [relaxed], last_image=now - 0.5)
    assert _plan(busy, PolicyOptions(dp=False)).actions["p"].kind is ActionKind.HOLD
    idle = snapshot(now, [], others + [relaxed], last_image=now - 60)
    assert _plan(idle, PolicyOptions(dp=False)).actions["p"].kind is ActionKind.RESUME


def test_idle_gpus_make_a_lagging_video_scale_up():
    now = 10.0
    rem = 40
    t1 = PROFILE.video_step("wan2.2-t2v-5b", 768, 768, 81, 1)
    t2 = PROFILE.video_step("wan2.2-t2v-5b", 768, 768, 81, 2)
    dec = PROFILE.video_decode("wan2.2-t2v-5b", 768, 768, 81)
    deadline = now + rem * t2 + dec + 1.0  # late at SP 1, on time at SP 2
    v = video("v", 768, S.RUNNING, (0,), 50 - rem, arrival=0.0, deadline=deadline, busy_until=now)
    assert now + rem * t1 + dec > deadline
    snap = snapshot(now, [], [v])
    for opts in (PolicyOptions(), PolicyOptions(tail_guard=False)):
        a = _plan(snap, opts).actions["v"]
        assert a.kind is ActionKind.RECONFIGURE and a.gpus == (0, 1)
    # without elastic SP it cannot
    assert _plan(snap, PolicyOptions(elastic_sp=False)).actions["v"].kind is ActionKind.CONTINUE


def test_same_resolution_images_batch_on_one_gpu():
    now = 5.0
    # at sigma 1 a 768 image cannot even share a GPU with one more (T_img(2) > its deadline): use sigma 1.5
    imgs = [image(f"i{k}", 768, arrival=now - 0.01 * k, sigma=1.5) for k in range(4)]
    vids = _full_cluster(now, [1.0] * 8, sizes=[256] * 8, done=[45] * 8)[:7]  # GPU 7 idle
    snap = snapshot(now, imgs, vids, last_image=now)
    plan = _plan(snap)
    assert len(plan.batches) == 1 and len(plan.batches[0].request_ids) >= 2 and plan.batches[0].gpu == 7
    off = _plan(snap, PolicyOptions(batching=False))
    assert all(len(b.request_ids) == 1 for b in off.batches)


def test_decoding_video_continues_and_paused_limit_holds():
    now = 30.0
    dec = video("d", 768, S.RUNNING, (0,), 50, arrival=0.0, busy_until=now + 2.0, decoding=True)
    p = video("p", 768, S.PAUSED, (), 20, arrival=0.0, home=1, pauses=1)
    r = video("r", 768, S.RUNNING, (1,), 10, arrival=5.0, busy_until=now)
    imgs = [image(f"i{k}", 768, arrival=now) for k in range(8)]
    snap = snapshot(now, imgs, [dec, p, r], busy=[now + 2.0] + [now - 1] * 7, last_image=now)
    plan = _plan(snap)
    assert plan.actions["d"].kind is ActionKind.CONTINUE and plan.actions["d"].gpus == (0,)
    # r may not be paused onto GPU 1 while p's state is there (the images would take it otherwise)
    assert plan.actions["r"].kind is ActionKind.CONTINUE
    assert _plan(snap, PolicyOptions(max_paused_per_gpu=2)).actions["r"].kind is ActionKind.HOLD


def test_everything_off_is_fcfs():
    """All switches off: arrival order, SP 1, one image per GPU, nothing paused."""
    now = 20.0
    vids = [video("a", 768, S.QUEUED, (), 0, arrival=1.0), video("b", 256, S.QUEUED, (), 0, arrival=3.0)]
    imgs = [image("i0", 1440, arrival=2.0, deadline=100.0), image("i1", 768, arrival=4.0, deadline=100.0),
            image("i2", 768, arrival=5.0, deadline=100.0)]
    run = _full_cluster(now, [10.0] * 8)[:5]  # GPUs 5, 6, 7 free
    snap = snapshot(now, imgs, run + vids, last_image=5.0)
    off = PolicyOptions(dp=False, preemption=False, elastic_sp=False, batching=False)
    plan = _plan(snap, off)
    assert plan.actions["a"].kind is ActionKind.START and len(plan.actions["a"].gpus) == 1
    assert plan.actions["i0"].kind is ActionKind.BATCH
    assert plan.actions["b"].kind is ActionKind.START
    assert plan.actions["i1"].kind is ActionKind.HOLD and plan.actions["i2"].kind is ActionKind.HOLD
    assert all(plan.actions[v.id].kind is ActionKind.CONTINUE for v in run)


def test_tail_guard_caps_pauses_of_a_feasible_video():
    now = 100.0
    slacks = [1.0, 5.0, 30.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    vids = _full_cluster(now, slacks, done=[40, 30, 0, 40, 40, 35, 30, 25])
    from genserve.scheduling.dp.tuning import DEFAULT

    cap = DEFAULT.max_pauses
    vids[2] = video("v2", 768, S.RUNNING, (2,), 0, arrival=0.0, deadline=vids[2].deadline, busy_until=now,
                    pauses=cap)
    snap = snapshot(now, [image("i0", 768, arrival=now)], vids, last_image=now)
    on = _plan(snap)
    assert on.actions["v2"].kind is not ActionKind.HOLD  # paused `cap` times already: protected
    off = _plan(snap, PolicyOptions(tail_guard=False))
    assert off.actions["v2"].kind is ActionKind.HOLD
    vids[2] = dataclasses.replace(vids[2], pauses=cap - 1)  # one pause below the cap: still the victim
    below = _plan(snapshot(now, [image("i0", 768, arrival=now)], vids, last_image=now))
    assert below.actions["v2"].kind is ActionKind.HOLD


def test_hopeless_video_yields_to_feasible_work_but_is_never_starved_alone():
    now = 100.0
    vids = _full_cluster(now, [5.0] * 8, sizes=[480] * 8, done=[20] * 8)
    # v0 can no longer make its deadline at any degree
    vids[0] = video("v0", 480, S.RUNNING, (0,), 10, arrival=0.0, deadline=now + 1.0, busy_until=now)
    snap = snapshot(now, [image("i0", 768, arrival=now)], vids, last_image=now)
    plan = _plan(snap)
    assert plan.actions["v0"].kind is ActionKind.HOLD and plan.actions["i0"].gpus == (0,)
    alone = snapshot(now, [], [vids[0]])
    a = _plan(alone).actions["v0"]
    assert a.kind in (ActionKind.CONTINUE, ActionKind.RECONFIGURE)


def test_fast_path_agrees_with_the_dp():
    """Rounds where nothing waits and no GPU idles skip the DP; the DP would choose the same."""
    import random

    from genserve.scheduling.dp import policy as P

    rng = random.Random(3)
    hits = 0
    for trial in range(300):
        now = 50.0
        blocks, g = [], 0
        while g < 8:  # tile the node with aligned blocks
            p = rng.choice([p for p in (1, 2, 4, 8) if g % p == 0 and g + p <= 8])
            blocks.append(tuple(range(g, g + p)))
            g += p
        vids = []
        for k, b in enumerate(blocks):
            size = rng.choice([256, 480, 768])
            done = rng.randint(0, 80)
            t = PROFILE.video_step("wan2.2-t2v-5b", size, size, 81, len(b))
            dec = PROFILE.video_decode("wan2.2-t2v-5b", size, size, 81)
            mid = rng.random() < 0.6
            bu = now + rng.uniform(0.01, t) if mid else now
            finish = (bu if mid else now) + (89 - done - (1 if mid else 0)) * t + dec
            vids.append(VideoView_(f"v{k}", size, b, done, finish + rng.uniform(0.0, 20.0), bu))
        snap = snapshot(now, [], vids)
        r = P._Round(snap, PolicyOptions(), P.DEFAULT)
        fast = P._fast_path(r)
        if fast is None:
            continue
        hits += 1
        real = P._fast_path
        try:
            P._fast_path = lambda r: None
            full = P.GenServePolicy().plan(snap)
        finally:
            P._fast_path = real
        assert fast.actions == full.actions, trial
    assert hits >= 100


def VideoView_(i, size, gpus, done, deadline, busy_until):
    from genserve.core.snapshot import VideoView

    return VideoView(i, "wan2.2-t2v-5b", size, size, 81, 89, done, 0.0, deadline, S.RUNNING, gpus, gpus[0],
                     busy_until)


def test_branch_and_bound_keeps_a_preemption_that_gives_an_image_a_later_higher_scoring_slot():
    """Regression: the image bound must bound the score too. An image started later has less slack and scores
    higher, so the score sum of the earliest slots is not an upper bound; with it, the round below pruned the
    plan that pauses v0 for the urgent i0 and lost i0 (found in a sigma 1.3 simulation)."""
    now = 100.0
    vid = "wan2.2-t2v-5b"
    step = PROFILE.video_step(vid, 768, 768, 81, 1)
    dec = PROFILE.video_decode(vid, 768, 768, 81)
    vids = []
    for k in range(7):  # mid-step on GPUs 0..6; v0's step ends first and it has the most work left
        done = 0 if k == 0 else 30
        end = now + 0.1 * (k + 1)
        finish = end + (50 - done - 1) * step + dec
        vids.append(video(f"v{k}", 768, S.RUNNING, (k,), done, arrival=0.0, deadline=finish + 80.0, busy_until=end))
    lat = lambda size: PROFILE.image_latency("sd3.5-medium", size, size, 1, 28)  # noqa: E731
    i0 = image("i0", 768, arrival=now, deadline=now + 0.1 + lat(768) + 0.09)  # on time only on v0's GPU
    i1 = image("i1", 1440, arrival=now, deadline=now + 3.0 + lat(1440) + 0.05)  # on time on GPU 7 after its batch
    snap = snapshot(now, [i0, i1], vids, busy=[now - 1.0] * 7 + [now + 3.0], last_image=now)
    plan = _plan(snap)
    assert plan.actions["v0"].kind is ActionKind.HOLD
    assert plan.actions["i0"].gpus == (0,) and plan.actions["i1"].gpus == (7,)
