"""`genserve bench fidelity`: does the simulator predict the live engine? The same trace, request by request.

1. Profile: `genserve profile` on this machine's devices (one CPU slot per worker), at the shapes the trace serves,
   with the engine costs (prepare, file writes, handovers, busy factors: `--engine-costs`) and the dispatch cost per
   command measured on the started workers (profiles/dispatch.py); or `--profile FILE` as it is. By default it is
   measured again after each cell's live runs and the simulated devices follow the mean of the two (`--bracket`).
2. Trace: a Poisson mix (44 % videos by default) at 80 % of the workers' capacity by the profile, deadlines
   arrival + sigma * 1.5 * isolated latency: the scheduler pauses, resumes, moves videos and batches images.
3. The trace runs `--live-runs` times on the live engine (worker processes, real tiny diffusers models, the real
   Controller on the wall clock) and once in `run_simulation` on the same profile, step by step as live.
4. Per request: the live latencies, the simulated one, met/missed on each side; the summary (sim/compare.py):
   median and p90 of abs(sim - live) / live, SAR, outcome agreement, the same for live vs live (the noise floor),
   counts of pauses, resumes, moves, SP changes and image batches, and measured / profiled time ratios.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

IMAGE_SIZES = ((32, 32), (64, 64))
VIDEO_SIZES = ((32, 32, 9), (64, 64, 9))


def sizes_arg(image_sizes=IMAGE_SIZES, video_sizes=VIDEO_SIZES) -> str:
    return ",".join([f"{w}x{h}" for w, h in image_sizes] + [f"{w}x{h}x{f}" for w, h, f in video_sizes])


def measure_profile(workers: int, *, executor=None, engine_costs: bool = True, all_busy: bool = False,
                    repeats: int = 3, min_timed_s: float | None = None, log=print) -> "object":
    """`genserve profile` at the served shapes on `workers` CPU slots (+ engine costs, + dispatch on `executor`)."""
    from genserve.profiles import Profile
    from genserve.profiles.dispatch import measure_dispatch, with_dispatch
    from genserve.profiles.profiler import run_profile

    doc = run_profile(devices=("cpu",) * workers, sizes=sizes_arg(), name="fidelity", repeats=repeats,
                      engine_costs=engine_costs, all_busy=all_busy, log=lambda s: None,
                      **({} if min_timed_s is None else {"min_timed_s": min_timed_s}))
    doc.pop("_raw", None)
    prof = Profile.from_dict(doc, "<measured>")
    if engine_costs and executor is not None:
        d = measure_dispatch(executor, prof)
        log(f"dispatch per command (measured on the workers): {d * 1e3:.2f} ms")
        prof = Profile.from_dict(with_dispatch(doc, d), "<measured>")
    return prof


def calibrated_profile(executor, base: str = "tiny-cpu"):
    """The issue's baseline: `base` scaled by the median measured / profiled time of isolated runs on the workers
    (images and videos apart), as the live tests calibrate (bench/engine.py isolated_and_calibrated)."""
    from genserve.bench.engine import _image, _video, isolated_and_calibrated
    from genserve.profiles import Profile

    prof = Profile.load(base)
    reqs = [_image(f"i{w}-{k}", size=w, steps=prof.default_steps("tiny-sd3"), seed=k) for w, _ in IMAGE_SIZES
            for k in range(2)]
    reqs += [_video(f"v{w}x{f}-{k}", w=w, h=h, frames=f, steps=prof.default_steps("tiny-wan"), seed=k)
             for w, h, f in VIDEO_SIZES for k in range(2)]
    return isolated_and_calibrated(executor, prof, reqs, prefix="cal-")[1]


def draw_trace(profile, *, requests: int, seed: int, sigma: float, workers: int, load: float = 0.8,
               video_share: float = 0.44):
    """Trace records (genserve.trace/v1) at `load` of the workers' capacity by the profile's isolated latencies, each
    times the model's busy_factor when measured (CPU slots sharing cores serve less while all of them compute)."""
    from genserve.workloads.generate import WorkloadSpec, generate_trace

    d = profile.doc.defaults
    iso_i = statistics.mean(profile.isolated_latency("image", d.image_model, w, h) for w, h in IMAGE_SIZES)
    iso_v = statistics.mean(profile.isolated_latency("video", d.video_model, w, h, f) for w, h, f in VIDEO_SIZES)
    iso_i *= profile.busy_factor(d.image_model)
    iso_v *= profile.busy_factor(d.video_model)
    service = video_share * iso_v + (1 - video_share) * iso_i
    rate = load * workers / service * 60.0  # per minute
    spec = WorkloadSpec(requests=requests, rate=rate, mix=f"{video_share}:{1 - video_share}", seed=seed,
                        image_sizes=IMAGE_SIZES, video_sizes=VIDEO_SIZES, sigma=sigma)
    return generate_trace(spec, profile)


def wait_for_quiet(max_load: float, timeout_s: float = 120.0, log=print) -> float:
    """Wait (at most timeout_s) until the 1-minute load average is at most max_load (0: do not wait); returns it."""
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    while max_load > 0 and load > max_load and time.monotonic() - t0 < timeout_s:
        time.sleep(2.0)
        load = os.getloadavg()[0]
    if max_load > 0 and load > max_load:
        log(f"  load average still {load:.2f} > {max_load} after {timeout_s:.0f} s: measuring anyway")
    return load


def probe(executor, profile, steps: int = 6) -> dict:
    """How fast the devices are now vs the profile: a video's SP-1 steps (first trace shape) on worker 0 alone, then
    on every worker at once; worker-measured median / profiled step. Reported (a drift check between live runs on a
    shared machine); only `--devices probe` scales the simulated devices by it (probe_scaled)."""
    import queue

    from genserve.bench.engine import _video
    from genserve.executors.base import StepSetup

    q: "queue.Queue" = queue.Queue()
    executor.attach(q.put)
    w, h, f = VIDEO_SIZES[0]
    ref = profile.video_step("tiny-wan", w, h, f, 1)
    out = {}
    for name, ranks in (("alone", (0,)), ("all_busy", tuple(range(executor.num_workers)))):
        vids = [_video(f"probe-{name}-{g}", w=w, h=h, frames=f, steps=steps, seed=g) for g in ranks]
        n0 = len(executor.step_durations)
        for k in range(steps):
            for g, v in zip(ranks, vids):
                executor.run_step(v, k, (g,), StepSetup.FRESH if k == 0 else StepSetup.CONTINUE, None)
            for _ in ranks:
                q.get(timeout=60)
        for g, v in zip(ranks, vids):
            executor.discard(v, (g,))
        xs = [d for _, _, setup, d in executor.step_durations[n0:] if setup == "continue"]
        out[name] = statistics.median(xs) / ref if xs else math.nan
    return out


class _Counting:
    """The live executor, with every step and batch command noted (as run_simulation's `commands` does)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.commands: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run_step(self, request, step, gpus, setup, source_gpu=None):
        self.commands.append(("step", (request.id,), tuple(gpus), setup.value, source_gpu))
        self.inner.run_step(request, step, gpus, setup, source_gpu)

    def start_batch(self, requests, gpu):
        self.commands.append(("batch", tuple(r.id for r in requests), (gpu,), "", None))
        self.inner.start_batch(requests, gpu)


def counts(records, commands) -> dict:
    """Pauses, resumes, moves (resume or SP change from a holder outside the new group), SP changes, batches."""
    steps = [c for c in commands if c[0] == "step"]
    batches = [c for c in commands if c[0] == "batch"]
    return {"pauses": sum(r.pauses for r in records), "resumes": sum(c[3] == "resume" for c in steps),
            "moves": sum(c[3] in ("resume", "reconfigure") and c[4] is not None and c[4] not in c[2] for c in steps),
            "sp_changes": sum(r.sp_changes for r in records), "image_batches": len(batches),
            "batched_images": sum(len(c[1]) for c in batches if len(c[1]) > 1)}


def outcomes(records) -> dict:
    return {r.id: (r.latency, bool(r.met_slo)) for r in records}


def run_live_once(executor, policy: str, trace, profile, sigma: float, timeout_s: float = 300.0):
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import make_policy
    from genserve.workers.driver import run_live
    from genserve.workloads.trace import to_requests

    ex = _Counting(executor)
    reqs = to_requests(trace, profile, sigma)
    res = run_live(make_policy(policy, PolicyOptions()), ex, reqs, profile, timeout_s=timeout_s, strict=False)
    recs = list(res.records.values())
    return outcomes(recs), counts(recs, ex.commands)


# the optional profile fields (schema.py), in the ablation ladder's order
ENGINE_COSTS = (("write_s",), ("prepare_s",), ("handover_s",), ("dispatch_s",), ("busy_factor", "busy_decode_factor"))


def without(profile, fields) -> "object":
    """A copy of `profile` without the optional fields named (every model, every point)."""
    from genserve.profiles import Profile

    d = profile.to_dict()
    fields = [f for group in fields for f in group]
    for section in ("image_models", "video_models"):
        for spec in d[section].values():
            for f in fields:
                spec.pop(f, None)
                for p in spec["points"]:
                    p.pop(f, None)
    return Profile.from_dict(d, f"without({','.join(fields)})")


def ladder(profile) -> list[tuple[str, object]]:
    """Simulated-executor profiles that add the measured engine costs one at a time (the controller keeps trusting
    its own profile, as live): what each cost contributes."""
    out = [("no engine costs", without(profile, ENGINE_COSTS))]
    for i, group in enumerate(ENGINE_COSTS):
        out.append((f"+ {'/'.join(group)}", without(profile, ENGINE_COSTS[i + 1:])))
    return out


def run_sim_once(cluster, policy: str, trace, profile, sigma: float, executor_profile=None):
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import make_policy
    from genserve.sim.run import run_simulation
    from genserve.workloads.trace import to_requests

    cmds: list = []
    res = run_simulation(to_requests(trace, profile, sigma), make_policy(policy, PolicyOptions()), cluster, profile,
                         coalesce_steps=False, commands=cmds, executor_profile=executor_profile)
    return outcomes(res.records), counts(res.records, cmds)


def cost_ratios(executor, profile, trace, n0: dict) -> dict:
    """Measured (worker) / profiled: video steps (continue), video decodes (with the file), image batches, and
    resumes/moves (the extra over a plain step at that shape, holder's queue included, vs the profile's cost)."""
    shape = {r.id: r for r in trace}
    step, extra, plain = [], [], {}
    rows = executor.step_durations[n0["steps"]:]
    for rid, deg, setup, d in rows:
        r = shape.get(rid)
        if r is not None and setup == "continue":
            plain.setdefault((r.width, r.height, r.frames, deg), []).append(d)
            step.append(d / profile.video_step(r.model, r.width, r.height, r.frames, deg))
    med = {k: statistics.median(v) for k, v in plain.items()}
    for rid, deg, setup, d in rows:
        r = shape.get(rid)
        key = None if r is None else (r.width, r.height, r.frames, deg)
        if setup in ("resume", "reconfigure") and key in med:
            prof = profile.handover_cost(r.model, deg)
            if prof is None:
                prof = (profile.resume_cost if setup == "resume" else profile.reconfigure_cost)(r.model, deg)
            extra.append((d - med[key], prof))
    dec, img = [], []
    for rids, d in executor.op_durations.get("decode", [])[n0["decode"]:]:
        r = shape.get(rids[0])
        if r is not None:
            dec.append(d / profile.video_decode(r.model, r.width, r.height, r.frames))
    for rids, d in executor.op_durations.get("batch", [])[n0["batch"]:]:
        r = shape.get(rids[0])
        if r is not None:
            img.append(d / profile.image_latency(r.model, r.width, r.height, len(rids), r.steps))

    def med_or_nan(xs):
        return statistics.median(xs) if xs else math.nan

    return {"video_step": med_or_nan(step), "video_decode": med_or_nan(dec), "image_batch": med_or_nan(img),
            "resume_extra_ms": med_or_nan([e * 1e3 for e, _ in extra]),
            "resume_profiled_ms": med_or_nan([p * 1e3 for _, p in extra]), "resumes_timed": len(extra)}


def probe_scaled(profile, probes: list[dict]):
    """`profile` with every time scaled by the mean probe ratio (a step alone / profiled) and the busy factors set to
    the probes' all-busy / alone ratio: the devices as measured seconds before each live run (a device measurement,
    like the profile; nothing read from the trace's runs)."""
    from genserve.profiles import Profile

    alone = statistics.mean(p["alone"] for p in probes)
    busy = max(1.0, statistics.mean(p["all_busy"] for p in probes) / alone)
    d = profile.scaled(alone, alone, "probe-scaled").to_dict()
    for section in ("image_models", "video_models"):
        for spec in d[section].values():
            spec["busy_factor"] = round(busy, 3)
    return Profile.from_dict(d, "probe-scaled")


def mean_profile(a, b, name: str = "bracketed"):
    """Element-wise mean of two measurements of the same profile (every time and factor; structure from `a`)."""
    from genserve.profiles import Profile

    def avg(x, y, key=""):
        if isinstance(x, dict):
            return {k: avg(v, y.get(k, v) if isinstance(y, dict) else v, str(k)) for k, v in x.items()}
        if isinstance(x, list):
            return [avg(u, v, key) for u, v in zip(x, y)] if isinstance(y, list) and len(y) == len(x) else x
        timed = key.endswith("_s") or key.endswith("factor") or key.isdigit()
        if timed and isinstance(x, float) and isinstance(y, (int, float)):
            return (x + y) / 2
        return x

    d = a.to_dict()
    d["image_models"] = avg(d["image_models"], b.to_dict()["image_models"])
    d["video_models"] = avg(d["video_models"], b.to_dict()["video_models"])
    d["name"] = name
    return Profile.from_dict(d, name)


def fidelity(executor, profile, *, policy: str, sigma: float, requests: int, seed: int, live_runs: int,
             log=print, device_profile=None, ablation: bool = False, max_load: float = 0.0,
             devices: str = "bracket") -> dict:
    """One cell: the trace live `live_runs` times and simulated once; the report (summary, counts, per request).

    `profile` is what the controller trusts, live and simulated (deadlines, the policy's estimates). The simulated
    devices follow `device_profile()` when given (called after the live runs: e.g. the mean of the profile measured
    before and one measured after them), else `profile`. `ablation`: also simulate with the engine costs of the
    device profile added one at a time."""
    from genserve.sim.compare import compare, goals

    workers = executor.num_workers
    trace = draw_trace(profile, requests=requests, seed=seed, sigma=sigma, workers=workers)
    n0 = {"steps": len(executor.step_durations), "decode": len(executor.op_durations.get("decode", [])),
          "batch": len(executor.op_durations.get("batch", []))}
    live, live_counts = [], []
    probes = []
    for i in range(live_runs):
        wait_for_quiet(max_load, log=log)
        probes.append(probe(executor, profile))
        n1 = {"steps": len(executor.step_durations), "decode": len(executor.op_durations.get("decode", [])),
              "batch": len(executor.op_durations.get("batch", []))}
        n0 = n0 if i else n1  # the probes' steps are not the trace's
        out, c = run_live_once(executor, policy, trace, profile, sigma)
        live.append(out)
        live_counts.append(c)
        log(f"  live run {i + 1}/{live_runs}: SAR {sum(m for _, m in out.values()) / len(out):.3f}, {c}; "
            f"device speed before it, step / profiled: alone {probes[-1]['alone']:.2f}, all busy "
            f"{probes[-1]['all_busy']:.2f}; load {os.getloadavg()[0]:.2f}")
    bracketed = device_profile() if device_profile is not None else None
    scaled = probe_scaled(profile, probes)
    dev = {"bracket": bracketed, "probe": scaled, "profile": None}[devices]
    sim, sim_counts = run_sim_once(executor.cluster, policy, trace, profile, sigma, dev)
    summary = compare(live, sim)
    steps_ablation = {}
    for name, exec_prof in (ladder(dev or profile) if ablation else []):
        alt = compare(live, run_sim_once(executor.cluster, policy, trace, profile, sigma, exec_prof)[0])
        steps_ablation[name] = {k: alt[k] for k in ("median_rel_error", "p90_rel_error", "sar_sim",
                                                    "outcome_agreement")}
    for name, alt_dev in (("devices: profile before the runs", None), ("devices: bracketed profiles", bracketed),
                          ("devices: profile x probes", scaled)):
        if alt_dev is dev or (name.endswith("bracketed profiles") and bracketed is None):
            continue
        alt = compare(live, run_sim_once(executor.cluster, policy, trace, profile, sigma, alt_dev)[0])
        steps_ablation[name] = {k: alt[k] for k in ("median_rel_error", "p90_rel_error", "sar_sim",
                                                    "outcome_agreement")}
    per = summary.pop("per_request")
    rows = []
    for rec in trace:
        rid = rec.id
        rows.append({"id": rid, "modality": rec.modality, "shape": f"{rec.width}x{rec.height}" +
                     (f"x{rec.frames}" if rec.modality == "video" else ""),
                     "live_s": [run[rid][0] for run in live], "live_met": [run[rid][1] for run in live],
                     "sim_s": sim[rid][0], "sim_met": sim[rid][1], "rel_error": per[rid]["rel_error"]})
    mean_counts = {k: statistics.mean(c[k] for c in live_counts) for k in live_counts[0]}
    return {"policy": policy, "sigma": sigma, "devices": devices, "requests": requests, "seed": seed,
            "live_runs": live_runs,
            "workers": workers, "load_avg": os.getloadavg(), **summary, "goals": goals(summary, policy=policy),
            "counts_live": mean_counts, "counts_live_runs": live_counts, "counts_sim": sim_counts,
            "measured_over_profiled": cost_ratios(executor, profile, [r for r in _requests(trace, profile)], n0),
            "ablation": steps_ablation, "probes": probes,
            "per_request": rows}


def _requests(trace, profile):
    from genserve.workloads.trace import to_requests

    return to_requests(trace, profile, 1.0)


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def print_report(rep: dict, echo=print, per_request: bool = True) -> None:
    if per_request:
        echo(f"{'id':>5} {'kind':5} {'shape':9} {'live latencies (s)':28} {'sim (s)':>7}  met live / sim  rel err")
        for r in rep["per_request"]:
            lv = " ".join(_fmt(x) for x in r["live_s"])
            met = "".join("Y" if m else "n" for m in r["live_met"])
            echo(f"{r['id']:>5} {r['modality']:5} {r['shape']:9} {lv:28} {_fmt(r['sim_s']):>7}  {met:>8} / "
                 f"{'Y' if r['sim_met'] else 'n'}  {_fmt(r['rel_error'])}")
    echo(f"{rep['policy']} sigma {rep['sigma']}: {rep['requests']} requests, {rep['workers']} workers, "
         f"{rep['live_runs']} live runs, load average {' '.join(f'{x:.2f}' for x in rep['load_avg'])}")
    echo(f"  sim vs live : median rel error {_fmt(rep['median_rel_error'])}, p90 {_fmt(rep['p90_rel_error'])}, "
         f"outcome agreement {_fmt(rep['outcome_agreement'])}, rank correlation {_fmt(rep['rank_correlation'])}, "
         f"sim / live median {_fmt(rep['sim_over_live_median'])}")
    echo(f"  live vs live: median rel error {_fmt(rep['live_median_rel_error'])}, p90 "
         f"{_fmt(rep['live_p90_rel_error'])}, outcome agreement {_fmt(rep['live_outcome_agreement'])}")
    echo(f"  SAR live {_fmt(rep['sar_live'])} (runs {', '.join(_fmt(x) for x in rep['sar_live_runs'])}), "
         f"sim {_fmt(rep['sar_sim'])}")
    echo(f"  counts live (mean) {rep['counts_live']}")
    echo(f"  counts sim         {rep['counts_sim']}")
    echo(f"  measured / profiled: {rep['measured_over_profiled']}")
    echo(f"  goals: {rep['goals']}")
    for name, a in rep.get("ablation", {}).items():
        echo(f"  sim executor with {name:32}: median {_fmt(a['median_rel_error'])}, p90 {_fmt(a['p90_rel_error'])}, "
             f"SAR {_fmt(a['sar_sim'])}, agreement {_fmt(a['outcome_agreement'])}")


def cmd(
    workers: int = typer.Option(2, help="Worker processes (CPU slots, 1 thread each)."),
    requests: int = typer.Option(36, help="Requests in the trace."),
    seed: int = typer.Option(0, help="Trace seed."),
    policy: str = typer.Option("genserve,fcfs", help="Policies, comma-separated."),
    sigma: str = typer.Option("1,2", help="SLO scales, comma-separated."),
    profile: Optional[str] = typer.Option(None, help="Profile (name or JSON) instead of measuring one now."),
    live_runs: int = typer.Option(3, help="Live runs of the trace per cell."),
    engine_costs: bool = typer.Option(True, "--engine-costs/--no-engine-costs",
                                      help="Measure the engine costs (prepare, file writes, handovers, dispatch)."),
    save_profile: Optional[Path] = typer.Option(None, help="Write the measured profile here."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure as JSON here."),
    quiet: bool = typer.Option(False, help="Summaries only (no per-request table)."),
    ablation: bool = typer.Option(False, help="Also simulate with the measured engine costs added one at a time "
                                              "(what each contributes)."),
    bracket: bool = typer.Option(True, "--bracket/--no-bracket", help="Measure the profile again after each "
                                 "cell's live runs; the simulated devices follow the mean of the profiles measured "
                                 "before and after them (a shared machine's speed drifts; the controller keeps the "
                                 "first)."),
    devices: str = typer.Option("bracket", help="What the simulated devices follow: bracket (profiles measured "
                                "before and after the live runs), probe (the profile scaled by the probes before each "
                                "live run), profile (the profile measured before, as it is)."),
    max_load: float = typer.Option(0.0, help="Before each profile and live run wait (up to 2 min) until the 1-minute "
                                             "load average is at most this (0: never wait)."),
    baseline: bool = typer.Option(False, help="The issue's baseline profile instead: tiny-cpu scaled by isolated "
                                              "runs on the workers (as the live tests calibrate)."),
    all_busy: bool = typer.Option(False, "--all-busy/--idle", help="Profile one-device operations with every "
                                                                    "device busy, or one at a time (default)."),
) -> None:
    """Simulator vs live engine on the same trace: per-request latency error, SAR, outcome agreement."""
    from genserve.core.errors import GenServeError
    from genserve.executors.local import LocalExecutor
    from genserve.profiles import Profile
    from genserve.profiles.profiler import sp_degrees

    try:
        policies = [p.strip() for p in policy.split(",") if p.strip()]
        sigmas = [float(s) for s in sigma.split(",") if s.strip()]
        from genserve.scheduling.registry import available_policies

        unknown = [p for p in policies if p not in available_policies()]
        if unknown:
            raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(available_policies())}")
        if devices not in ("bracket", "probe", "profile"):
            raise ValueError(f"--devices must be bracket, probe or profile, not {devices!r}")
        if workers < 1 or requests < 1 or live_runs < 1 or not policies or not sigmas:
            raise ValueError("workers, requests and live runs must be positive; name a policy and a sigma")
        prof = Profile.load(profile) if profile else None
    except (GenServeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    t0 = time.perf_counter()
    if prof is None and not baseline:
        typer.echo(f"measuring the profile on {workers} CPU slots at {sizes_arg()} ...")
    out_dir = tempfile.mkdtemp(prefix="genserve-fidelity-")  # the PNG/MP4 files: written (a measured cost), not kept
    ex = LocalExecutor(workers, sp_degrees=tuple(sp_degrees(workers)), output_dir=out_dir)
    ex.start()
    report: dict = {"cells": []}
    try:
        if prof is None and baseline:
            prof = calibrated_profile(ex)
        if prof is None:
            wait_for_quiet(max_load, log=typer.echo)
            prof = measure_profile(workers, executor=ex, engine_costs=engine_costs, all_busy=all_busy,
                                   log=typer.echo)
        measured = [prof]  # with --bracket: one more after every cell's live runs
        bracket = bracket and not baseline and profile is None  # only a profile measured here is measured again
        if save_profile:
            save_profile.write_text(json.dumps(prof.to_dict(), indent=1) + "\n")
        report["profile"] = prof.to_dict()
        for pol in policies:
            for sg in sigmas:
                typer.echo(f"{pol}, sigma {sg}:")

                def after_live():
                    wait_for_quiet(max_load, log=typer.echo)
                    measured.append(measure_profile(workers, executor=ex, engine_costs=engine_costs,
                                                    all_busy=all_busy, log=typer.echo))
                    return mean_profile(measured[-2], measured[-1])

                rep = fidelity(ex, prof, policy=pol, sigma=sg, requests=requests, seed=seed, live_runs=live_runs,
                               log=typer.echo, device_profile=after_live if bracket else None, ablation=ablation,
                               max_load=max_load, devices=devices if bracket or devices != "bracket" else "profile")
                print_report(rep, typer.echo, per_request=not quiet)
                report["cells"].append(rep)
        report["profiles_measured"] = [p.to_dict() for p in measured]
    finally:
        ex.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    typer.echo(f"done in {report['wall_s']} s")
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1, default=str))
        typer.echo(f"wrote {json_out}")
