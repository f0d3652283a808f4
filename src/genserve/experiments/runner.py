"""Run experiment grids: one job per (setting, seed, variant) simulation and one per (setting, seed) bound.

Jobs are plain dicts (picklable), deduplicated across experiments (E1 at sigma 1, E2 balanced, E3 at 24 req/min,
E4 and the uniform resolution column are the same runs), and run in a process pool with a rich progress bar.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

from genserve.experiments.grid import Experiment


class TimedPolicy:
    """Wraps a policy and times every `plan` call (the decision time); other attributes pass through."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.calls = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def plan(self, snapshot):
        t = time.perf_counter()
        p = self._inner.plan(snapshot)
        dt = time.perf_counter() - t
        self.calls += 1
        self.total_s += dt
        if dt > self.max_s:
            self.max_s = dt
        return p


def job_key(job: dict) -> str:
    return json.dumps(job, sort_keys=True, default=str)


def _requests(job: dict):
    from genserve.profiles import Profile
    from genserve.workloads import WorkloadSpec, generate_trace, to_requests

    prof = Profile.load(job["profile"])
    spec = WorkloadSpec(**job["workload"])
    return prof, to_requests(generate_trace(spec, prof), prof, job["sigma"], job.get("deadline_basis", "sp1"))


def run_job(job: dict) -> dict[str, Any]:
    """Execute one job in a worker process; returns a flat result dict."""
    from genserve.core.snapshot import ClusterSpec

    t0 = time.perf_counter()
    prof, reqs = _requests(job)
    cluster = ClusterSpec(job["gpus"])
    if job["kind"] == "bound":
        from genserve.experiments.bound import upper_bound

        b = upper_bound(reqs, prof, cluster, method="lp", max_intervals=job.get("intervals", 600),
                        time_limit=job.get("time_limit", 120.0))
        return {"count": b.count, "total": b.total, "fraction": b.fraction,
                "image": b.per_modality["image"]["count"], "images": b.per_modality["image"]["total"],
                "video": b.per_modality["video"]["count"], "videos": b.per_modality["video"]["total"],
                "solve_s": b.solve_time, "method": b.method, "intervals": b.intervals, "value": b.value}
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import make_policy
    from genserve.sim.run import run_simulation

    opts = PolicyOptions(**dict(job["options"]))
    pol = TimedPolicy(make_policy(job["policy"], opts))
    res = run_simulation(reqs, pol, cluster, prof, wall_budget_s=job.get("budget_s"))
    s = res.summary()
    out: dict[str, Any] = {
        "requests": s["requests"], "images": s["images"], "videos": s["videos"],
        "sar": s["sar"]["overall"], "sar_image": s["sar"]["image"], "sar_video": s["sar"]["video"],
        "met": sum(r.met_slo for r in res.records),
        "met_image": sum(r.met_slo for r in res.records if r.modality == "image"),
        "met_video": sum(r.met_slo for r in res.records if r.modality == "video"),
        "unfinished": s["unfinished"], "stopped": bool(res.info.get("stopped")),
        "preemptions": s["preemptions"], "sp_changes": s["sp_changes"], "rounds": s["rounds"],
        "utilisation": s["gpu_utilisation"], "sim_wall_s": s["wall_s"],
        "decision_mean_ms": 1e3 * pol.total_s / pol.calls if pol.calls else 0.0,
        "decision_max_ms": 1e3 * pol.max_s, "decisions": pol.calls,
        "image_wait_mean_s": s["queue_wait"]["image"]["mean"],
    }
    for m in ("image", "video", "overall"):
        for q in ("p50", "p90", "p99", "mean"):
            out[f"lat_{m}_{q}"] = s["latency"][m][q]
    if job.get("keep_latencies"):
        out["latencies"] = {m: sorted(r.latency for r in res.records if r.modality == m and r.done)
                            for m in ("image", "video")}
    out["job_wall_s"] = time.perf_counter() - t0
    return out


def plan_jobs(experiments: list[Experiment], seeds: int | dict[str, int],
              profile: str = "paper", deadline_basis: str = "sp1") -> tuple[dict[str, dict], list]:
    """All distinct jobs, and for each experiment the (setting, seed, variant-or-None, key) it needs.

    seeds: per experiment name, or one count for all. deadline_basis: see workloads.trace.isolated_latency (the
    default "sp1" adds nothing to the jobs, so their keys are unchanged)."""
    jobs: dict[str, dict] = {}
    index = []
    for exp in experiments:
        n_seeds = seeds if isinstance(seeds, int) else seeds[exp.name]
        for st in exp.settings:
            for seed in range(n_seeds):
                wl = _normalise(dict(st.workload, seed=seed))
                common = {"workload": wl, "sigma": st.sigma, "gpus": st.gpus, "profile": profile}
                if deadline_basis != "sp1":
                    common["deadline_basis"] = deadline_basis
                bjob = dict(common, kind="bound", intervals=st.bound_intervals)
                bk = job_key(bjob)
                jobs[bk] = bjob
                index.append((exp.name, st.label, seed, None, bk))
                for v in exp.variants:
                    sj = dict(common, kind="sim", policy=v.policy, options=list(v.options), budget_s=st.budget_s)
                    sk = job_key(sj)  # latencies kept or not, it is the same run
                    if sk not in jobs:
                        jobs[sk] = dict(sj, keep_latencies=exp.keep_latencies)
                    elif exp.keep_latencies:
                        jobs[sk]["keep_latencies"] = True
                    index.append((exp.name, st.label, seed, v.label, sk))
    return jobs, index


def _normalise(workload: dict) -> dict:
    """Every WorkloadSpec field, numbers as floats: equal traces get equal keys."""
    from dataclasses import asdict

    from genserve.workloads import WorkloadSpec

    d = asdict(WorkloadSpec(**workload))
    for k in ("rate", "cv", "alpha"):
        d[k] = float(d[k])
    for k in ("skew_seed", "image_weights", "video_weights"):  # optional (fitted loads): keys unchanged when unset
        if d.get(k) is None:
            d.pop(k, None)
        elif k != "skew_seed":
            d[k] = [float(x) for x in d[k]]
    return d


def _cost(job: dict) -> float:
    """Rough relative cost, so the slow jobs start first."""
    n = job["workload"]["requests"] * max(1.0, job["gpus"] / 8)
    if job["kind"] == "bound":
        return 2.0 * n
    return n * (20.0 if job["policy"] == "genserve" else 0.5)


def run_jobs(jobs: dict[str, dict], workers: int = 2, progress: bool = True,
             on_done: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Run every job (in `workers` processes; 1: in this process) and return key -> result."""
    order = sorted(jobs, key=lambda k: -_cost(jobs[k]))
    results: dict[str, dict] = {}
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]experiments"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.description}"), transient=False)
        bar.start()
        task = bar.add_task("", total=len(order))

    def done(k: str, r: dict) -> None:
        results[k] = r
        if bar is not None:
            j = jobs[k]
            what = "bound" if j["kind"] == "bound" else j["policy"]
            bar.update(task, advance=1, description=f"{what} ({r.get('job_wall_s', r.get('solve_s', 0)):.1f}s)")
        if on_done:
            on_done(k, r)

    try:
        if workers <= 1:
            for k in order:
                done(k, run_job(jobs[k]))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futs = {pool.submit(run_job, jobs[k]): k for k in order}
                for f in as_completed(futs):
                    done(futs[f], f.result())
    finally:
        if bar is not None:
            bar.stop()
    return results


def default_workers() -> int:
    return 2 if (os.cpu_count() or 2) >= 2 else 1
