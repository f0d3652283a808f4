"""Elastic sequence parallelism: the pre-created SP process groups, SP attention for the Wan video DiT, and
moving a video's state between groups. Imports torch (not part of the torch-free control plane).

Worker-side use (every rank, once at start):
    init_world(rank, world_size, port=PORT, backend="gloo")        # or nccl + device on CUDA
    registry = GroupRegistry(ClusterSpec(num_gpus=world_size, gpus_per_node=G))
Per step of a video on GPU set `gpus` (called by every rank of the set):
    noise_pred = sp_forward(transformer, latents, timestep, prompt_embeds, registry.group(gpus))
At a degree change / resume (called by the old holder and every rank of the new set):
    state = move_state(state, src=old_leader, dst=new_gpus, registry=registry)
See docs/parallel.md.
"""

from genserve.parallel.attention import choose_mode, ring_attention, sp_attention, ulysses_attention
from genserve.parallel.groups import (
    GroupRegistry,
    SPGroup,
    default_backend,
    destroy_world,
    free_port,
    init_world,
)
from genserve.parallel.state import move_bytes, move_state, pack_state, unpack_state
from genserve.parallel.wan import SPWanAttnProcessor, install_sp_processors, sp_forward, sp_group

__all__ = [
    "GroupRegistry",
    "SPGroup",
    "SPWanAttnProcessor",
    "choose_mode",
    "default_backend",
    "destroy_world",
    "free_port",
    "init_world",
    "install_sp_processors",
    "move_bytes",
    "move_state",
    "pack_state",
    "ring_attention",
    "sp_attention",
    "sp_forward",
    "sp_group",
    "ulysses_attention",
    "unpack_state",
]
