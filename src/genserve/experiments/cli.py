"""`genserve experiment NAME`: reproduce the paper's evaluation (and the LP bound beside every number).

NAME: e1 (sigma sweep), e2 (mix), e3 (arrival rate), e4 (latency CDFs), ablation, resolution, deployment, scale
(64 and 256 GPUs, load scaled with N), or all. Writes, under --out/NAME/: runs.csv, summary.csv, results.json,
table.md and PNG plots; `all` also writes --out/report.md with every table.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Optional

import typer


def experiment(
    name: str = typer.Argument(..., help="e1 | e2 | e3 | e4 | ablation | resolution | deployment | scale | all "
                                         "(or a comma-separated list)."),
    seeds: int = typer.Option(5, help="Traces per setting (seeds 0..K-1)."),
    gpus: int = typer.Option(8, help="GPUs (8 per node); arrival rates scale with GPUs/8."),
    out: Path = typer.Option(Path("out/experiments"), help="Output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the aggregates) at the end."),
    requests: int = typer.Option(100, help="Requests per trace (the paper: 100)."),
    workers: int = typer.Option(2, help="Worker processes (1: run in this process)."),
    scale: Optional[str] = typer.Option(None, "--scale", help="Cluster sizes for `scale`, comma-separated "
                                                              "(default 64,256)."),
    scale_requests: int = typer.Option(400, help="Requests per `scale` trace, at every cluster size (rates scale "
                                                 "with N, so bigger clusters see a shorter, denser trace)."),
    scale_seeds: Optional[int] = typer.Option(None, help="Seeds for `scale` (default 1: genserve decides over "
                                                         "hundreds of GPUs at every step boundary)."),
    profile: str = typer.Option("paper", help="Latency profile (bundled name or JSON path)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    reuse: bool = typer.Option(False, "--reuse/--no-reuse", help="Reuse results cached under --out/.cache by an "
                                                                 "earlier run (same job, same code assumed)."),
) -> None:
    """Run the paper's experiments on the simulator, with the LP upper bound, and write tables and plots."""
    from rich.console import Console

    from genserve.experiments import report
    from genserve.experiments.grid import ALL, EXPERIMENTS, build
    from genserve.experiments.runner import plan_jobs, run_jobs

    con = Console(stderr=as_json)

    def fail(msg: str) -> None:
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2)

    if seeds <= 0 or gpus <= 0 or requests <= 0 or workers <= 0 or scale_requests <= 0:
        fail("--seeds, --gpus, --requests, --scale-requests and --workers must be positive")
    if scale_seeds is not None and scale_seeds <= 0:
        fail("--scale-seeds must be positive")
    key = name.strip().lower()
    names = list(ALL) if key == "all" else [n.strip() for n in key.split(",") if n.strip()]
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad or not names:
        fail(f"unknown experiment {', '.join(bad) or name!r}; choose one of {', '.join(EXPERIMENTS)} or all")
    try:
        scale_gpus = tuple(int(x) for x in scale.split(",")) if scale else (64, 256)
    except ValueError:
        fail(f"--scale must be comma-separated GPU counts, got {scale!r}")
    if any(g <= 0 or g % 8 and g > 8 for g in scale_gpus):
        fail("--scale sizes must be positive multiples of 8")
    exps = [build(n, requests=requests, gpus=gpus, scale_gpus=scale_gpus, scale_requests=scale_requests)
            for n in names]
    from genserve.workloads.fitted import describe, load_settings

    try:
        fitted = load_settings(profile)  # a fitted profile's own trace settings and deadline basis (paper-fit)
    except ValueError as e:
        fail(str(e))
    for e in exps:
        for st in e.settings:
            st.workload.update(fitted.get("workload", {}))
    # `scale` is costly (genserve decides over hundreds of GPUs): one seed unless asked
    seed_of = {e.name: (scale_seeds or 1) if e.name == "scale" else seeds for e in exps}
    jobs, index = plan_jobs(exps, seed_of, profile, deadline_basis=fitted.get("deadline_basis", "sp1"))
    t0 = time.perf_counter()
    con.print(f"[bold]{len(jobs)}[/bold] distinct runs ({sum(j['kind'] == 'bound' for j in jobs.values())} bounds) "
              f"for {', '.join(names)}; {workers} worker(s); out: {out}")
    if fitted:
        con.print(f"profile {profile}: fitted load settings applied to every setting: {describe(fitted)}")
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if reuse:
        for k in list(jobs):
            f = cache / f"{hashlib.sha1(k.encode()).hexdigest()}.json"
            if f.is_file():
                r = json.loads(f.read_text())
                if r.get("_key") == k and (not jobs[k].get("keep_latencies") or "latencies" in r
                                           or jobs[k]["kind"] == "bound"):
                    results[k] = r
        if results:
            con.print(f"reusing {len(results)} cached result(s)")

    def keep(k: str, r: dict) -> None:
        f = cache / f"{hashlib.sha1(k.encode()).hexdigest()}.json"
        f.write_text(json.dumps(dict(r, _key=k)))

    todo = {k: j for k, j in jobs.items() if k not in results}
    results.update(run_jobs(todo, workers=workers, progress=progress and not as_json, on_done=keep))
    wall = time.perf_counter() - t0
    md = [f"# genserve experiments\n\nCommand: `genserve experiment {name} --seeds {seeds} --gpus {gpus} "
          f"--requests {requests} --workers {workers}`; profile `{profile}`; wall time {wall:.0f} s.\n"
          + (f"\nFitted load settings of `{profile}` (applied to every setting): {describe(fitted)}.\n"
             if fitted else "")]
    agg = {}
    for e in exps:
        data = report.collect(e, index, results)
        files = report.write(e, data, out / e.name, seed_of[e.name], plots=plots)
        md.append(report.markdown(e, data, seed_of[e.name]))
        agg[e.name] = {"title": e.title, "summary": data["summary"], "bounds": data["bounds"],
                       "files": [str(f) for f in files]}
        if not as_json:
            con.print(f"{e.name}: wrote {', '.join(f.name for f in files)}")
    headline = report.headline(agg)
    md.insert(1, headline + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(md) + "\n")
    if as_json:
        typer.echo(json.dumps({"wall_s": wall, "experiments": agg, "headline": headline}, default=str))
    else:
        con.print(headline)
        con.print(f"report: {out / 'report.md'} ({wall:.0f} s)")
