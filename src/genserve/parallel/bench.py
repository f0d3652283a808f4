"""Micro-benchmarks of elastic SP: one denoising step at degree 1/2/4, and moving a video state to a new group.

`measure_sp(world=4)` starts the ranks itself (gloo on CPU) and returns a dict; `rank_bench` is the per-rank
program, usable inside an existing world too. Only one group runs at a time (the others wait at a barrier), so
the numbers are not disturbed by other groups competing for the same cores.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from genserve.core.snapshot import ClusterSpec
from genserve.parallel.checks import denoise_step, init_video_state, tiny_wan
from genserve.parallel.groups import GroupRegistry
from genserve.parallel.state import move_state, pack_state

__all__ = ["rank_bench", "measure_sp"]


def rank_bench(rank: int, world: int, *, degrees=(1, 2, 4), shape=(3, 16, 16), heads: int = 8, head_dim: int = 12,
               layers: int = 2, repeats: int = 5, warmup: int = 1, mode: str = "auto") -> dict:
    """Time one CFG denoising step (two forwards + scheduler step) at each degree on the group (0..p-1), and
    move_state from rank 0 to each group, as seen by the slowest member (max over ranks, median over repeats)."""
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=world))
    model = tiny_wan(heads=heads, head_dim=head_dim, layers=layers)
    frames, height, width = shape
    steps = warmup + repeats + 1
    result: dict = {"step_s": {}, "move_s": {}, "tokens": frames * height * width // 4,
                    "shape": list(shape), "heads": heads, "world": world}
    base = init_video_state(model, steps, frames, height, width)
    result["state_bytes"] = len(pack_state(base))

    def timed(fn) -> float:
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)  # slowest rank
        return dt.item()

    for p in degrees:
        if p > world:
            continue
        gpus = tuple(range(p))
        group = reg.group(gpus)
        state = init_video_state(model, steps, frames, height, width)
        times = []
        for i in range(warmup + repeats):
            def run():
                nonlocal state
                if rank in gpus:
                    state = denoise_step(model, state, group)
            dt = timed(run)
            if i >= warmup:
                times.append(dt)
        result["step_s"][p] = statistics.median(times)

    # state moves: from rank 0 (the old leader) to (0..p-1), and to a group rank 0 is not in
    targets = [tuple(range(p)) for p in degrees if 1 < p <= world]
    if world >= 4:
        targets.append((2, 3))
    if world >= 2:
        targets.append((1,))
    for gpus in targets:
        times = []
        for i in range(warmup + repeats):
            def run():
                if rank == 0 or rank in gpus:
                    move_state(base if rank == 0 else None, 0, gpus, reg)
            dt = timed(run)
            if i >= warmup:
                times.append(dt)
        result["move_s"][",".join(map(str, gpus))] = statistics.median(times)
    return result


def measure_sp(world: int = 4, *, timeout_s: float = 300.0, **kwargs) -> dict:
    """Run `rank_bench` on `world` local CPU ranks (gloo, one thread each) and return rank 0's result."""
    from genserve.parallel.launch import run_ranks

    return run_ranks(_bench_entry, world, args=(kwargs,), timeout_s=timeout_s)[0]


def _bench_entry(rank: int, world: int, kwargs: dict) -> dict:
    return rank_bench(rank, world, **kwargs)


if __name__ == "__main__":  # python -m genserve.parallel.bench
    import json

    print(json.dumps(measure_sp(), indent=2))
