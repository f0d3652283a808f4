"""Attainment tables: genserve against every baseline (with and without batching), mean over seeds.

    python -m genserve.scheduling.dp.compare --seeds 5 [--setting default ...]
        [--table baselines|guard|ladder|rounds] [--jobs 2]

baselines: overall SAR of genserve and of every baseline (+b: with EDF batching), and genserve's margin over the
best of them. guard: genserve with the tail guard on / off (SAR, video p99 latency, pauses of the most-paused
video). ladder: the paper's ablation (FCFS -> +preemption -> +DP -> +SP switching) with genserve's switches. rounds:
genserve's round skipping against a round at every step boundary (SAR and round counts).

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
    "rate48": ({"rate": 48.0}, 1.0, 8),
    "heavy-rate36": ({"mix": "heavy", "rate": 36.0}, 1.0, 8),
    "bursty-sigma0.8": ({"arrival": "bursty"}, 0.8, 8),
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
        policy = make_policy(policy.split("+")[0].split(":")[0], options)
    return run_simulation(reqs, policy, gpus, profile).summary()


def _job(args):
    name, opts, setting, seed = args
    from genserve.scheduling.dp import GenServePolicy

    profile = Profile.load("paper")
    policy = GenServePolicy(opts) if name.startswith("genserve") else name
    return run_one(policy, setting, seed, profile, opts)


def map_jobs(fn, tasks: list, jobs: int) -> list:
    """fn over tasks, in `jobs` worker processes when jobs > 1 (order kept)."""
    if jobs <= 1:
        return [fn(t) for t in tasks]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as ex:
        return list(ex.map(fn, tasks))


def _runs(entries, settings, seeds: int, jobs: int) -> dict:
    """{(setting, name): [summary per seed]} for entries = [(name, options)]."""
    tasks = [(name, opts, s, k) for s in settings for name, opts in entries for k in range(seeds)]
    results = map_jobs(_job, tasks, jobs)
    out: dict = {}
    for (name, _, s, _), res in zip(tasks, results):
        out.setdefault((s, name), []).append(res)
    return out


def table(settings: list[str], seeds: int, policies=POLICIES, jobs: int = 1) -> dict[str, dict[str, float]]:
    runs = _runs(policies, settings, seeds, jobs)
    return {s: {name: 100.0 * statistics.fmean(r["sar"]["overall"] for r in runs[(s, name)])
                for name, _ in policies} for s in settings}


def markdown(tab: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(tab.values())))
    lines = ["| setting | " + " | ".join(names) + " | margin |", "|---" * (len(names) + 2) + "|"]
    for s, row in tab.items():
        others = max(v for k, v in row.items() if k != "genserve")
        margin = row["genserve"] - others
        lines.append(f"| {s} | " + " | ".join(f"{row[k]:.1f}" for k in names) + f" | {margin:+.1f} |")
    return "\n".join(lines)


def _p99(rs: list[dict]) -> float:
    return statistics.fmean(r["latency"]["video"]["p99"] or 0.0 for r in rs)


def guard_table(settings: list[str], seeds: int, jobs: int = 1) -> str:
    entries = [("genserve", PolicyOptions(tail_guard=True)), ("genserve-noguard", PolicyOptions(tail_guard=False)),
               ("fcfs", PolicyOptions()), ("srtf", PolicyOptions())]
    runs = _runs(entries, settings, seeds, jobs)
    lines = ["| setting | SAR guard on | SAR guard off | video p99 on (s) | video p99 off (s) | video p99 FCFS |"
             " video p99 SRTF | preemptions on / off |", "|---" * 8 + "|"]
    for s in settings:
        on, off = runs[(s, "genserve")], runs[(s, "genserve-noguard")]
        sar = lambda rs: 100.0 * statistics.fmean(r["sar"]["overall"] for r in rs)  # noqa: E731
        pre = lambda rs: statistics.fmean(r["preemptions"] for r in rs)  # noqa: E731
        lines.append(f"| {s} | {sar(on):.1f} | {sar(off):.1f} | {_p99(on):.0f} | {_p99(off):.0f} | "
                     f"{_p99(runs[(s, 'fcfs')]):.0f} | {_p99(runs[(s, 'srtf')]):.0f} | {pre(on):.0f} / {pre(off):.0f} |")
    return "\n".join(lines)


def _job_rounds(args):
    mode, setting, seed = args
    from genserve.scheduling.dp import GenServePolicy

    policy = GenServePolicy()
    if mode is not None:
        policy.step_rounds = mode
    s = run_one(policy, setting, seed, Profile.load("paper"))
    return s["sar"]["overall"], s["rounds"]


def rounds_table(settings: list[str], seeds: int, jobs: int = 1) -> str:
    """genserve with a round at every step boundary ("always") against its own round skipping."""
    tasks = [(mode, s, k) for s in settings for mode in ("always", None) for k in range(seeds)]
    results = map_jobs(_job_rounds, tasks, jobs)
    got: dict = {}
    for (mode, s, _), res in zip(tasks, results):
        got.setdefault((s, mode), []).append(res)
    lines = ["| setting | SAR always | SAR skipping | rounds always | rounds skipping | same SAR every seed |",
             "|---" * 6 + "|"]
    for s in settings:
        a, b = got[(s, "always")], got[(s, None)]
        sar = lambda rs: 100.0 * statistics.fmean(r[0] for r in rs)  # noqa: E731
        lines.append(f"| {s} | {sar(a):.1f} | {sar(b):.1f} | {sum(r[1] for r in a):,} | {sum(r[1] for r in b):,} | "
                     f"{'yes' if [r[0] for r in a] == [r[0] for r in b] else 'no'} |")
    return "\n".join(lines)


LADDER = [
    ("FCFS (all off)", PolicyOptions(dp=False, preemption=False, elastic_sp=False, batching=False)),
    ("+preemption", PolicyOptions(dp=False, elastic_sp=False, batching=False)),
    ("+DP", PolicyOptions(elastic_sp=False, batching=False)),
    ("+SP switching", PolicyOptions(batching=False)),
    ("+batching (all on)", PolicyOptions()),
]


def ladder_table(settings: list[str], seeds: int, jobs: int = 1) -> str:
    entries = [(f"genserve:{label}", opts) for label, opts in LADDER]
    runs = _runs(entries, settings, seeds, jobs)
    lines = ["| setting | " + " | ".join(label for label, _ in LADDER) + " |", "|---" * (len(LADDER) + 1) + "|"]
    for s in settings:
        cells = []
        for label, _ in LADDER:
            rs = runs[(s, f"genserve:{label}")]
            f = lambda k: 100.0 * statistics.fmean(r["sar"][k] or 0.0 for r in rs)  # noqa: E731
            cells.append(f"{f('overall'):.1f} / {f('image'):.1f} / {f('video'):.1f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--setting", action="append", help="setting name (repeatable); default: all")
    ap.add_argument("--table", choices=("baselines", "guard", "ladder", "rounds"), default="baselines")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = ap.parse_args(argv)
    settings = args.setting or list(SETTINGS)
    if args.table == "baselines":
        print(markdown(table(settings, args.seeds, jobs=args.jobs)))
    elif args.table == "guard":
        print(guard_table(settings, args.seeds, args.jobs))
    elif args.table == "rounds":
        print(rounds_table(settings, args.seeds, args.jobs))
    else:
        print(ladder_table(settings, args.seeds, args.jobs))


if __name__ == "__main__":
    main()
