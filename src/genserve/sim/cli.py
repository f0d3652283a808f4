"""`genserve simulate`: run policies on a synthetic or recorded trace and compare them (rich table or JSON).

Heavy imports happen inside the command so `genserve --help` stays fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def average_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric leaf across summaries (None where no run had a value); other leaves from the first."""
    first = summaries[0]
    out: dict[str, Any] = {}
    for key, val in first.items():
        vals = [s.get(key) for s in summaries]
        if isinstance(val, dict):
            out[key] = average_summaries([v for v in vals if isinstance(v, dict)])
        elif isinstance(val, bool) or not isinstance(val, (int, float)) and val is not None:
            out[key] = val
        else:
            nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            out[key] = sum(nums) / len(nums) if nums else None
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _sec(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def simulate(
    policy: str = typer.Option("all", "--policy", "-p",
                               help="fcfs | sjf | srtf | rasp | dedicated | genserve | all (side by side), "
                                    "or a comma-separated list."),
    gpus: int = typer.Option(8, help="Number of GPUs."),
    gpus_per_node: int = typer.Option(8, help="GPUs per node (SP groups stay inside a node)."),
    rate: float = typer.Option(24.0, help="Mean arrival rate, requests per minute."),
    mix: str = typer.Option("balanced", help="light | balanced | heavy | V:I (video:image, e.g. 70:30)."),
    sigma: float = typer.Option(1.0, help="SLO scale: deadline = sigma x 1.5 x isolated latency."),
    resolutions: str = typer.Option("uniform", help="uniform | skewed (Dirichlet weights per trace)."),
    alpha: float = typer.Option(1.0, help="Dirichlet alpha for skewed resolutions."),
    arrival: str = typer.Option("poisson", help="poisson | bursty (Gamma inter-arrivals)."),
    cv: float = typer.Option(3.0, help="Coefficient of variation of bursty inter-arrivals."),
    requests: int = typer.Option(100, help="Number of requests in the synthetic trace."),
    seed: int = typer.Option(0, help="Random seed of the synthetic trace."),
    seeds: int = typer.Option(1, help="Average over this many traces (seeds seed, seed+1, ...)."),
    profile: str = typer.Option("paper", help="Latency profile: bundled name (paper, tiny-cpu) or JSON path."),
    trace: Optional[Path] = typer.Option(None, help="Replay this JSONL trace instead of drawing one."),
    records: Optional[Path] = typer.Option(None, help="Write one JSON line per request (and policy, seed) here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    batching: Optional[bool] = typer.Option(None, "--batching/--no-batching",
                                            help="Batch same-resolution images (default: on for genserve, "
                                                 "off for baselines)."),
    preemption: bool = typer.Option(True, "--preemption/--no-preemption", help="genserve: allow pausing videos."),
    dp: bool = typer.Option(True, "--dp/--no-dp", help="genserve: use the DP solver."),
    elastic_sp: bool = typer.Option(True, "--elastic-sp/--no-elastic-sp", help="genserve: change SP degrees."),
    tail_guard: bool = typer.Option(True, "--tail-guard/--no-tail-guard",
                                    help="genserve: bound repeated preemption of one video."),
    image_gpus: Optional[int] = typer.Option(None, help="dedicated: GPUs reserved for images (default N/4)."),
    max_paused_per_gpu: int = typer.Option(1, help="Paused videos whose state may live on one GPU."),
    strict: bool = typer.Option(False, "--strict", help="Check every plan against the rules (slower)."),
    two_level: bool = typer.Option(True, "--two-level/--flat",
                                   help="genserve on several nodes: dispatch waiting work to nodes and plan nodes "
                                        "(default), or plan the whole cluster while anything waits."),
) -> None:
    """Simulate the cluster on a virtual clock with the real controller and policies; compare SLO attainment."""
    from genserve.core.errors import GenServeError
    from genserve.core.snapshot import ClusterSpec
    from genserve.profiles import Profile
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import POLICIES, make_policy, policy_class
    from genserve.sim.metrics import write_records
    from genserve.sim.run import run_simulation
    from genserve.workloads import WorkloadSpec, generate_trace, read_trace, to_requests

    # ---- check options ---------------------------------------------------------------------------------------
    for name, val in (("rate", rate), ("sigma", sigma), ("cv", cv), ("alpha", alpha)):
        if not math.isfinite(val) or val <= 0:
            _fail(f"--{name} must be a positive number, got {val}")
    if requests <= 0:
        _fail(f"--requests must be positive, got {requests}")
    if seeds <= 0:
        _fail(f"--seeds must be positive, got {seeds}")
    if max_paused_per_gpu < 0:
        _fail(f"--max-paused-per-gpu must be >= 0, got {max_paused_per_gpu}")
    if image_gpus is not None and not 1 <= image_gpus <= gpus - 1:
        _fail(f"--image-gpus must be within 1..{gpus - 1} for {gpus} GPUs, got {image_gpus}")
    if trace is not None and seeds > 1:
        _fail("--seeds applies to synthetic traces, not to --trace")
    try:
        cluster = ClusterSpec(gpus, gpus_per_node)
    except ValueError as e:
        _fail(str(e))
    key = policy.strip().lower()
    names = list(POLICIES) if key == "all" else [p.strip().lower() for p in key.split(",") if p.strip()]
    if not names:
        _fail("--policy is empty")
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            policy_class(name)
        except GenServeError as e:
            if key != "all":
                _fail(str(e))
            unavailable[name] = str(e)
    names = [n for n in names if n not in unavailable]
    options = PolicyOptions(batching=batching, preemption=preemption, dp=dp, elastic_sp=elastic_sp,
                            tail_guard=tail_guard, max_paused_per_gpu=max_paused_per_gpu, image_gpus=image_gpus)

    # ---- traces --------------------------------------------------------------------------------------------
    try:
        prof = Profile.load(profile)
        from genserve.workloads.fitted import describe, load_settings

        # a fitted profile's own trace settings (paper-fit): used where the option is left at its default
        fitted = load_settings(profile)
        basis = fitted.get("deadline_basis", "sp1")
        given = {"arrival": (arrival, "poisson"), "cv": (cv, 3.0), "alpha": (alpha, 1.0)}
        extra = {k: v for k, v in fitted.get("workload", {}).items() if k not in given or given[k][0] == given[k][1]}
        if fitted and not as_json:
            typer.echo(f"profile {profile}: fitted load settings: {describe(fitted)}")
        traces = []
        if trace is not None:
            traces.append((None, to_requests(read_trace(trace), prof, sigma, basis)))
        else:
            for k in range(seeds):
                spec = WorkloadSpec(**dict(dict(requests=requests, rate=rate, mix=mix, arrival=arrival, cv=cv,
                                                resolutions=resolutions, alpha=alpha, seed=seed + k), **extra))
                traces.append((seed + k, to_requests(generate_trace(spec, prof), prof, sigma, basis)))
    except (GenServeError, ValueError, OSError) as e:
        _fail(str(e))
    if not traces[0][1]:
        _fail("the trace is empty")

    # ---- run -----------------------------------------------------------------------------------------------
    results: list[dict[str, Any]] = []
    if records is not None:
        try:
            records.write_text("")
        except OSError as e:
            _fail(f"cannot write records to {records}: {e.strerror}")
    for name in names:
        per_seed = []
        for s, reqs in traces:
            try:
                res = run_simulation(reqs, make_policy(name, options), cluster, prof, strict=strict,
                                     dispatch=None if two_level else False)
            except (GenServeError, ValueError) as e:
                _fail(f"{name}: {e}")
            per_seed.append(res.summary())
            if records is not None:
                extra = {"policy": res.policy} if s is None else {"policy": res.policy, "seed": s}
                write_records(res.records, records, extra, append=True)
        summ = per_seed[0] if len(per_seed) == 1 else average_summaries(per_seed)
        summ["policy"] = name
        results.append(summ)

    reqs0 = traces[0][1]
    setting = {
        "profile": prof.name, "gpus": gpus, "gpus_per_node": gpus_per_node, "sigma": sigma,
        "trace": str(trace) if trace is not None else None,
        "requests": len(reqs0),
        "rate": None if trace is not None else rate, "mix": None if trace is not None else mix,
        "arrival": None if trace is not None else arrival, "resolutions": None if trace is not None else resolutions,
        "seed": None if trace is not None else seed, "seeds": len(traces),
    }
    if as_json:
        if len(results) == 1 and key != "all":
            out = dict(results[0])
            out["setting"] = setting
        else:
            out = {"policy": "all" if key == "all" else ",".join(names), "requests": len(reqs0),
                   "setting": setting, "results": results, "unavailable": unavailable}
        typer.echo(json.dumps(out, indent=None, separators=(",", ":")))
        return
    _print_tables(results, setting, unavailable, reqs0)


def _print_tables(results: list[dict[str, Any]], setting: dict[str, Any], unavailable: dict[str, str],
                  reqs0) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 100))
    videos = sum(r.is_video for r in reqs0)
    if setting["trace"]:
        what = f"trace {setting['trace']}"
    else:
        what = (f"{setting['mix']} mix, {setting['arrival']} {setting['rate']:g} req/min, {setting['resolutions']} "
                f"resolutions, seed {setting['seed']}" + (f" (+{setting['seeds'] - 1} more, averaged)"
                                                          if setting["seeds"] > 1 else ""))
    title = (f"{setting['requests']} requests ({len(reqs0) - videos} images, {videos} videos) on {setting['gpus']} "
             f"GPUs, profile {setting['profile']}, sigma {setting['sigma']:g}\n{what}")
    table = Table(title=title, title_justify="left")
    cols = ["policy", "SLO\nmet", "SLO\nimage", "SLO\nvideo", "image\np90 s", "image\nwait p99", "video\np50 s",
            "video\np99 s", "pre-\nempt", "SP\nchg", "GPU\nutil", "not\ndone"]
    for c in cols:
        table.add_column(c, justify="left" if c == "policy" else "right", no_wrap=True)
    best = max((r["sar"]["overall"] or 0.0) for r in results) if results else 0.0
    for r in results:
        sar = r["sar"]
        name = f"[bold]{r['policy']}[/bold]" if (sar["overall"] or 0.0) == best else r["policy"]
        table.add_row(name, _pct(sar["overall"]), _pct(sar["image"]), _pct(sar["video"]),
                      _sec(r["latency"]["image"]["p90"]), _sec(r["queue_wait"]["image"]["p99"]),
                      _sec(r["latency"]["video"]["p50"]), _sec(r["latency"]["video"]["p99"]),
                      f"{r['preemptions']:.0f}", f"{r['sp_changes']:.0f}", f"{100 * r['gpu_utilisation']:.0f}%",
                      f"{r['unfinished']:.0f}")
    console.print(table)
    if len(results) == 1:
        r = results[0]
        detail = Table(title=f"{r['policy']}: latency and queue wait by modality (s)", title_justify="left")
        for c in ("modality", "requests", "SLO met", "lat p50", "lat p90", "lat p99", "wait p50", "wait p90",
                  "wait p99"):
            detail.add_column(c, justify="left" if c == "modality" else "right")
        for m in ("image", "video"):
            lat, wait = r["latency"][m], r["queue_wait"][m]
            detail.add_row(m, f"{r[m + 's']:.0f}", _pct(r["sar"][m]), _sec(lat["p50"]), _sec(lat["p90"]),
                           _sec(lat["p99"]), _sec(wait["p50"]), _sec(wait["p90"]), _sec(wait["p99"]))
        console.print(detail)
    for name, why in unavailable.items():
        console.print(f"[dim]{name}: skipped ({why})[/dim]")
    console.print("[dim]SLO met = finished by deadline (sigma x 1.5 x isolated latency); percentiles over finished "
                  "requests; --json for everything, --records FILE for per-request lines.[/dim]")
