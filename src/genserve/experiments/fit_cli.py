"""`genserve fit-paper`: run the fit of experiments/fit.py and report it (markdown tables, the bundled files)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import typer

from genserve.experiments.fit import (PAPER_FIT, Cell, Evaluation, FitParams, cell_values, fit_cells,
                                      held_out_cells, latency_percentiles, load_document, mae, objective,
                                      paper_fit_profile, refine, search, simulate_cells)


def table_rows(cells: list[Cell], values: list[float], reference: list[float] | None = None) -> list[str]:
    """Markdown rows: cell, paper, (reference,) ours, |error|."""
    rows = []
    for i, (c, v) in enumerate(zip(cells, values)):
        ref = f" {reference[i]:.0f} |" if reference is not None else ""
        rows.append(f"| {c.exp} | {c.setting} | {c.variant} | {c.metric} | {c.paper:g} |{ref} {v:.0f} | "
                    f"{abs(v - c.paper):.1f} |")
    return rows


def comparison(p: FitParams, seeds: int = 5, held_out: bool = True) -> str:
    """Markdown: every fit cell (and, with held_out, every held-out cell and E4's latencies) for the paper, the
    bundled `paper` load (FitParams()) and candidate `p`, with absolute errors and the mean per group."""
    from genserve.experiments.paper import PAPER_LATENCY

    ref = FitParams()
    out = []
    groups = [("Fit cells (baselines; the objective)", fit_cells())]
    if held_out:
        groups.append(("Held-out cells (never used in the fit)", held_out_cells()))
    for title, cells in groups:
        a = cell_values(cells, simulate_cells(ref, cells, seeds))
        b = cell_values(cells, simulate_cells(p, cells, seeds))
        out += [f"#### {title}", "",
                f"MAE: `paper` {mae(a, [c.paper for c in cells]):.1f} points, `paper-fit` "
                f"{mae(b, [c.paper for c in cells]):.1f} points ({len(cells)} cells, {seeds} seeds).", "",
                "| exp | setting | variant | metric | paper | `paper` | `paper-fit` | error (`paper-fit`) |",
                "|---|---|---|---|---|---|---|---|"]
        out += table_rows(cells, b, a)
        out.append("")
    if held_out:
        la, lb = latency_percentiles(ref, seeds), latency_percentiles(p, seeds)
        out += ["#### E4 latency percentiles (s, held out; balanced, 24 req/min, sigma 1, pooled over seeds)", "",
                "| policy | modality | percentile | paper | `paper` | `paper-fit` |", "|---|---|---|---|---|---|"]
        for k, v in PAPER_LATENCY.items():
            out.append(f"| {k[0]} | {k[1]} | {k[2]} | {v:g} | {la[k]:.1f} | {lb[k]:.1f} |")
        out.append("")
    return "\n".join(out)


def fit_paper(
    seeds: int = typer.Option(5, help="Traces per setting (seeds 0..K-1), the same for every candidate."),
    search_: bool = typer.Option(True, "--search/--no-search",
                                 help="Run the coordinate search (--no-search: evaluate the start point only)."),
    start: str = typer.Option("paper-fit", help="Start point: paper-fit (the shipped fit) or paper (the bundled load)."),
    rounds: int = typer.Option(3, help="Full coordinate passes at most."),
    refine_steps: int = typer.Option(150, "--refine", help="Random refinement steps after the coordinate search."),
    budget_s: float = typer.Option(3600.0, help="Stop the search after this many seconds (best so far is kept)."),
    log: str = typer.Option("out/fit/evaluations.jsonl", help="Append every evaluation here (JSON lines)."),
    held_out: bool = typer.Option(False, "--held-out/--no-held-out",
                                  help="Also report the held-out cells (GenServe, ablation, pools, motivation, "
                                       "E4 latencies) for the best point."),
    write: str = typer.Option("", help="Write the best point's profile JSON to this path (and its trace settings "
                                       "to <stem>.load.json beside it)."),
    report: str = typer.Option("", help="Write a markdown comparison (paper, `paper`, best point; fit and "
                                        "held-out cells) to this path."),
) -> None:
    """Fit the paper's unknowns (video steps, overheads, image times, deadline basis, arrivals, skew) to its
    baseline numbers; print the error, the worst cells and (optionally) the held-out check."""
    from pathlib import Path

    if seeds <= 0 or rounds <= 0 or budget_s <= 0 or refine_steps < 0:
        typer.echo("error: --seeds, --rounds and --budget-s must be positive, --refine >= 0", err=True)
        raise typer.Exit(2)
    if start not in ("paper-fit", "paper"):
        typer.echo("error: --start must be paper-fit or paper", err=True)
        raise typer.Exit(2)
    p0 = PAPER_FIT if start == "paper-fit" else FitParams()
    logp = Path(log)
    logp.parent.mkdir(parents=True, exist_ok=True)

    def note(e: Evaluation) -> None:
        with logp.open("a") as f:
            f.write(json.dumps({"params": asdict(e.params), "error": e.error, "wall_s": e.wall_s,
                                "values": e.values}) + "\n")
        typer.echo(f"{e.error:6.2f}  ({e.wall_s:4.1f} s)  {e.params.label()}")

    if search_:
        t0 = time.perf_counter()
        best = search(p0, seeds=seeds, rounds=rounds, deadline_s=budget_s, log=note)
        left = budget_s - (time.perf_counter() - t0)
        if refine_steps > 0 and left > 0:
            best = refine(best, refine_steps, seeds=seeds, deadline_s=left, log=note)
    else:
        best = objective(p0, seeds)
        note(best)
    typer.echo(f"best: MAE {best.error:.2f} points over {len(best.cells)} baseline cells, {seeds} seeds: "
               f"{best.params.label()}")
    typer.echo("worst cells (paper -> ours):")
    for name, pv, v in best.worst(8):
        typer.echo(f"  {name}: {pv:g} -> {v:.1f}")
    if held_out:
        cells = held_out_cells()
        runs = simulate_cells(best.params, cells, seeds)
        vals = cell_values(cells, runs)
        typer.echo(f"held out: MAE {mae(vals, [c.paper for c in cells]):.2f} points over {len(cells)} cells")
        for row in table_rows(cells, vals):
            typer.echo(row)
        for k, v in latency_percentiles(best.params, seeds).items():
            from genserve.experiments.paper import PAPER_LATENCY

            typer.echo(f"  E4 {k[0]} {k[1]} {k[2]}: paper {PAPER_LATENCY[k]:g} s, ours {v:.1f} s")
    if write:
        Path(write).write_text(json.dumps(paper_fit_profile(best.params), indent=1) + "\n")
        side = Path(write).with_name(Path(write).stem + ".load.json")
        side.write_text(json.dumps(load_document(best.params), indent=1) + "\n")
        typer.echo(f"wrote {write} and {side}")
    if report:
        Path(report).write_text(comparison(best.params, seeds) + "\n")
        typer.echo(f"wrote {report}")
