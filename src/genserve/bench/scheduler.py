"""`genserve bench scheduler`: decision time of the genserve policy on realistic snapshots.

Snapshots are captured from simulations (paper profile, 8 GPUs, the default and the heavy mix, a few seeds) and
bucketed by the number of videos in them (the paper's "video groups"). Larger clusters are built by tiling
captured 8-GPU snapshots onto N/8 nodes (the same instant, GPU ids shifted per node), so N = 64, 256, 1024 carry
proportionally many requests. Each snapshot is planned `--reps` times; the figures are per call.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time

import typer

from genserve.core.snapshot import ClusterSpec, Snapshot


def capture(settings=("default", "heavy", "rate36"), seeds: int = 2, every: int = 1) -> list[Snapshot]:
    """Snapshots the genserve policy saw during simulations of 8 GPUs."""
    from genserve.profiles import Profile
    from genserve.scheduling.dp import GenServePolicy
    from genserve.scheduling.dp.compare import requests_for
    from genserve.sim import run_simulation

    profile = Profile.load("paper")
    out: list[Snapshot] = []
    for setting in settings:
        for seed in range(seeds):
            reqs, gpus = requests_for(setting, seed, profile)
            pol = GenServePolicy()
            pol.step_rounds = "always"  # a snapshot at every step boundary, as the live engine may see them
            inner = pol.plan
            k = [0]

            def spy(snap, inner=inner, k=k):
                k[0] += 1
                if k[0] % every == 0:
                    out.append(snap)
                return inner(snap)

            pol.plan = spy
            run_simulation(reqs, pol, gpus, profile)
    return out


_CLUSTERS: dict[tuple, ClusterSpec] = {}


def tile(parts: list[Snapshot], per_node: int = 8) -> Snapshot:
    """One snapshot of len(parts) nodes: part i on GPUs [8i, 8i+8), times shifted to a common `now`."""
    now = max(p.now for p in parts)
    images, videos, busy = [], [], []
    last = None
    for i, p in enumerate(parts):
        dt = now - p.now
        off = i * per_node
        for im in p.images:
            images.append(dataclasses.replace(im, id=f"n{i}.{im.id}", arrival=im.arrival + dt,
                                              deadline=im.deadline + dt))
        for v in p.videos:
            videos.append(dataclasses.replace(
                v, id=f"n{i}.{v.id}", arrival=v.arrival + dt, deadline=v.deadline + dt,
                busy_until=v.busy_until + dt, gpus=tuple(g + off for g in v.gpus),
                home_gpu=None if v.home_gpu is None else v.home_gpu + off))
        busy.extend(b + dt for b in p.busy_until)
        if p.last_image_arrival is not None:
            t = p.last_image_arrival + dt
            last = t if last is None else max(last, t)
    key = (len(parts) * per_node, per_node, parts[0].cluster.sp_degrees)
    cluster = _CLUSTERS.get(key)
    if cluster is None:  # one object per size, as in a server (its group tables are cached on it)
        cluster = _CLUSTERS[key] = ClusterSpec(*key)
    return Snapshot(now, cluster, parts[0].profile, tuple(images), tuple(videos), tuple(busy), last)


def _time(policy, snaps: list[Snapshot], reps: int) -> tuple[list[float], list[float]]:
    """Per snapshot, the best of `reps` calls: wall-clock seconds and CPU seconds of this process.

    The CPU figure is what a decision costs; the wall figure also counts time the OS gave to other processes
    (this machine is shared: 2 cores, often several busy processes)."""
    wall, cpu = [], []
    for s in snaps:
        bw = bc = float("inf")
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            policy.plan(s)
            bc = min(bc, time.process_time() - c)
            bw = min(bw, time.perf_counter() - t)
        wall.append(bw)
        cpu.append(bc)
    return wall, cpu


def _stats(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(0.99 * len(xs)))]
    return statistics.fmean(xs) * 1e3, p99 * 1e3, xs[-1] * 1e3


def _fmt(xs: list[float]) -> str:
    mean, p99, mx = _stats(xs)
    return f"{mean:8.3f} {p99:8.3f} {mx:8.3f}"


def cmd(
    seeds: int = typer.Option(2, help="simulation seeds per setting for the captured snapshots"),
    reps: int = typer.Option(3, help="timed calls per snapshot"),
    large: str = typer.Option("64,256,1024", help="cluster sizes built by tiling 8-GPU snapshots"),
    large_samples: int = typer.Option(20, help="tiled snapshots per large size"),
) -> None:
    """Decision time of the genserve policy (mean / p99 / max per call, ms), with SRTF's on the same snapshots."""
    from genserve.scheduling.dp import GenServePolicy
    from genserve.scheduling.registry import make_policy

    ref = make_policy("srtf")  # the cheapest preemptive baseline, timed side by side as a yardstick

    snaps = capture(seeds=seeds)
    pol = GenServePolicy()
    for s in snaps[:200]:
        pol.plan(s)  # warm the profile memo
    by: dict[int, list[Snapshot]] = {}
    for s in snaps:
        by.setdefault(min(len(s.videos), 13), []).append(s)
    typer.echo(f"N = 8: {len(snaps)} snapshots captured from simulations (paper profile); best of {reps} calls each")
    head = f"{'mean':>8} {'p99':>8} {'max':>8}"
    typer.echo(f"{'videos':>8} {'images':>7} {'rounds':>7}   wall ms: {head}   cpu ms: {head}")
    all_w: list[float] = []
    all_c: list[float] = []
    sel_w: list[float] = []
    sel_c: list[float] = []
    sel: list[Snapshot] = []
    for n in sorted(by):
        group = by[n]
        w, c = _time(pol, group, reps)
        all_w += w
        all_c += c
        if 1 <= n <= 12:
            sel_w += w
            sel_c += c
            sel += group
        imgs = statistics.fmean(len(s.images) for s in group)
        label = f"{n}" if n < 13 else "13+"
        typer.echo(f"{label:>8} {imgs:7.1f} {len(group):7d}            {_fmt(w)}           {_fmt(c)}")
    typer.echo(f"{'all':>8} {'':7} {len(snaps):7d}            {_fmt(all_w)}           {_fmt(all_c)}")
    if sel_w:
        _, ref_c = _time(ref, sel, reps)
        typer.echo(f"1-12 video groups: wall {_fmt(sel_w)}, cpu {_fmt(sel_c)} (mean p99 max, ms)")
        typer.echo(f"  srtf, same snapshots: cpu {_fmt(ref_c)}; genserve / srtf (mean) = "
                   f"{statistics.fmean(sel_c) / max(1e-12, statistics.fmean(ref_c)):.1f}x")
    rng = random.Random(0)
    busy = [s for s in snaps if s.videos]
    typer.echo(f"\n{'GPUs':>6} {'videos':>7} {'images':>7}   wall ms: {head}   cpu ms: {head}   "
               f"srtf cpu ms mean   genserve / srtf")
    for n in [int(x) for x in large.split(",") if x.strip()]:
        tiles = [tile([rng.choice(busy) for _ in range(n // 8)]) for _ in range(large_samples)]
        pol.plan(tiles[0])  # warm per-cluster tables, for both policies alike
        ref.plan(tiles[0])
        w, c = _time(pol, tiles, reps)
        _, rc = _time(ref, tiles, reps)
        nv = statistics.fmean(len(s.videos) for s in tiles)
        ni = statistics.fmean(len(s.images) for s in tiles)
        r_mean = statistics.fmean(rc)
        typer.echo(f"{n:>6} {nv:7.0f} {ni:7.0f}            {_fmt(w)}           {_fmt(c)}   {1e3 * r_mean:16.3f}   "
                   f"{statistics.fmean(c) / max(1e-12, r_mean):14.1f}x")
