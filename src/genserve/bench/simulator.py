"""`genserve bench simulator`: simulated events per second and wall time for a large trace.

Default: 100,000 requests on 64 GPUs (8 nodes), the paper's balanced mix at 16 req/min per 8 GPUs (scaled with
N; ~70% of capacity with the paper profile: at 24 req/min FCFS's queue grows without bound over a long trace, and
the benchmark would measure an ever longer queue rather than the simulator), sigma 1, FCFS and the most expensive policy available (genserve when importable, else SRTF). A policy that
runs past --budget-s is stopped there and reported with the share of the trace it got through.
"""

from __future__ import annotations

import json
from typing import Optional

import typer


def cmd(
    requests: int = typer.Option(100_000, help="Requests in the trace."),
    gpus: int = typer.Option(64, help="GPUs (8 per node)."),
    rate_per_8: float = typer.Option(16.0, "--rate-per-8", help="Arrival rate per 8 GPUs, requests/minute."),
    mix: str = typer.Option("balanced", help="light | balanced | heavy | V:I."),
    policies: Optional[str] = typer.Option(None, help="Comma-separated policies (default: fcfs and the most "
                                                      "expensive available)."),
    budget_s: float = typer.Option(300.0, help="Stop a policy after this many wall seconds."),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of the table."),
) -> None:
    """Simulator throughput: events/s and wall time for a large trace, FCFS and the most expensive policy."""
    import time

    from genserve.core.errors import GenServeError
    from genserve.profiles import Profile
    from genserve.scheduling.registry import available_policies
    from genserve.sim.run import run_simulation
    from genserve.workloads import WorkloadSpec, generate_trace, to_requests

    if requests <= 0 or gpus <= 0 or rate_per_8 <= 0 or budget_s <= 0:
        typer.echo("error: --requests, --gpus, --rate-per-8 and --budget-s must be positive", err=True)
        raise typer.Exit(2)
    if policies:
        names = [p.strip() for p in policies.split(",") if p.strip()]
    else:
        avail = available_policies()
        names = ["fcfs", "genserve" if "genserve" in avail else "srtf"]
    prof = Profile.load("paper")
    rate = rate_per_8 * gpus / 8
    t0 = time.perf_counter()
    try:
        reqs = to_requests(generate_trace(WorkloadSpec(requests=requests, rate=rate, mix=mix, seed=seed), prof),
                           prof, 1.0)
    except (GenServeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    trace_s = time.perf_counter() - t0
    rows = []
    for name in names:
        c0 = time.process_time()
        try:
            res = run_simulation(reqs, name, gpus, prof, wall_budget_s=budget_s)
        except GenServeError as e:
            typer.echo(f"error: {name}: {e}", err=True)
            raise typer.Exit(2)
        cpu_s = time.process_time() - c0
        s = res.summary()
        submitted = res.info.get("submitted", len(reqs))
        rows.append({
            "policy": name, "requests": len(reqs), "gpus": gpus, "rate_per_min": rate, "wall_s": res.wall_s, "cpu_s": cpu_s,
            "events": res.events, "rounds": res.rounds, "events_per_s": res.events / res.wall_s,
            "rounds_per_s": res.rounds / res.wall_s, "scoped_rounds": res.info.get("scoped_rounds", 0),
            "simulated_s": res.makespan_s,
            "completed_trace": not res.info.get("stopped", False), "submitted": submitted,
            "sar": s["sar"]["overall"] if not res.info.get("stopped") else None, "gpu_utilisation": s["gpu_utilisation"],
        })
    if as_json:
        typer.echo(json.dumps({"benchmark": "simulator", "trace_s": trace_s, "results": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"simulator: {requests:,} requests ({mix}, {rate:g} req/min) on {gpus} GPUs, paper profile "
                        f"(trace drawn in {trace_s:.1f} s)", title_justify="left")
    for c in ("policy", "wall s", "cpu s", "events", "events/s", "rounds", "scoped", "rounds/s", "simulated h",
              "SLO met", "done"):
        table.add_column(c, justify="left" if c == "policy" else "right")
    for r in rows:
        done = "all" if r["completed_trace"] else f"stopped: {r['submitted'] / r['requests']:.0%} arrived"
        table.add_row(r["policy"], f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['events']:,}", f"{r['events_per_s']:,.0f}",
                      f"{r['rounds']:,}", f"{r['scoped_rounds'] / max(1, r['rounds']):.0%}",
                      f"{r['rounds_per_s']:,.0f}", f"{r['simulated_s'] / 3600:.1f}",
                      "-" if r["sar"] is None else f"{100 * r['sar']:.1f}%", done)
    Console(width=max(Console().width, 120)).print(table)
