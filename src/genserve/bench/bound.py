"""`genserve bench bound --trace FILE`: the hindsight upper bound on SLO attainment beside every policy.

The bound (genserve/experiments/bound.py) is an interval-indexed LP relaxation of "maximise the requests that
finish by their deadline" on N GPUs: no schedule can beat it. Each available policy is then simulated on the same
trace and reported as a count and as its ratio to the bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def cmd(
    trace: Path = typer.Option(..., help="JSONL trace (genserve trace generate)."),
    profile: str = typer.Option("paper", help="Latency profile: bundled name or JSON path."),
    gpus: int = typer.Option(8, help="Number of GPUs."),
    gpus_per_node: int = typer.Option(8, help="GPUs per node (SP groups stay inside a node)."),
    sigma: float = typer.Option(1.0, help="SLO scale for records without deadline or sigma."),
    method: str = typer.Option("lp", help="lp | milp (integral y; HiGHS dual bound at the time limit)."),
    time_limit: float = typer.Option(60.0, help="Solver time limit, seconds."),
    max_intervals: int = typer.Option(600, help="Most time intervals (fewer: faster, looser, still valid)."),
    policies: Optional[str] = typer.Option(None, help="Comma-separated policies to simulate (default: all "
                                                      "available); 'none' for the bound only."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of the table."),
) -> None:
    """Upper bound on SLO attainment for a trace (LP relaxation, HiGHS), and each policy's ratio to it."""
    from genserve.core.errors import GenServeError
    from genserve.core.snapshot import ClusterSpec
    from genserve.experiments.bound import upper_bound
    from genserve.profiles import Profile
    from genserve.workloads import read_trace, to_requests

    if gpus <= 0 or sigma <= 0 or time_limit <= 0 or max_intervals <= 0:
        typer.echo("error: --gpus, --sigma, --time-limit and --max-intervals must be positive", err=True)
        raise typer.Exit(2)
    try:
        prof = Profile.load(profile)
        cluster = ClusterSpec(gpus, gpus_per_node)
        reqs = to_requests(read_trace(trace), prof, sigma)
        b = upper_bound(reqs, prof, cluster, method=method, time_limit=time_limit, max_intervals=max_intervals)
    except (GenServeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)

    rows = []
    names: list[str] = []
    if (policies or "").strip().lower() != "none":
        try:
            from genserve.scheduling.registry import available_policies
            from genserve.sim.run import run_simulation
        except ImportError:  # the simulator is optional for the bound
            names = []
        else:
            names = ([p.strip().lower() for p in policies.split(",") if p.strip()] if policies
                     else available_policies())
            for name in names:
                try:
                    s = run_simulation(reqs, name, cluster, prof).summary()
                except GenServeError as e:
                    typer.echo(f"error: {name}: {e}", err=True)
                    raise typer.Exit(2)
                met = round((s["sar"]["overall"] or 0.0) * s["requests"])
                rows.append({"policy": name, "met": met, "sar": s["sar"],
                             "ratio_to_bound": met / b.count if b.count else None})
    out = {"trace": str(trace), "requests": len(reqs), "gpus": gpus, "bound": b.to_dict(), "policies": rows}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    pm = b.per_modality
    con.print(f"[bold]upper bound[/bold] ({b.method}, {b.intervals} intervals, {b.solve_time:.2f} s): "
              f"{b.count}/{b.total} requests ({100 * b.fraction:.1f}%); images alone <= {pm['image']['count']}/"
              f"{pm['image']['total']}, videos alone <= {pm['video']['count']}/{pm['video']['total']}; "
              f"LP value {b.value:.2f}; {b.dropped} cannot meet their deadline even alone")
    if rows:
        t = Table(title=f"policies on {trace.name}, {gpus} GPUs")
        for c in ("policy", "met SLO", "SAR", "image SAR", "video SAR", "ratio to bound"):
            t.add_column(c, justify="right" if c != "policy" else "left")

        def pct(x):
            return "-" if x is None else f"{100 * x:.0f}%"

        for r in rows:
            t.add_row(r["policy"], str(r["met"]), pct(r["sar"]["overall"]), pct(r["sar"]["image"]),
                      pct(r["sar"]["video"]), "-" if r["ratio_to_bound"] is None else f"{r['ratio_to_bound']:.3f}")
        con.print(t)
