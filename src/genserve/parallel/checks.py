"""Per-rank programs that exercise the SP machinery for real (used by tests/parallel and by benchmarks).

Each `rank_*` function runs inside one rank of a world started by `launch.run_ranks` and returns plain data
(tensors, floats) to the parent, which does the asserting.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.distributed as dist

from genserve.core.snapshot import ClusterSpec
from genserve.parallel.groups import GroupRegistry
from genserve.parallel.state import move_state, pack_state, unpack_state
from genserve.parallel.wan import sp_forward

__all__ = [
    "tiny_wan",
    "make_inputs",
    "wan_scheduler",
    "init_video_state",
    "denoise_step",
    "rank_registry",
    "rank_sp_equivalence",
    "rank_elastic_loop",
    "rank_adapter_loop",
    "drive_elastic",
]


def tiny_wan(heads: int = 8, head_dim: int = 12, layers: int = 2, seed: int = 1, in_channels: int = 16,
             text_dim: int = 32):
    """A small WanTransformer3DModel with random weights, identical in every process (fixed seed).

    The default (8 heads of dim 12) matches genserve's tiny-wan config; pick a head count that does not divide
    by the SP degree to exercise ring attention.
    """
    from diffusers import WanTransformer3DModel

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=in_channels,
            out_channels=in_channels, text_dim=text_dim, freq_dim=32, ffn_dim=4 * heads * head_dim // 2,
            num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
        )
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def make_inputs(model, frames: int, height: int, width: int, *, text_len: int = 8, batch: int = 1,
                per_token_timestep: bool = False, seed: int = 0):
    """Latents [B, C, F, H, W], a timestep ([B] or per token [B, S]) and prompt embeddings, seeded."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    lat = torch.randn(batch, cfg.in_channels, frames, height, width, generator=g)
    text = torch.randn(batch, text_len, cfg.text_dim, generator=g)
    if per_token_timestep:
        p_t, p_h, p_w = cfg.patch_size
        s = (frames // p_t) * (height // p_h) * (width // p_w)
        ts = torch.rand(batch, s, generator=g) * 1000
    else:
        ts = torch.full((batch,), 637.0)
    return lat, ts, text


def wan_scheduler():
    """UniPC multistep with flow sigmas, as Wan ships it (same settings as genserve.models.tiny.wan_scheduler)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, solver_order=2,
        solver_type="bh2", lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace",
        num_train_timesteps=1000,
    )


def init_video_state(model, steps: int, frames: int, height: int, width: int, *, seed: int = 0,
                     text_len: int = 8) -> dict:
    """A fresh video state: noise latents, cond/uncond prompt embeddings, its own scheduler copy, step 0."""
    lat, _, text = make_inputs(model, frames, height, width, text_len=text_len, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    neg = torch.randn(text.shape, generator=g)
    sched = copy.deepcopy(wan_scheduler())
    sched.set_timesteps(steps)
    return {"latents": lat, "prompt_embeds": text, "negative_prompt_embeds": neg, "scheduler": sched, "step": 0}


def denoise_step(model, state: dict, group, *, guidance_scale: float = 5.0) -> dict:
    """One denoising step as WanPipeline does it (cond and uncond passes, CFG, scheduler step), on `group`."""
    sched = state["scheduler"]
    i = state["step"]
    t = sched.timesteps[i]
    lat = state["latents"]
    ts = t.expand(lat.shape[0])
    cond = sp_forward(model, lat, ts, state["prompt_embeds"], group)
    uncond = sp_forward(model, lat, ts, state["negative_prompt_embeds"], group)
    pred = uncond + guidance_scale * (cond - uncond)
    state["latents"] = sched.step(pred, t, lat, return_dict=False)[0]
    state["step"] = i + 1
    return state


# ---------------------------------------------------------------------------------------------------- rank programs


def rank_registry(rank: int, world: int, gpus_per_node: int) -> dict:
    """Build the registry; all-reduce the rank ids inside every group this rank belongs to."""
    t0 = time.perf_counter()
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=gpus_per_node))
    build_s = time.perf_counter() - t0
    sums = {}
    for g in reg.groups():
        if g.is_member:
            x = torch.tensor([float(rank)])
            dist.all_reduce(x, group=g.pg)
            sums[g.ranks] = x.item()
    t0 = time.perf_counter()
    for _ in range(1000):
        reg.group((0, 1))
    lookup_us = (time.perf_counter() - t0) * 1000  # 1000 lookups: ms total == us per lookup
    invalid = []
    for bad in [(1, 2), (0, 2), (0, 1, 2)]:
        try:
            reg.group(bad)
        except KeyError:
            invalid.append(bad)
    return {"groups": sorted(g.ranks for g in reg.groups()), "sums": sums, "build_s": build_s,
            "lookup_us": lookup_us, "rejected": invalid,
            "same_object": reg.group((1, 0)) is reg.group((0, 1))}


def rank_sp_equivalence(rank: int, world: int, cases: list[dict]) -> list[dict]:
    """For every case and every degree whose aligned block holds this rank: SP output vs the plain forward.

    A case: dict(heads, head_dim, frames, height, width, per_token_timestep=False, modes=("auto",), batch=1).
    Returns one row per (case, degree, mode) with the max abs diff and the output itself (for cross-rank checks).
    """
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=world))
    rows = []
    for ci, case in enumerate(cases):
        model = tiny_wan(heads=case["heads"], head_dim=case["head_dim"])
        lat, ts, text = make_inputs(model, case["frames"], case["height"], case["width"],
                                    batch=case.get("batch", 1), per_token_timestep=case.get("per_token_timestep", False))
        with torch.no_grad():
            ref = model(lat, ts, text, return_dict=False)[0]
        for p in reg.cluster.usable_degrees:
            if p == 1:
                continue
            gpus = tuple(range(rank // p * p, rank // p * p + p))
            group = reg.group(gpus)
            for mode in case.get("modes", ("auto",)):
                if mode == "ulysses" and case["heads"] % p:
                    continue
                out = sp_forward(model, lat, ts, text, group, mode=mode)
                rows.append({
                    "case": ci, "degree": p, "group": gpus, "mode": mode,
                    "resolved": "ulysses" if (mode == "ulysses" or (mode == "auto" and case["heads"] % p == 0))
                    else "ring",
                    "max_abs_diff": (out - ref).abs().max().item(), "ref_max_abs": ref.abs().max().item(),
                    "out": out,
                })
        # the processors are installed now: a plain call must still equal the reference bit for bit
        with torch.no_grad():
            again = model(lat, ts, text, return_dict=False)[0]
        rows.append({"case": ci, "degree": 1, "plain_after_install_equal": bool(torch.equal(again, ref))})
    return rows


def drive_elastic(rank: int, reg: GroupRegistry, plan: list, init, step, *, encode=pack_state,
                  decode=unpack_state) -> dict:
    """Drive one video through `plan`: a list of (gpus, n_steps) phases and the string "pause".

    The state starts on rank 0 (`init()` is called there only). At a phase change it moves from the current
    holder (the old leader, or the rank holding the paused bytes) to the new group with `move_state`; a pause
    encodes the state to bytes on the leader and every rank drops its live copy. `step(state, group)` runs one
    denoising step on every member. This is the protocol a worker follows; see docs/parallel.md.
    """
    state = init() if rank == 0 else None
    holder = 0             # global rank that holds the authoritative state
    current: tuple = (0,)  # current group (empty while paused)
    paused_blob = None
    snapshots = []         # (phase index, latents, step) on every member at the end of each phase
    moves = []
    for pi, phase in enumerate(plan):
        if phase == "pause":
            if rank == holder:
                paused_blob = encode(state)
            state = None
            current = ()
            continue
        gpus, n = tuple(phase[0]), phase[1]
        if gpus != current:
            if rank == holder or rank in gpus:
                src_obj = state
                if rank == holder and paused_blob is not None:
                    src_obj = decode(paused_blob)
                t0 = time.perf_counter()
                got = move_state(src_obj, holder, gpus, reg, encode=encode, decode=decode)
                moves.append((pi, time.perf_counter() - t0))
                state = got if rank in gpus else None
            paused_blob = None
            if rank not in gpus:
                state = None
            current, holder = gpus, gpus[0]
        if rank in gpus:
            group = reg.group(gpus)
            for _ in range(n):
                state = step(state, group)
            snapshots.append((pi, _latents(state).clone(), _step(state)))
    out = {"snapshots": snapshots, "moves": moves, "final": None, "final_step": None, "reference": None}
    if rank == holder:
        out["final"] = _latents(state)
        out["final_step"] = _step(state)
    return out


def _latents(state):
    return state["latents"] if isinstance(state, dict) else state.latents


def _step(state):
    return state["step"] if isinstance(state, dict) else state.step


def rank_elastic_loop(rank: int, world: int, plan: list, steps: int, shape: tuple[int, int, int],
                      heads: int = 8) -> dict:
    """`drive_elastic` on a tiny Wan transformer with a CFG loop of our own (dict state, pack_state bytes).
    The last rank also runs the same video uninterrupted at SP 1 as the reference."""
    t_start = time.perf_counter()
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=world))
    model = tiny_wan(heads=heads)
    frames, height, width = shape
    out = drive_elastic(rank, reg, plan, lambda: init_video_state(model, steps, frames, height, width),
                        lambda st, g: denoise_step(model, st, g))
    if rank == world - 1:
        ref = init_video_state(model, steps, frames, height, width)
        for _ in range(steps):
            ref = denoise_step(model, ref, None)
        out["reference"] = ref["latents"]
    out["wall_s"] = time.perf_counter() - t_start
    dist.barrier()
    return out


def rank_adapter_loop(rank: int, world: int, plan: list, req: dict, model_name: str = "tiny-wan") -> dict:
    """`drive_elastic` through genserve's own WanAdapter (models/): `adapter.step` under `sp_group`, the State
    moved as `State.to_bytes` / `State.from_bytes`. The last rank runs `adapter.step` uninterrupted as reference."""
    from genserve.models.registry import load_adapter
    from genserve.models.state import State
    from genserve.parallel.wan import sp_group

    t0 = time.perf_counter()
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=world))
    adapter = load_adapter(model_name)
    t_build = time.perf_counter() - t0
    models = [adapter.pipe.transformer, getattr(adapter.pipe, "transformer_2", None)]

    def step(state, group):
        with sp_group(models, group):
            return adapter.step(state)

    out = drive_elastic(rank, reg, plan, lambda: adapter.prepare(req), step,
                        encode=State.to_bytes, decode=lambda b: State.from_bytes(b, adapter.device))
    if rank == world - 1:
        ref = adapter.prepare(req)
        while not ref.done:
            adapter.step(ref)
        out["reference"] = ref.latents
    out["build_s"], out["wall_s"] = t_build, time.perf_counter() - t0
    dist.barrier()
    return out


def rank_fail(rank: int, world: int, how: str) -> None:
    """For launcher tests: rank 1 raises ('raise') or blocks forever in a collective the others skip ('hang')."""
    if rank == 1:
        if how == "raise":
            raise ValueError("deliberate failure on rank 1")
        if how == "hang":
            dist.recv(torch.empty(1), src=0)  # nobody sends
    time.sleep(0.2 if how == "raise" else 60)
    return None


def rank_loaded_modules(rank: int, world: int, names: list[str]) -> dict:
    """Which of `names` were already imported when this rank started (diagnoses the launcher's preload)."""
    import sys

    return {n: n in sys.modules for n in names}
