"""Trace and deadline settings that come with a bundled profile fitted to a paper's load.

A fitted profile (e.g. `paper-fit`, genserve/experiments/fit.py) fixes more than latencies: some of the paper's
unknowns are trace settings (arrivals, whether skewed weights are drawn per trace) or the deadline basis. They live
beside the profile as `<name>.load.json`:

    {"profile": "paper-fit",
     "workload": {"skew_seed": 0},      # WorkloadSpec fields every experiment setting starts from
     "deadline_basis": "sp1"}           # workloads.trace.isolated_latency basis

`genserve experiment --profile NAME` and `genserve simulate --profile NAME` apply them (and say so); a profile
without such a file (`paper`, `tiny-cpu`, any JSON path) changes nothing.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from genserve.workloads.trace import DEADLINE_BASES

WORKLOAD_KEYS = ("arrival", "cv", "skew_seed", "image_weights", "video_weights", "alpha")


def load_settings(profile: str) -> dict:
    """{"workload": {...}, "deadline_basis": str} for a bundled profile name or a JSON path with a
    `<stem>.load.json` beside it; {} when there is none."""
    key = str(profile)
    text = None
    try:
        f = resources.files("genserve.profiles").joinpath("data", f"{key}.load.json")
        if f.is_file():
            text = f.read_text()
    except (OSError, ValueError):
        text = None
    if text is None and key.endswith(".json"):
        side = Path(key).with_name(Path(key).stem + ".load.json")
        if side.is_file():
            text = side.read_text()
    if text is None:
        return {}
    data = json.loads(text)
    wl = dict(data.get("workload") or {})
    bad = set(wl) - set(WORKLOAD_KEYS)
    if bad:
        raise ValueError(f"{key}.load.json: unknown workload fields {sorted(bad)}")
    basis = data.get("deadline_basis", "sp1")
    if basis not in DEADLINE_BASES:
        raise ValueError(f"{key}.load.json: unknown deadline_basis {basis!r}")
    return {"workload": wl, "deadline_basis": basis}


def describe(settings: dict) -> str:
    """One line for logs and reports ('' when there is nothing)."""
    if not settings:
        return ""
    parts = [f"{k}={v}" for k, v in sorted(settings.get("workload", {}).items())]
    if settings.get("deadline_basis", "sp1") != "sp1":
        parts.append(f"deadline basis {settings['deadline_basis']}")
    return ", ".join(parts)
