"""The live engine on real processes: 4 CPU worker slots (gloo), tiny SD3 and Wan models, the real Controller.

Runs in file order on one shared pool (see conftest.py); the last test closes the pool and checks that no
process is left.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest
import torch

from genserve.core.events import BatchDone, Failed, StepDone, VideoDone
from genserve.executors.base import StepSetup
from genserve.profiles import Profile
from genserve.scheduling.options import PolicyOptions
from genserve.scheduling.registry import make_policy
from genserve.bench.engine import isolated_and_calibrated, mixed_trace
from genserve.workers.driver import run_live

from live_helpers import (BATCH_PIXEL_TOL, SP_FRAME_TOL, alive, clone, image, load_raw, sp_speedup_profile, video,
                          wait_event)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

C, R = StepSetup.CONTINUE, StepSetup.RECONFIGURE


def scripted(ex, req, plan, decode_on: int) -> str:
    """Drive one video through `plan` directly on the executor: entries (gpus, setup, source) or ("pause", gpu)."""
    q: queue.Queue = queue.Queue()
    ex.attach(q.put)
    k = 0
    for item in plan:
        if item[0] == "pause":
            ex.pause(req, item[1])
            continue
        gpus, setup, src = item
        ex.run_step(req, k, gpus, setup, src)
        ev = wait_event(q, ("StepDone",), req.id)
        assert isinstance(ev, StepDone), ev
        assert ev.step == k and ev.gpus == gpus
        k += 1
    assert k == req.steps
    ex.decode(req, decode_on)
    ev = wait_event(q, ("VideoDone",), req.id)
    assert isinstance(ev, VideoDone), ev
    return ex.outputs[req.id]


def test_video_sp_1_2_4_paused_1_matches_uninterrupted(pool):
    """SP 1 -> 2 -> 4 -> paused -> 1 on another worker, through the worker processes: equal to SP 1 throughout
    within the SP tolerance; a run that only pauses and moves between workers at SP 1 is bit-identical."""
    ref_req = video("sp-ref", steps=8, seed=7, prompt="a red kite")
    ref = scripted(pool, ref_req, [((0,), StepSetup.FRESH, None)] + [((0,), C, None)] * 7, 0)
    elastic = clone(ref_req, "sp-elastic")
    plan = [((0,), StepSetup.FRESH, None), ((0,), C, None), ((0, 1), R, 0), ((0, 1), C, None),
            ((0, 1, 2, 3), R, 0), ((0, 1, 2, 3), C, None), ("pause", 0), ((2,), StepSetup.RESUME, 0),
            ((2,), C, None)]
    out = scripted(pool, elastic, plan, 2)
    moved = clone(ref_req, "sp-moved")
    plan = [((1,), StepSetup.FRESH, None), ((1,), C, None), ("pause", 1), ((3,), StepSetup.RESUME, 1),
            ((3,), C, None), ((2,), R, 3), ("pause", 2), ((0,), StepSetup.RESUME, 2), ((0,), C, None),
            ((0,), C, None)]
    out_moved = scripted(pool, moved, plan, 0)
    a, b, c = load_raw(ref), load_raw(out), load_raw(out_moved)
    assert a.shape == (5, 3, 32, 32)
    assert a.std() > 0.01  # a real picture, not a constant
    diff = (a - b).abs().max().item()
    assert diff <= SP_FRAME_TOL, diff
    assert torch.equal(a, c)  # pause/resume/hand-over without SP: bit for bit
    assert os.path.getsize(ref) > 0 and ref.endswith(".mp4")
    kinds = {(deg, setup) for rid, deg, setup, _ in pool.step_durations if rid == "sp-elastic"}
    assert {(1, "fresh"), (2, "reconfigure"), (4, "reconfigure"), (4, "continue"), (1, "resume")} <= kinds


def test_mixed_trace_genserve_policy(pool):
    """~20 tiny requests on 4 workers under the genserve policy: every request completes, at least one
    preemption and one SP change happen, and every output equals its isolated run (bit for bit when the request
    ran at SP 1 / batch 1, within the SP or batching tolerance otherwise)."""
    # SP must pay per the profile for the policy to use it: the measured tiny-cpu has SP slower than SP 1 on this box
    base = sp_speedup_profile(Profile.load("tiny-cpu"))
    # 1. isolated runs (FCFS: SP 1, batch 1, no preemption) of the same requests; they also calibrate the profile
    #    to this machine, so that slack and deadlines (sigma 1 for images) mean what they say on the real clock
    iso, prof = isolated_and_calibrated(pool, base, mixed_trace(base), prefix="iso-", timeout_s=100)
    assert all(rec.status == "done" for rec in iso.records.values()), iso.records
    # 2. the mixed trace under genserve, deadlines from the calibrated profile
    trace = mixed_trace(prof)
    res = run_live(make_policy("genserve", PolicyOptions()), pool, trace, prof, timeout_s=100)
    recs = res.records
    assert len(recs) == 20
    assert all(rec.status == "done" for rec in recs.values()), {k: r.status for k, r in recs.items()}
    assert res.preemptions >= 1, _summary(res)
    assert res.sp_changes >= 1, _summary(res)
    # 3. outputs equal the isolated runs
    for r in trace:
        rec = recs[r.id]
        got, want = load_raw(pool.outputs[r.id]), load_raw(pool.outputs["iso-" + r.id])
        same_path = rec.max_degree <= 1 and rec.sp_changes == 0 if r.is_video else rec.batch_size == 1
        if same_path:
            assert torch.equal(got, want), (r.id, (got - want).abs().max().item())
        else:
            tol = SP_FRAME_TOL if r.is_video else BATCH_PIXEL_TOL
            assert (got - want).abs().max().item() <= tol, r.id
    print(_summary(res))


def _summary(res) -> str:
    lines = [f"rounds {res.rounds}, preemptions {res.preemptions}, SP changes {res.sp_changes}, wall {res.wall_s:.2f}s"]
    for rid, rec in sorted(res.records.items()):
        lines.append(f"  {rid}: {rec.status} latency {rec.latency:.3f}s deadline {rec.deadline - rec.arrival:.3f}s "
                     f"met={rec.met_slo} pauses={rec.pauses} sp_changes={rec.sp_changes} max_degree={rec.max_degree} "
                     f"batch={rec.batch_size}")
    return "\n".join(lines)


def test_kill_sp2_worker_mid_video_resumes_from_checkpoint(pool):
    """SIGKILL a rank of an SP 2 group between steps: the worker is restarted, the world re-formed, the step in
    flight runs again from the leader's checkpoint and the video ends equal to an uninterrupted SP 2 run."""
    q: queue.Queue = queue.Queue()
    ref = clone(video("kill-ref", steps=8, seed=11), "kill-ref")
    plan = [((2, 3), StepSetup.FRESH, None)] + [((2, 3), C, None)] * 7
    want = load_raw(scripted(pool, ref, plan, 2))
    req = clone(ref, "kill-sp2")
    pool.attach(q.put)
    restarts = pool.restarts
    pids = pool.worker_pids()
    for k in range(8):
        pool.run_step(req, k, (2, 3), StepSetup.FRESH if k == 0 else C, None)
        if k == 3:
            time.sleep(0.005)
            pool.kill_worker(3)  # likely mid-step: its peer is inside a collective with it
        ev = wait_event(q, ("StepDone",), req.id, timeout=60)
        assert isinstance(ev, StepDone), ev
        assert ev.step == k
    pool.decode(req, 2)
    ev = wait_event(q, ("VideoDone",), req.id)
    assert isinstance(ev, VideoDone), ev
    got = load_raw(pool.outputs[req.id])
    assert torch.equal(got, want)
    assert pool.restarts == restarts + 1
    new = pool.worker_pids()
    assert new[3] != pids[3] and new[:3] == pids[:3]
    assert any(kind == "worker-restarted" for _, kind, _ in pool.log)
    assert pool.ready_all()


def test_kill_worker_during_served_video_loses_nothing(pool):
    """Under the controller (FCFS): SIGKILL the worker running a video; the video and the images queued and
    running around it all complete, the video's output is bit-identical to its isolated run."""
    prof = Profile.load("tiny-cpu")
    reqs = [video("kv", steps=14, seed=5, arrival=0.0)] + [image(f"ki{j}", seed=j, arrival=0.05 * j)
                                                            for j in range(5)]
    killed = []

    def killer():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            v = pool._videos.get("kv")
            if v is not None and v.steps_done >= 3 and v.gpus:
                killed.append(pool.kill_worker(v.gpus[0]))
                return
            time.sleep(0.002)

    t = threading.Thread(target=killer, daemon=True)
    restarts = pool.restarts
    t.start()
    res = run_live(make_policy("fcfs", PolicyOptions(batching=False)), pool, reqs, prof, timeout_s=90)
    t.join(timeout=5)
    assert killed, "the video finished before it could be killed"
    assert pool.restarts >= restarts + 1
    assert {rid: rec.status for rid, rec in res.records.items()} == {r.id: "done" for r in reqs}
    ref = scripted(pool, clone(reqs[0], "kv-ref"), [((1,), StepSetup.FRESH, None)] + [((1,), C, None)] * 13, 1)
    assert torch.equal(load_raw(pool.outputs["kv"]), load_raw(ref))
    assert any(kind == "recovered" and "kv" in text for _, kind, text in pool.log) or \
        any(kind == "Failed" for _, kind, _ in res.events)


def test_kill_during_image_batch_requeues_and_paused_state_survives(pool):
    """A worker killed during an image batch: the batch is reported Failed(retryable=True) (the Controller queues
    the images again) and runs fine on the restarted worker. A video paused on a worker that then dies resumes
    elsewhere from its checkpoint, bit-identical to an uninterrupted run."""
    q: queue.Queue = queue.Queue()
    ref = video("pk-ref", steps=6, seed=21)
    want = load_raw(scripted(pool, ref, [((3,), StepSetup.FRESH, None)] + [((3,), C, None)] * 5, 3))
    pool.attach(q.put)
    req = clone(ref, "pk")
    for k in range(3):
        pool.run_step(req, k, (1,), StepSetup.FRESH if k == 0 else C, None)
        assert isinstance(wait_event(q, ("StepDone",), req.id), StepDone)
    pool.pause(req, 1)  # the state lives on worker 1 only (and in its checkpoint)
    imgs = [image(f"kb{j}", size=64, steps=8, seed=j) for j in range(4)]
    restarts = pool.restarts
    pool.start_batch(imgs, 1)
    time.sleep(0.05)
    pool.kill_worker(1)
    ev = wait_event(q, ("BatchDone",), imgs[0].id, timeout=30)
    assert isinstance(ev, Failed) and ev.retryable and "died" in ev.reason, ev
    assert set(ev.request_ids) == {r.id for r in imgs}
    deadline = time.monotonic() + 30
    while not (pool.ready_all() and pool.restarts > restarts) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.ready_all()
    pool.start_batch(imgs, 1)  # what the Controller does with retryable images: run them again
    assert isinstance(wait_event(q, ("BatchDone",), imgs[0].id, timeout=30), BatchDone)
    # the paused video resumes on worker 2 although its home worker died: from the checkpoint
    for k in range(3, 6):
        pool.run_step(req, k, (2,), StepSetup.RESUME if k == 3 else C, 1 if k == 3 else None)
        assert isinstance(wait_event(q, ("StepDone",), req.id), StepDone)
    pool.decode(req, 2)
    assert isinstance(wait_event(q, ("VideoDone",), req.id), VideoDone)
    assert torch.equal(load_raw(pool.outputs[req.id]), want)


def test_worker_exception_fails_the_request_with_its_reason(pool):
    """A worker that raises mid-request: the request fails with the worker's reason (not retried, not lost);
    at SP 1 the worker survives and keeps serving; in an SP group the raising rank exits, which frees its
    peer from the collective at once, and is restarted."""
    q: queue.Queue = queue.Queue()
    pool.attach(q.put)
    req = video("raise-sp1", steps=4)
    pool.run_step(req, 0, (1,), StepSetup.FRESH, None)
    assert isinstance(wait_event(q, ("StepDone",), req.id), StepDone)
    pool.inject_fault(1, req.id, "raise")
    pid = pool.worker_pids()[1]
    pool.run_step(req, 1, (1,), C, None)
    ev = wait_event(q, ("StepDone",), req.id)
    assert isinstance(ev, Failed) and not ev.retryable and "injected fault" in ev.reason
    assert pool.worker_pids()[1] == pid
    img = image("after-raise")
    pool.start_batch([img], 1)
    assert isinstance(wait_event(q, ("BatchDone",), img.id), BatchDone)

    req2 = video("raise-sp2", steps=4)
    pool.run_step(req2, 0, (0, 1), StepSetup.FRESH, None)
    assert isinstance(wait_event(q, ("StepDone",), req2.id), StepDone)
    restarts = pool.restarts
    pool.inject_fault(1, req2.id, "raise")
    t0 = time.monotonic()
    pool.run_step(req2, 1, (0, 1), C, None)
    ev = wait_event(q, ("StepDone",), req2.id)
    assert isinstance(ev, Failed) and not ev.retryable and "injected fault" in ev.reason
    assert time.monotonic() - t0 < 20
    deadline = time.monotonic() + 30
    while not (pool.ready_all() and pool.restarts > restarts) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.ready_all() and pool.restarts == restarts + 1
    req3 = video("after-raise-sp2", steps=2)
    pool.run_step(req3, 0, (0, 1), StepSetup.FRESH, None)
    assert isinstance(wait_event(q, ("StepDone",), req3.id), StepDone)


def test_bench_engine_figures(pool):
    """The functions behind `genserve bench engine`, on the shared pool: overhead per step is measured for every
    step boundary, the setup costs and the recovery figure come out."""
    from genserve.bench.engine import measure_costs, measure_overhead, measure_recovery

    ovh = measure_overhead(pool, Profile.load("tiny-cpu"), "genserve", videos=1, steps=6)
    assert ovh["n"] == 5 and 0 < ovh["median_ms"] < 1000
    costs = measure_costs(pool, repeats=1)
    assert set(costs["plain_step_ms"]) == {"1", "2", "4"}
    assert {"resume_to_sp1_extra_ms", "reconfigure_to_sp2_extra_ms", "reconfigure_to_sp4_extra_ms"} <= set(costs)
    rec = measure_recovery(pool, repeats=1)
    assert rec["recovered_step"]["n"] == 1 and rec["plain_step_roundtrip"]["n"] == 5
    assert pool.ready_all()


def test_engine_runtime_over_local_workers(tmp_path, pool):
    """The serving path: F's Engine (the Controller on the wall clock in a background thread) over a LocalExecutor
    of 2 workers, via make_engine("local"): an image and a video complete with real PNG/MP4 files, progress
    updates arrive, and close() leaves none of its workers running."""
    from genserve.engine.api import RequestUpdate
    from genserve.engine.runtime import make_engine

    eng = make_engine("local", profile="tiny-cpu", policy="genserve", devices=["cpu", "cpu"], output_dir=tmp_path)
    updates: list[RequestUpdate] = []
    eng.start()
    try:
        pids = list(eng.executor.all_pids)
        assert len(pids) == 2 and all(alive(p) for p in pids)
        now = eng.now
        eng.submit(video("rt-v", steps=6, arrival=now, deadline=now + 60), updates.append)
        eng.submit(image("rt-i", arrival=now, deadline=now + 60), updates.append)
        for rid, suffix in (("rt-v", ".mp4"), ("rt-i", ".png")):
            u = eng.wait(rid, timeout=60)
            assert u is not None and u.status.value == "done", u
            assert u.outputs and u.outputs[0].endswith(suffix) and os.path.getsize(u.outputs[0]) > 0
        assert any(u.request_id == "rt-v" and 0 < u.progress < 100 for u in updates)
    finally:
        eng.close(drain=True)
    assert not [p for p in pids if alive(p)]


def _descendants(root: int) -> dict[int, str]:
    """Live (non-zombie) descendants of `root` with their command lines, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent[int(entry)] = int(fields[1])
    out: dict[int, str] = {}
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for child, pp in parent.items():
            if pp == p and child not in out:
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as f:
                        out[child] = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    out[child] = ""
                frontier.append(child)
    return out


def test_close_leaves_no_process(pool):
    """Shutdown stops every worker, including restarted ones; nothing the executor started keeps running."""
    pids = list(pool.all_pids)
    assert len(pids) == 4 + pool.restarts  # the four workers and every restart (the kill tests make some)
    assert any(alive(p) for p in pids)
    pool.close()
    assert not [p for p in pids if alive(p)]
    left = _descendants(os.getpid())
    helpers = ("multiprocessing.forkserver", "resource_tracker")  # shared helpers, judged below, not workers
    ours = [(pid, cmd) for pid, cmd in left.items() if pid in pids or
            ("genserve" in cmd and not any(h in cmd for h in helpers))]
    assert not ours, ours
    if pool._started_forkserver:  # the forkserver this executor started is stopped with it
        assert pool.forkserver_pid is not None and not alive(pool.forkserver_pid)
    assert pool.worker_pids() == [None] * 4
