"""`genserve models list | verify`: the bundled model configurations and the checks they pass.

Outside the genserve.models package (whose __init__ imports torch and diffusers), so that `genserve --help`
and the torch-free control plane keep importing genserve.cli without torch; commands import lazily.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

app = typer.Typer(help="Bundled model configurations (public hub configs, random weights): list and verify.",
                  no_args_is_help=True)

GIB = 2 ** 30


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        _fail(f"{what} must be comma-separated integers, got {text!r}")
    if not vals or any(v < 1 for v in vals):
        _fail(f"{what} must be positive integers, got {text!r}")
    return vals


def rows() -> list[dict]:
    """One row per bundled model: what `models list` prints (also used by docs and tests)."""
    from genserve.models import catalog

    out = []
    for e in catalog.entries():
        mem = catalog.weight_bytes(e.name)
        modes = e.sp_modes()
        out.append({
            "name": e.name, "hub_id": e.hub_id, "family": e.family, "modality": e.modality,
            "default_steps": e.default_steps, "heads": e.heads, "experts": e.experts,
            "sp": {str(p): m for p, m in modes.items()} if e.modality == "video" else {"1": "-"},
            "latent": e.latent_factors(), "bf16_gib": round(mem["total"] / GIB, 2),
            "bf16_transformer_gib": round((mem["transformer"] + mem.get("transformer_2", 0)) / GIB, 2),
        })
    return out


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="One JSON object per model.")) -> None:
    """Bundled models: family, modality, default steps, heads, SP degrees (Ulysses / ring), bf16 weight memory."""
    data = rows()
    if as_json:
        for r in data:
            typer.echo(json.dumps(r))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bundled models (bf16 weights: every component, counted on the meta device)")
    for col in ("name", "hub id", "family", "modality", "steps", "heads", "SP 2 / 4 / 8", "latent x", "bf16 GiB",
                "DiT GiB"):
        table.add_column(col)
    for r in data:
        sp = " / ".join(r["sp"].get(str(p), "-") for p in (2, 4, 8)) if r["modality"] == "video" else "SP 1 (batched)"
        lat = r["latent"]
        lat_s = f"{lat['spatial']}x{lat['patch']}" + (f", t{lat['temporal']}" if r["modality"] == "video" else "")
        dit = f"{r['bf16_transformer_gib']}" + (" (2 experts)" if r["experts"] == 2 else "")
        table.add_row(r["name"], r["hub_id"], r["family"], r["modality"], str(r["default_steps"]), str(r["heads"]),
                      sp, lat_s, f"{r['bf16_gib']:.2f}", dit)
    Console(width=200).print(table)


@app.command("verify")
def verify_cmd(
    name: str = typer.Argument(..., help="A bundled model (genserve models list)."),
    blocks: int = typer.Option(1, "--blocks", help="Transformer blocks (and text-encoder layers) to build."),
    size: Optional[str] = typer.Option(None, "--size", help="WxH; default the smallest size the model allows."),
    frames: int = typer.Option(5, "--frames", help="Video frames (4k+1)."),
    steps: int = typer.Option(3, "--steps", help="Denoising steps (pause/resume is checked before every one)."),
    sp: str = typer.Option("1,2,4", "--sp", help="SP degrees to compare with SP 1 (video models)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16."),
    no_process: bool = typer.Option(False, "--no-process", help="Skip the resume in another worker process."),
    init: str = typer.Option("fast", "--init", help="fast (seeded tiled pattern, quick on CPU) | torch (the "
                                                    "libraries' own random init)."),
    overrides: list[str] = typer.Option([], "--set", help="COMPONENT.KEY=JSON, e.g. transformer.pos_embed_max_size=32 "
                                                          "(repeatable)."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="One JSON verdict per line (the default)."),
) -> None:
    """Build NAME at reduced depth with random weights (CPU) and check: loop == pipeline bit for bit, pause/resume
    at every step (memory, bytes, another process), SP 2/4 == SP 1 within tolerance, batch of 2 == singles.
    Exit status 1 when a check fails."""
    import torch

    from genserve.core.errors import GenServeError
    from genserve.models import catalog
    from genserve.models.verify import Options, verify

    if name not in catalog.names():
        _fail(f"unknown bundled model {name!r}: use one of {', '.join(catalog.names())}")
    if dtype not in ("float32", "bfloat16"):
        _fail(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    w = h = None
    if size:
        try:
            w, h = (int(x) for x in size.lower().split("x"))
        except ValueError:
            _fail(f"--size must be WxH, got {size!r}")
    if blocks < 1 or steps < 2:
        _fail("--blocks must be >= 1 and --steps >= 2 (a pause needs a step on each side)")
    sets: dict = {}
    for item in overrides:
        try:
            key, value = item.split("=", 1)
            comp, field = key.split(".", 1)
            sets.setdefault(comp, {})[field] = json.loads(value)
        except ValueError:
            _fail(f"--set must be COMPONENT.KEY=JSON, got {item!r}")
    opts = Options(name=name, blocks=blocks, width=w, height=h, frames=frames, steps=steps, sp=_ints(sp, "--sp"),
                   dtype=getattr(torch, dtype), process=not no_process, init=init, overrides=sets or None)
    torch.set_num_threads(1)
    failed = False
    try:
        for verdict in verify(opts):
            failed |= not verdict["ok"]
            if as_json:
                typer.echo(json.dumps(verdict, default=str))
            else:
                typer.echo(f"{verdict['check']:15s} {'ok' if verdict['ok'] else 'FAIL'}")
            sys.stdout.flush()
    except GenServeError as e:
        _fail(str(e))
    if failed:
        raise typer.Exit(1)
