"""Attainment tables: genserve against every baseline (with and without batching), mean over seeds.

    python -m genserve.scheduling.dp.compare --seeds 5 [--setting default ...] [--markdown]

A *setting* is a named WorkloadSpec + cluster size; the tables in docs/scheduler.md come from this module.
Simulations only (paper profile), no torch.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from genserve.profiles import Profile
from genserve.scheduling.options import PolicyOptions
from genserve.workloads.generate import WorkloadSpec, generate_trace
from genserve.workloads.trace import to_requests

BASE = WorkloadSpec(requests=100, rate=24.0, mix="balanced", arrival="poisson", resolutions="uniform")

# name -> (workload overrides, sigma, GPUs); "tuned" marks the one setting the policy was tuned on
SETTINGS: dict[str, tuple[dict, float, int]] = {
    "default": ({}, 1.0, 8),
    **{f"sigma{s}": ({}, s, 8) for s in (0.8, 0.9, 1.1, 1.2, 1.3)},
    "heavy": ({"mix": "heavy"}, 1.0, 8),
    "light": ({"mix": "light"}, 1.0, 8),
    "skewed": ({"resolutions": "skewed"}, 1.0, 8),
    # never tuned on
    "rate12": ({"rate": 12.0}, 1.0, 8),
    "rate18": ({"rate": 18.0}, 1.0, 8),
    "rate36": ({"rate": 36.0}, 1.0, 8),
    "bursty": ({"arrival": "bursty"}, 1.0, 8),
    "gpus4": ({"rate": 12.0}, 1.0, 4),
    "gpus16": ({"rate": 48.0}, 1.0, 16),
    "heavy-skewed": ({"mix": "heavy", "resolutions": "skewed"}, 1.0, 8),
}

POLICIES = [
    ("genserve", PolicyOptions()),
    ("fcfs", PolicyOptions(batching=False)), ("fcfs+b", PolicyOptions(batching=True)),
    ("sjf", PolicyOptions(batching=False)), ("sjf+b", PolicyOptions(batching=True)),
    ("srtf", PolicyOptions(batching=False)), ("srtf+b", PolicyOptions(batching=True)),
    ("rasp", PolicyOptions(batching=False)), ("rasp+b", PolicyOptions(batching=True)),
    ("dedicated", PolicyOptions(batching=False)), ("dedicated+b", PolicyOptions(batching=True)),
]


def requests_for(setting: str, seed: int, profile):
    over, sigma, gpus = SETTINGS[setting]
    spec = replace(BASE, seed=seed, **over)
    return to_requests(generate_trace(spec, profile), profile, sigma=sigma), gpus


def run_one(policy, setting: str, seed: int, profile, options: PolicyOptions | None = None) -> dict:
    from genserve.scheduling.registry import make_policy
    from genserve.sim import run_simulation

    reqs, gpus = requests_for(setting, seed, profile)
    if isinstance(policy, str):
        policy = make_policy(policy.split("+")[0], options)
    return run_simulation(reqs, policy, gpus, profile).summary()


def table(settings: list[str], seeds: int, policies=POLICIES, profile=None) -> dict[str, dict[str, float]]:
    profile = profile or Profile.load("paper")
    out: dict[str, dict[str, float]] = {}
    for s in settings:
        row = {}
        for name, opts in policies:
            vals = [run_one(name, s, seed, profile, opts)["sar"]["overall"] for seed in range(seeds)]
            row[name] = 100.0 * statistics.fmean(vals)
        out[s] = row
    return out


def markdown(tab: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(tab.values())))
    lines = ["| setting | " + " | ".join(names) + " | margin |", "|---" * (len(names) + 2) + "|"]
    for s, row in tab.items():
        others = max(v for k, v in row.items() if k != "genserve")
        margin = row["genserve"] - others
        lines.append(f"| {s} | " + " | ".join(f"{row[k]:.1f}" for k in names) + f" | {margin:+.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--setting", action="append", help="setting name (repeatable); default: all")
    args = ap.parse_args(argv)
    settings = args.setting or list(SETTINGS)
    tab = table(settings, args.seeds)
    print(markdown(tab))


if __name__ == "__main__":
    main()
