"""Two-level (dispatched) GenServe against the flat whole-cluster DP, side by side on the same traces.

    python -m genserve.experiments.two_level --gpus 16,32,64 --seeds 2 --jobs 2

For each cluster size and setting (arrival rate per 8 GPUs and mix; rates scale with N) and each seed, one trace of
`--per-node` requests per node is simulated twice with the genserve policy: `dispatch=False` (every round sees
the whole cluster; node-scoped only while nothing waits) and `dispatch=True` (engine/dispatch.py, the default on
several nodes). Prints one markdown row per (N, setting): SLO attainment overall / image / video (%, mean over
seeds), rounds and wall seconds per run, for both.
"""

from __future__ import annotations

import argparse

SETTINGS = {  # name -> (requests/min per 8 GPUs, mix)
    "bench": (16.0, "balanced"),
    "default": (24.0, "balanced"),
    "heavy": (24.0, "heavy"),
    "rate36": (36.0, "balanced"),
}


def _job(task: tuple) -> tuple:
    gpus, setting, seed, per_node, dispatch = task
    from genserve.profiles import Profile
    from genserve.sim.run import run_simulation
    from genserve.workloads import WorkloadSpec, generate_trace, to_requests

    rate, mix = SETTINGS[setting]
    prof = Profile.load("paper")
    spec = WorkloadSpec(requests=per_node * gpus // 8, rate=rate * gpus / 8, mix=mix, seed=seed)
    reqs = to_requests(generate_trace(spec, prof), prof, 1.0)
    res = run_simulation(reqs, "genserve", gpus, prof, dispatch=dispatch)
    sar = res.summary()["sar"]
    return task, (sar["overall"], sar["image"], sar["video"], res.rounds, res.wall_s)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", default="16,32,64", help="cluster sizes, comma-separated (8 GPUs per node)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {sorted(SETTINGS)}")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--per-node", type=int, default=100, help="requests per trace per node")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    a = ap.parse_args(argv)
    from genserve.scheduling.dp.compare import map_jobs

    try:
        sizes = [int(x) for x in a.gpus.split(",")]
        names = [x.strip() for x in a.settings.split(",")]
        bad = [x for x in names if x not in SETTINGS]
        if bad or a.seeds <= 0 or a.per_node <= 0 or any(n <= 8 or n % 8 for n in sizes):
            raise ValueError(f"unknown settings {bad}" if bad else "need --seeds, --per-node > 0 and GPU counts "
                             "that are multiples of 8 above 8 (two-level needs several nodes)")
    except ValueError as e:
        ap.exit(2, f"error: {e}\n")
    tasks = [(n, s, seed, a.per_node, d) for n in sizes for s in names for seed in range(a.seeds)
             for d in (False, True)]
    out = dict(map_jobs(_job, tasks, a.jobs))
    print("| GPUs | setting | flat SAR % (img / vid) | two-level SAR % (img / vid) | flat rounds | two-level rounds "
          "| flat s | two-level s |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for s in names:
            cols = []
            for d in (False, True):
                rows = [out[(n, s, seed, a.per_node, d)] for seed in range(a.seeds)]
                cols.append([sum(r[i] for r in rows) / len(rows) for i in range(5)])
            f, t = cols
            print(f"| {n} | {s} | {100 * f[0]:.1f} ({100 * f[1]:.1f} / {100 * f[2]:.1f}) "
                  f"| {100 * t[0]:.1f} ({100 * t[1]:.1f} / {100 * t[2]:.1f}) | {f[3]:,.0f} | {t[3]:,.0f} "
                  f"| {f[4]:.1f} | {t[4]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
