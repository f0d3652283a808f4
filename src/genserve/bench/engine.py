"""`genserve bench engine`: the live engine's own costs, on real worker processes (CPU slots or GPUs).

1. Controller overhead per step: the time from a StepDone reply reaching the executor to the next step command
   leaving it (listener thread -> event queue -> driver -> Controller.on_event + flush, i.e. a whole policy round
   -> LocalExecutor.run_step -> pipe), for videos served by the real Controller and policy. Target < 1 ms on CPU.
2. Pause / resume / reconfigure across processes: worker-measured step times of the same video (scripted on the
   executor) with each setup, minus the median plain step at the same degree; plus command round trips.
3. Recovery: a worker SIGKILLed while it runs a step; the time until that step is done again (restart, new
   world, the step from the checkpoint).
4. (--mixed) the mixed trace of the live tests under the genserve policy, with its event summary.
"""

from __future__ import annotations

import json
import queue
import statistics
import time
from pathlib import Path
from typing import Optional

import typer

from genserve.core.request import Request


def _video(rid: str, *, w=32, h=32, frames=5, steps=8, seed=1, arrival=0.0, deadline=1e6) -> Request:
    return Request(id=rid, modality="video", model="tiny-wan", prompt=f"a video of {rid}", width=w, height=h,
                   frames=frames, steps=steps, seed=seed, arrival=arrival, deadline=deadline)


def _image(rid: str, *, size=32, steps=4, seed=1, arrival=0.0, deadline=1e6) -> Request:
    return Request(id=rid, modality="image", model="tiny-sd3", prompt=f"an image of {rid}", width=size,
                   height=size, steps=steps, seed=seed, arrival=arrival, deadline=deadline)


def mixed_trace(prof) -> list[Request]:
    """20 tiny requests: four videos fill four workers (two with deadlines that need SP > 1 by the profile), then
    bursts of images with sigma-1 deadlines that only a preemption or an SP downgrade can serve in time.

    Arrival times are in units of the profile's SP-1 step of a 32x32x5 video (T), so the bursts land while the
    videos are still running whatever the speed of the machine (with a calibrated profile)."""
    reqs: list[Request] = []
    T = prof.video_step("tiny-wan", 32, 32, 5, 1)

    def vid(i, t, w, h, f, steps, k):
        iso = prof.isolated_latency("video", "tiny-wan", w, h, f, steps)
        reqs.append(_video(f"v{i}", w=w, h=h, frames=f, steps=steps, seed=100 + i, arrival=t, deadline=t + k * iso))

    def img(i, t, size, k=1.5):
        iso = prof.isolated_latency("image", "tiny-sd3", size, size, 1, 4)
        reqs.append(_image(f"i{i}", size=size, steps=4, seed=i, arrival=t, deadline=t + k * iso))

    vid(0, 0.0, 32, 32, 5, 12, 0.75)  # tight: SP 1 misses, SP 2+ meets (per the profile)
    vid(1, 0.0, 32, 32, 5, 16, 8.0)
    vid(2, 0.2 * T, 64, 64, 9, 10, 8.0)
    vid(3, 0.4 * T, 32, 32, 5, 16, 8.0)
    for j in range(6):
        img(j, (4 + 0.2 * j) * T, 32 if j % 3 else 64)
    vid(4, 7 * T, 32, 32, 5, 10, 0.8)
    for j in range(6, 12):
        img(j, (9 + 0.3 * (j - 6)) * T, 32)
    vid(5, 11 * T, 32, 32, 5, 10, 6.0)
    img(12, 13 * T, 64)
    img(13, 14 * T, 32)
    return reqs


def isolated_and_calibrated(ex, base, reqs: list[Request], prefix: str = "iso-", timeout_s: float = 120.0):
    """Run every request alone (FCFS: SP 1, batch 1, no preemption) on the executor, and a copy of `base` scaled
    to the times the workers measured (median ratios, images and videos apart). Returns (result, profile)."""
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import make_policy
    from genserve.workers.driver import run_live

    iso = [Request(id=prefix + r.id, modality=r.modality, model=r.model, prompt=r.prompt, width=r.width,
                   height=r.height, frames=r.frames, steps=r.steps, seed=r.seed, arrival=0.0, deadline=1e6)
           for r in reqs]
    by_id = {r.id: r for r in iso}
    n0 = len(ex.step_durations)
    res = run_live(make_policy("fcfs", PolicyOptions(batching=False)), ex, iso, base, timeout_s=timeout_s)
    rv = [d / base.video_step(by_id[rid].model, by_id[rid].width, by_id[rid].height, by_id[rid].frames, 1)
          for rid, deg, setup, d in ex.step_durations[n0:] if setup == "continue" and rid in by_id]
    ri = []
    for _, kind, text in res.events:
        if kind == "BatchDone":
            rid = text.split(" on ")[0].split(",")[0]
            ms = float(text.rsplit("(", 1)[1].split(" ms")[0])
            r = by_id[rid]
            ri.append(ms / 1e3 / base.image_latency(r.model, r.width, r.height, 1, r.steps))
    prof = base.scaled(statistics.median(ri), statistics.median(rv), f"{base.name}-calibrated")
    return res, prof


def summarize(res) -> dict:
    """The event-log summary of a live run: counts, and per request latency vs its deadline."""
    recs = res.records
    kinds: dict[str, int] = {}
    for _, kind, _ in res.events:
        kinds[kind] = kinds.get(kind, 0) + 1
    rows = []
    for rid, rec in sorted(recs.items(), key=lambda kv: (kv[1].modality, kv[0])):
        rows.append({"id": rid, "modality": rec.modality, "status": rec.status,
                     "latency_s": None if rec.latency is None else round(rec.latency, 3),
                     "slo_s": round(rec.deadline - rec.arrival, 3), "met": rec.met_slo, "pauses": rec.pauses,
                     "sp_changes": rec.sp_changes, "max_degree": rec.max_degree, "batch": rec.batch_size})
    met = sum(r["met"] for r in rows)
    return {"requests": len(rows), "done": sum(r["status"] == "done" for r in rows), "met_slo": met,
            "rounds": res.rounds, "preemptions": res.preemptions, "sp_changes": res.sp_changes,
            "wall_s": round(res.wall_s, 3), "events": kinds, "per_request": rows}


def _stats_ms(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(statistics.median(xs) * 1e3, 3),
            "p90_ms": round(xs[int(0.9 * (len(xs) - 1))] * 1e3, 3), "max_ms": round(xs[-1] * 1e3, 3)}


def _scripted(ex, req: Request, plan: list, q: "queue.Queue") -> list[tuple[str, int, float]]:
    """Run `plan` ((gpus, setup, source) or ("pause", gpu)) for one video; return (setup, degree, worker s)."""
    from genserve.core.events import StepDone

    out = []
    k = 0
    for item in plan:
        if item[0] == "pause":
            ex.pause(req, item[1])
            continue
        gpus, setup, src = item
        ex.run_step(req, k, gpus, setup, src)
        while True:
            ev = q.get(timeout=120)
            if getattr(ev, "request_id", None) == req.id or req.id in getattr(ev, "request_ids", ()):
                break
        if not isinstance(ev, StepDone):
            raise RuntimeError(f"step {k} of {req.id} failed: {ev}")
        out.append((setup.value, len(gpus), ev.duration))
        k += 1
    ex.discard(req, ())
    return out


def measure_costs(ex, repeats: int = 3, size: tuple[int, int, int] = (32, 32, 5)) -> dict:
    """Pause / resume / reconfigure across processes, scripted on `ex` (needs 4 workers for SP 4)."""
    from genserve.executors.base import StepSetup as S

    q: "queue.Queue" = queue.Queue()
    ex.attach(q.put)
    n = ex.num_workers
    w, h, f = size
    rows: list[tuple[str, int, float]] = []
    t_pause = []
    for r in range(repeats):
        plan = [((0,), S.FRESH, None)] + [((0,), S.CONTINUE, None)] * 3
        plan += [("pause", 0), ((1,), S.RESUME, 0), ((1,), S.CONTINUE, None)]
        steps = 6
        if n >= 2:
            plan += [((0, 1), S.RECONFIGURE, 1)] + [((0, 1), S.CONTINUE, None)] * 2 + [((1,), S.RECONFIGURE, 0)]
            steps += 4
        if n >= 4:
            plan += [((0, 1, 2, 3), S.RECONFIGURE, 1)] + [((0, 1, 2, 3), S.CONTINUE, None)] * 2
            plan += [("pause", 0), ((2, 3), S.RESUME, 0), ((2, 3), S.CONTINUE, None)]
            steps += 5
        req = _video(f"bench-costs-{r}", w=w, h=h, frames=f, steps=steps, seed=r)
        rows += _scripted(ex, req, plan, q)
    for op in ("pause", "drop"):
        t_pause += ex.op_times.get(op, [])
    base = {}
    for deg in (1, 2, 4):
        xs = [d for s, p, d in rows if s == "continue" and p == deg]
        if xs:
            base[deg] = statistics.median(xs)
    out = {"plain_step_ms": {str(k): round(v * 1e3, 3) for k, v in base.items()}}
    for setup in ("resume", "reconfigure"):
        for deg in (1, 2, 4):
            xs = [d for s, p, d in rows if s == setup and p == deg]
            if xs and deg in base:
                out[f"{setup}_to_sp{deg}_extra_ms"] = round((statistics.median(xs) - base[deg]) * 1e3, 3)
    out["pause_command_roundtrip"] = _stats_ms(ex.op_times.get("pause", []))
    out["drop_command_roundtrip"] = _stats_ms(ex.op_times.get("drop", []))
    return out


def measure_recovery(ex, repeats: int = 2) -> dict:
    """SIGKILL the worker of a running SP-1 video right after sending it a step: the time until that step's
    StepDone arrives (restart + world re-formed + the step again from the checkpoint), vs a plain step."""
    from genserve.core.events import StepDone
    from genserve.executors.base import StepSetup as S

    q: "queue.Queue" = queue.Queue()
    ex.attach(q.put)
    gpu = ex.num_workers - 1
    rec, plain = [], []
    for r in range(repeats):
        req = _video(f"bench-fault-{r}", steps=6, seed=r)
        for k in range(6):
            ex.run_step(req, k, (gpu,), S.FRESH if k == 0 else S.CONTINUE, None)
            t0 = time.perf_counter()
            if k == 3:
                ex.kill_worker(gpu)
            while True:
                ev = q.get(timeout=120)
                if getattr(ev, "request_id", None) == req.id or req.id in getattr(ev, "request_ids", ()):
                    break
            if not isinstance(ev, StepDone):
                raise RuntimeError(f"step {k} of {req.id} was not recovered: {ev}")
            (rec if k == 3 else plain).append(time.perf_counter() - t0)
        ex.discard(req, ())
    return {"recovered_step": _stats_ms(rec), "plain_step_roundtrip": _stats_ms(plain), "restarts": ex.restarts}


def measure_overhead(ex, prof, policy: str = "genserve", videos: int = 2, steps: int = 30) -> dict:
    """Controller overhead per step with the real Controller and policy over `ex` (videos only, loose deadlines)."""
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import make_policy
    from genserve.workers.driver import run_live

    n0 = len(ex.step_overheads)
    reqs = [_video(f"bench-ovh-{i}", steps=steps, seed=i, deadline=1e6) for i in range(videos)]
    res = run_live(make_policy(policy, PolicyOptions()), ex, reqs, prof, timeout_s=300, strict=False)
    xs = ex.step_overheads[n0:]
    out = _stats_ms(xs)
    out["policy"] = policy
    out["videos"] = videos
    out["rounds"] = res.rounds
    out["under_1ms_share"] = round(sum(x < 1e-3 for x in xs) / max(1, len(xs)), 3)
    out["round"] = _stats_ms(res.flush_s)  # of which: the Controller's round (snapshot, policy, apply, send)
    return out


def cmd(
    workers: int = typer.Option(4, help="Worker processes (CPU slots, or GPUs with --device cuda)."),
    device: str = typer.Option("cpu", help="cpu | cuda"),
    threads: int = typer.Option(1, help="torch threads per CPU slot."),
    steps: int = typer.Option(30, help="Denoising steps per video in the overhead run."),
    videos: int = typer.Option(1, help="Concurrent videos in the overhead run."),
    policy: str = typer.Option("genserve", help="Policy for the overhead run."),
    repeats: int = typer.Option(3, help="Repeats of the scripted pause/resume/reconfigure sequence."),
    mixed: bool = typer.Option(False, "--mixed", help="Also run the 20-request mixed trace (needs 4 workers)."),
    fault: bool = typer.Option(True, "--fault/--no-fault", help="Measure recovery from a worker killed mid-step."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all figures as JSON here."),
) -> None:
    """Controller overhead per step, pause/resume/reconfigure costs across processes, optional mixed trace."""
    from genserve.executors.local import LocalExecutor
    from genserve.profiles import Profile

    prof = Profile.load("tiny-cpu")
    t0 = time.perf_counter()
    ex = LocalExecutor(workers, device=device, threads=threads, sp_degrees=(1, 2, 4))
    ex.start()
    report: dict = {"workers": workers, "device": device, "threads": threads,
                    "start_s": round(time.perf_counter() - t0, 2)}
    try:
        typer.echo(f"{workers} workers ready in {report['start_s']} s")
        ovh = measure_overhead(ex, prof, policy, videos, steps)
        report["overhead"] = ovh
        typer.echo(f"controller overhead per step ({policy}, {videos} video(s) x {steps} steps): median "
                   f"{ovh.get('median_ms')} ms, p90 {ovh.get('p90_ms')} ms, max {ovh.get('max_ms')} ms, "
                   f"{100 * ovh['under_1ms_share']:.0f}% under 1 ms (n={ovh['n']}); of which the controller round "
                   f"(snapshot + policy + apply + send): median {ovh['round'].get('median_ms')} ms, "
                   f"p90 {ovh['round'].get('p90_ms')} ms")
        costs = measure_costs(ex, repeats)
        report["costs"] = costs
        typer.echo(f"plain step (worker-measured) by SP degree: {costs['plain_step_ms']} ms")
        for k, v in costs.items():
            if k.endswith("_extra_ms"):
                typer.echo(f"  {k}: {v} ms")
        typer.echo(f"  pause command round trip: {costs['pause_command_roundtrip']}")
        typer.echo(f"  drop command round trip: {costs['drop_command_roundtrip']}")
        if fault:
            fr = measure_recovery(ex)
            report["recovery"] = fr
            typer.echo(f"worker killed mid-step: step done again after median {fr['recovered_step'].get('median_ms')}"
                       f" ms (plain step round trip {fr['plain_step_roundtrip'].get('median_ms')} ms), "
                       f"{fr['restarts']} restarts")
        if mixed:
            from genserve.scheduling.options import PolicyOptions
            from genserve.scheduling.registry import make_policy
            from genserve.workers.driver import run_live

            _, cal = isolated_and_calibrated(ex, prof, mixed_trace(prof))
            res = run_live(make_policy("genserve", PolicyOptions()), ex, mixed_trace(cal), cal, timeout_s=300)
            s = summarize(res)
            report["mixed"] = s
            typer.echo(f"mixed trace: {s['done']}/{s['requests']} done, {s['met_slo']} met their deadline, "
                       f"{s['preemptions']} preemptions, {s['sp_changes']} SP changes, {s['rounds']} rounds, "
                       f"{s['wall_s']} s")
            for r in s["per_request"]:
                typer.echo(f"  {r['id']:>4} {r['modality']:5} latency {r['latency_s']:>7} s  deadline "
                           f"{r['slo_s']:>7} s  met={str(r['met']):5} pauses={r['pauses']} "
                           f"sp_changes={r['sp_changes']} max_degree={r['max_degree']} batch={r['batch']}")
    finally:
        ex.close()
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1))
        typer.echo(f"wrote {json_out}")
