"""The `genserve` command line. Sub-commands import their heavy parts lazily, so `--help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genserve.bench import app as bench_app
from genserve.core.errors import GenServeError
from genserve.profiles.profiler import profile_command
from genserve.experiments.cli import experiment as experiment_cmd
from genserve.models_cli import app as models_app
from genserve.experiments.fit_cli import fit_paper as fit_paper_cmd
from genserve.server.cli import demo as demo_cmd
from genserve.server.cli import serve as serve_cmd
from genserve.sim.cli import simulate as simulate_cmd

app = typer.Typer(help="SLO-aware co-serving of text-to-image and text-to-video diffusion models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
trace_app = typer.Typer(help="Generate and check request traces (JSONL).", no_args_is_help=True)
app.add_typer(trace_app, name="trace")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
app.command("simulate")(simulate_cmd)
app.command("serve")(serve_cmd)
app.command("demo")(demo_cmd)
app.command("profile")(profile_command)
app.command("experiment")(experiment_cmd)
app.command("fit-paper")(fit_paper_cmd)


def fail(message: str) -> None:
    """One line on stderr and exit status 2: the CLI's answer to bad input."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@trace_app.command("generate")
def trace_generate(
    out: Path = typer.Option(..., "-o", "--out", help="JSONL file to write."),
    requests: int = typer.Option(100, help="Number of requests."),
    rate: float = typer.Option(24.0, help="Mean arrival rate, requests per minute."),
    mix: str = typer.Option("balanced", help="light | balanced | heavy | V:I (video:image, e.g. 70:30)."),
    arrival: str = typer.Option("poisson", help="poisson | bursty (Gamma inter-arrivals)."),
    cv: float = typer.Option(3.0, help="Coefficient of variation of bursty inter-arrivals."),
    resolutions: str = typer.Option("uniform", help="uniform | skewed (Dirichlet weights per trace)."),
    alpha: float = typer.Option(1.0, help="Dirichlet alpha for skewed resolutions."),
    sigma: Optional[float] = typer.Option(None, help="Write this SLO scale into every record."),
    seed: int = typer.Option(0, help="Random seed: same seed, same trace byte for byte."),
    profile: str = typer.Option("paper", help="Profile (bundled name or JSON path) for models and sizes."),
) -> None:
    """Draw a synthetic trace and write it as JSONL (schema: genserve/workloads/trace.py)."""
    from genserve.profiles import Profile
    from genserve.workloads import WorkloadSpec, generate_trace, write_trace

    try:
        prof = Profile.load(profile)
        spec = WorkloadSpec(requests=requests, rate=rate, mix=mix, arrival=arrival, cv=cv, resolutions=resolutions,
                            alpha=alpha, seed=seed, sigma=sigma)
        records = generate_trace(spec, prof)
        write_trace(records, out)
    except (GenServeError, ValueError, OSError) as e:
        fail(str(e))
    videos = sum(r.modality == "video" for r in records)
    typer.echo(f"wrote {len(records)} requests ({videos} videos, {len(records) - videos} images) to {out}")


@trace_app.command("check")
def trace_check(
    path: Path = typer.Argument(..., help="JSONL trace to validate."),
    profile: str = typer.Option("paper", help="Profile the requests must fit."),
    sigma: float = typer.Option(1.0, help="SLO scale for records without deadline or sigma."),
) -> None:
    """Validate a trace against the schema and a profile."""
    from genserve.profiles import Profile
    from genserve.workloads import read_trace, to_requests

    try:
        reqs = to_requests(read_trace(path), Profile.load(profile), sigma)
    except (GenServeError, ValueError) as e:
        fail(str(e))
    typer.echo(f"ok: {len(reqs)} requests")


@app.command("profile-show")
def profile_show(profile: str = typer.Argument("paper", help="Bundled name or JSON path.")) -> None:
    """Print a profile's isolated latencies and deadlines at sigma 1."""
    from rich.console import Console
    from rich.table import Table

    from genserve.profiles import Profile

    from genserve.workloads.fitted import load_settings
    from genserve.workloads.trace import isolated_latency

    try:
        prof = Profile.load(profile)
        basis = load_settings(profile).get("deadline_basis", "sp1")  # a fitted profile may set another basis
    except (GenServeError, ValueError) as e:
        fail(str(e))
    table = Table(title=f"profile {prof.name}: isolated latency (s, SP 1) and deadline at sigma 1 "
                        f"(basis {basis})")
    for col in ("modality", "model", "size", "isolated s", "deadline s"):
        table.add_column(col)
    d = prof.doc.defaults
    for w, h in d.image_sizes:
        iso = prof.isolated_latency("image", d.image_model, w, h)
        dl = 1.5 * isolated_latency(prof, "image", d.image_model, w, h, 1, None, basis)
        table.add_row("image", d.image_model, f"{w}x{h}", f"{iso:.3f}", f"{dl:.3f}")
    for w, h, f in d.video_sizes:
        iso = prof.isolated_latency("video", d.video_model, w, h, f)
        dl = 1.5 * isolated_latency(prof, "video", d.video_model, w, h, f, None, basis)
        table.add_row("video", d.video_model, f"{w}x{h}x{f}", f"{iso:.3f}", f"{dl:.3f}")
    Console().print(table)


def main() -> None:
    """Entry point. Bad option names or values give one line `error: ...` and exit status 2, never a traceback."""
    import sys

    usage, no_args, abort = _click_errors()
    try:
        rc = app(standalone_mode=False)
    except no_args as e:
        e.show()
        rc = e.exit_code
    except usage as e:
        typer.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        rc = 2
    except abort:
        typer.echo("aborted", err=True)
        rc = 1
    sys.exit(rc if isinstance(rc, int) else 0)


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """Usage, no-args-help and abort exception types of click and of the click copy newer typer vendors."""
    mods = []
    try:
        import click.exceptions

        mods.append(click.exceptions)
    except ImportError:  # pragma: no cover
        pass
    try:
        from typer._click import exceptions as vendored

        mods.append(vendored)
    except ImportError:  # pragma: no cover
        pass
    usage = tuple(m.UsageError for m in mods)
    no_args = tuple(m.NoArgsIsHelpError for m in mods if hasattr(m, "NoArgsIsHelpError"))
    abort = tuple(m.Abort for m in mods if hasattr(m, "Abort")) + (typer.Abort,)
    return usage, no_args, abort


if __name__ == "__main__":
    main()
