"""The multi-process halves of `genserve models verify`: resume in another worker process, and SP over gloo.

The worker processes get the parent's transformer weights through torch.multiprocessing (shared memory, no
copy and no rebuild) and only what a step needs: the transformer(s) and the scheduler config. State travels as
State.to_bytes(), exactly as between genserve workers.
"""

from __future__ import annotations

import torch

from genserve.models import catalog
from genserve.models.state import State
from genserve.parallel.launch import run_ranks

STEP_PARTS = ("transformer", "transformer_2", "scheduler")


def _step_parts(adapter) -> dict:
    comps = adapter.pipe.components
    return {k: comps[k] for k in STEP_PARTS if k in comps}


def _worker_adapter(name: str, parts: dict, text_len: int):
    """The family's adapter over a pipeline holding only what step() needs (no text encoders, no VAE)."""
    import diffusers

    e = catalog.entry(name)
    cls = getattr(diffusers, e.pipeline)
    empty = {k: None for k in cls._get_signature_keys(cls)[0] if k not in parts}
    pipe = cls(**empty, **parts, **e.pipeline_config)
    return catalog.bundled_adapter(name, pipe=pipe, text_len=text_len)


def rank_resume(rank: int, world: int, name: str, parts: dict, blobs: dict, text_len: int) -> dict:
    torch.set_num_threads(1)
    adapter = _worker_adapter(name, parts, text_len)
    out = {}
    for k, blob in sorted(blobs.items()):
        state = adapter.resume(State.from_bytes(blob, adapter.device))
        while not state.done:
            adapter.step(state)
        out[k] = state.latents
    return out


def resume_in_process(adapter, e: catalog.Entry, blobs: dict, timeout_s: float = 600) -> dict:
    """Final latents per pause point k, each resumed from its bytes in a fresh worker process."""
    return run_ranks(rank_resume, 1, args=(e.name, _step_parts(adapter), blobs, adapter.max_sequence_length),
                     timeout_s=timeout_s)[0]


def rank_sp(rank: int, world: int, name: str, parts: dict, blob: bytes, runs: list, text_len: int) -> dict:
    from genserve.core.snapshot import ClusterSpec
    from genserve.parallel.groups import GroupRegistry
    from genserve.parallel.wan import sp_group

    torch.set_num_threads(1)
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=world))
    adapter = _worker_adapter(name, parts, text_len)
    models = [adapter.pipe.transformer, getattr(adapter.pipe, "transformer_2", None)]
    out = {}
    for p, mode in runs:
        if rank >= p:
            continue
        state = State.from_bytes(blob, adapter.device)
        group = reg.group(tuple(range(p)))
        while not state.done:
            with sp_group(models, group, mode=mode):
                adapter.step(state)
        if rank == 0:
            out[(p, mode)] = state.latents
    return out


def sp_runs(adapter, e: catalog.Entry, req: dict, degrees: list[int], timeout_s: float = 600) -> dict:
    """Final latents per (degree, mode) of the whole denoising loop under sp_group. Each degree runs in the mode
    'auto' picks; where that is Ulysses, the largest degree also runs forced ring attention (both paths)."""
    runs = [(p, e.sp_modes([p])[p]) for p in sorted(degrees)]
    top = max(degrees)
    if e.sp_modes([top])[top] == "ulysses":
        runs.append((top, "ring"))
    blob = adapter.prepare(req).to_bytes()
    got = run_ranks(rank_sp, top, args=(e.name, _step_parts(adapter), blob, runs, adapter.max_sequence_length),
                    timeout_s=timeout_s)
    return got[0]
