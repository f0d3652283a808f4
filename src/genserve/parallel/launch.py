"""Run a function on N local ranks (spawned processes) in one torch.distributed world, with a hard timeout.

For tests and benchmarks on one machine: `run_ranks(fn, world_size, args=(...))` returns the list of what `fn`
returned on each rank. A rank that raises, dies or outlives the timeout fails the whole call, and every child
still alive is terminated (then killed), so no process survives a failure.
"""

from __future__ import annotations

import os
import queue as queue_mod
import time
import traceback
from typing import Any, Callable

import torch.multiprocessing as mp

from genserve.parallel.groups import free_port
from genserve.parallel.state import unpack_state

__all__ = ["run_ranks", "RankFailure", "last_pids"]

# Modules the forkserver imports once, so that each rank does not pay for `import diffusers` again (seconds each).
PRELOAD = [
    "torch",
    "torch.distributed",
    "diffusers.models.transformers.transformer_wan",
    "diffusers.schedulers.scheduling_unipc_multistep",
    "genserve.parallel.checks",
    # the worker path through genserve's model adapters (tiny-wan pipeline: UMT5 text encoder, Wan VAE)
    "diffusers.pipelines.wan.pipeline_wan",
    "transformers.models.umt5.modeling_umt5",
    "genserve.models.registry",
]

_last_pids: list[int] = []


def last_pids() -> list[int]:
    """Process ids of the ranks of the latest run_ranks call (for checking that none survived)."""
    return list(_last_pids)


class RankFailure(RuntimeError):
    """A rank raised, exited abnormally or timed out."""


def _orphan_watchdog(launcher: int, period_s: float = 1.0) -> None:
    """Exit this rank soon after the launching process dies (even by SIGKILL, when no cleanup code runs)."""
    import threading

    def watch():
        while True:
            time.sleep(period_s)
            try:
                os.kill(launcher, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True, name="orphan-watchdog").start()


def _child(fn, rank, world_size, port, backend, threads, args, results, launcher, init_method=None):
    import torch

    _orphan_watchdog(launcher)

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from genserve.parallel.groups import destroy_world, init_world
    from genserve.parallel.state import pack_state

    try:
        init_world(rank, world_size, port=port, init_method=init_method, backend=backend, timeout_s=60.0)
        out = fn(rank, world_size, *args)
        # as bytes: a tensor put on the queue directly travels as a shared-memory handle that dies with this process
        results.put((rank, True, pack_state(out)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put((rank, False, traceback.format_exc()))
    finally:
        try:
            destroy_world()
        except Exception:  # noqa: BLE001
            pass


def run_ranks(
    fn: Callable[..., Any],
    world_size: int,
    *,
    args: tuple = (),
    timeout_s: float = 90.0,
    backend: str = "gloo",
    threads: int = 1,
    port: int | None = None,
    start_method: str = "forkserver",
    init_method: str | None = None,
) -> list[Any]:
    """Start `world_size` processes; rank r runs `fn(r, world_size, *args)` after joining the world.

    `fn` must be importable (a module-level function). Results must be picklable. The default start method,
    forkserver, forks every rank from a clean server process that has imported torch and diffusers once
    (`PRELOAD`); "spawn" starts each rank from scratch (slower, same semantics). `init_method` (e.g.
    "file:///tmp/x") replaces the default tcp://127.0.0.1:<free port> rendezvous.
    """
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    results = ctx.Queue()
    port = port or free_port()
    procs = [
        ctx.Process(target=_child, args=(fn, r, world_size, port, backend, threads, args, results, os.getpid(), init_method), daemon=True)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    _last_pids[:] = [p.pid for p in procs]
    out: dict[int, Any] = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) + len(errors) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RankFailure(
                    f"timeout after {timeout_s:.0f}s; ranks done: {sorted(out)}; errors: {errors}"
                )
            try:
                rank, ok, val = results.get(timeout=min(remaining, 0.5))
            except queue_mod.Empty:
                dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0) and i not in out]
                if dead and not errors:
                    # give a raising rank a moment to report its traceback
                    try:
                        rank, ok, val = results.get(timeout=2.0)
                    except queue_mod.Empty:
                        raise RankFailure(f"ranks {dead} exited with codes {[procs[i].exitcode for i in dead]}")
                else:
                    continue
            if ok:
                out[rank] = unpack_state(val)
            else:
                errors.append(f"rank {rank}:\n{val}")
                break  # the others are probably blocked in a collective with the failed rank
        if errors:
            raise RankFailure("\n".join(errors))
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
        return [out[r] for r in range(world_size)]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        results.close()
