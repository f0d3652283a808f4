"""`genserve bench ...`: benchmarks that print figures and ratios measured side by side in one run.

Each module here defines `cmd`, a typer command; it is registered below under its name.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Benchmarks (figures measured side by side in one run).", no_args_is_help=True)

# name -> module under genserve.bench; each module defines `cmd`.
BENCHMARKS: dict[str, str] = {
    "simulator": "simulator",
    "steps": "steps",
    "api": "api",
    "engine": "engine",
    "bound": "bound",
    "scheduler": "scheduler",
    "fidelity": "fidelity",
}

for _name, _module in BENCHMARKS.items():
    app.command(_name)(importlib.import_module(f"genserve.bench.{_module}").cmd)
