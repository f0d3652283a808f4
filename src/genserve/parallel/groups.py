"""The torch.distributed world of a worker pool and the pre-created sequence-parallel groups.

Every rank of the world is one device (a GPU, or a CPU worker slot). At start-up every rank builds the same
`GroupRegistry`, which calls `dist.new_group` for every aligned block of degree 2, 4, 8 (the blocks of
`ClusterSpec.groups(p)`), on every rank and in the same order, as torch.distributed requires. After that a change
of a video's SP degree is a dictionary lookup (`registry.group(gpus)`), never a new communicator.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genserve.core.snapshot import ClusterSpec

__all__ = [
    "SPGroup",
    "GroupRegistry",
    "free_port",
    "default_backend",
    "init_world",
    "destroy_world",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_backend(device: torch.device | str | None = None) -> str:
    """nccl for CUDA devices, gloo otherwise."""
    if device is not None and torch.device(device).type == "cuda":
        return "nccl"
    return "gloo"


def init_world(
    rank: int,
    world_size: int,
    *,
    init_method: str | None = None,
    port: int | None = None,
    backend: str = "gloo",
    timeout_s: float = 60.0,
    device: torch.device | str | None = None,
) -> None:
    """Join the default process group as `rank` of `world_size`.

    `init_method` is any torch.distributed URL (`tcp://127.0.0.1:PORT`, `file:///path`); without it
    `tcp://127.0.0.1:{port}` is used, so every rank must be given the same port (pick it once with `free_port()`
    in the parent). `timeout_s` bounds every collective, so a dead peer turns into an error instead of a hang.
    For nccl pass the rank's `device` (cuda:i) so the communicator binds to it.
    """
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialised in this process")
    if init_method is None:
        if port is None:
            raise ValueError("give init_method or port")
        init_method = f"tcp://127.0.0.1:{port}"
    kwargs = {}
    if backend == "nccl" and device is not None:
        torch.cuda.set_device(torch.device(device))
        kwargs["device_id"] = torch.device(device)
    dist.init_process_group(
        backend=backend,
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        **kwargs,
    )


def destroy_world() -> None:
    """Tear down every process group of this process (no-op if none)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True, eq=False)
class SPGroup:
    """One sequence-parallel group: its global ranks (sorted; ranks[0] is the leader) and its communicator.

    `pg` is None for a degree-1 group (nothing to communicate). `rank` is this process's global rank.
    """

    ranks: tuple[int, ...]
    pg: dist.ProcessGroup | None
    rank: int

    @property
    def size(self) -> int:
        return len(self.ranks)

    @property
    def leader(self) -> int:
        return self.ranks[0]

    @property
    def is_member(self) -> bool:
        return self.rank in self.ranks

    @property
    def local_rank(self) -> int:
        """Index of this process in the group (its sequence shard); raises if not a member."""
        try:
            return self.ranks.index(self.rank)
        except ValueError:
            raise RuntimeError(f"rank {self.rank} is not in SP group {self.ranks}") from None

    def __repr__(self) -> str:
        return f"SPGroup(ranks={self.ranks}, rank={self.rank})"


class GroupRegistry:
    """All SP groups of a cluster, created once, collectively, on every rank.

    Build it on every rank right after `init_world`, with the same `ClusterSpec` (num_gpus must equal the world
    size). `group(gpus)` returns the pre-created `SPGroup`; a degree-1 "group" needs no communicator and is
    made on demand.
    """

    def __init__(self, cluster: ClusterSpec, *, backend: str | None = None) -> None:
        if not dist.is_initialized():
            raise RuntimeError("call init_world() before building the GroupRegistry")
        world = dist.get_world_size()
        if cluster.num_gpus != world:
            raise ValueError(f"cluster has {cluster.num_gpus} GPUs but the world has {world} ranks")
        self.cluster = cluster
        self.rank = dist.get_rank()
        self.backend = backend or dist.get_backend()
        self._groups: dict[tuple[int, ...], SPGroup] = {}
        # Same order on every rank: degrees ascending, blocks ascending. new_group is collective over the world.
        for p in cluster.usable_degrees:
            if p == 1:
                continue
            for gpus in cluster.groups(p):
                pg = dist.new_group(ranks=list(gpus), backend=self.backend)
                self._groups[gpus] = SPGroup(gpus, pg if self.rank in gpus else None, self.rank)

    @property
    def world_size(self) -> int:
        return self.cluster.num_gpus

    def group(self, gpus) -> SPGroup:
        """The pre-created group for this GPU set (any order); KeyError if it is not an aligned block."""
        key = tuple(sorted(int(g) for g in gpus))
        if len(key) == 1:
            if not 0 <= key[0] < self.world_size:
                raise KeyError(f"rank {key[0]} outside the world of {self.world_size}")
            return SPGroup(key, None, self.rank)
        try:
            return self._groups[key]
        except KeyError:
            raise KeyError(f"{key} is not a pre-created SP group; valid: {sorted(self._groups)}") from None

    def groups(self, degree: int | None = None) -> list[SPGroup]:
        """The pre-created groups (of one degree, or all of degree >= 2)."""
        return [g for k, g in self._groups.items() if degree is None or len(k) == degree]

    def __contains__(self, gpus) -> bool:
        key = tuple(sorted(int(g) for g in gpus))
        return len(key) == 1 or key in self._groups


def env_rank_world() -> tuple[int, int]:
    """RANK / WORLD_SIZE from the environment (torchrun style), for callers that launch that way."""
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
