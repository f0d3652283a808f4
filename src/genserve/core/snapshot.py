"""What a policy sees each round: a frozen view of the cluster and of every live request.

A policy is a pure function `plan(snapshot) -> Plan`. The snapshot carries the latency profile so the
policy can estimate remaining time; it never carries clocks, devices or tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from genserve.core.request import RequestStatus

if TYPE_CHECKING:
    from genserve.profiles import Profile


@dataclass(frozen=True)
class ClusterSpec:
    """N GPUs in nodes of `gpus_per_node`; SP groups are aligned blocks of a valid degree inside one node."""

    num_gpus: int
    gpus_per_node: int = 8
    sp_degrees: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        if self.num_gpus <= 0:
            raise ValueError(f"num_gpus must be positive, got {self.num_gpus}")
        if self.gpus_per_node <= 0:
            raise ValueError(f"gpus_per_node must be positive, got {self.gpus_per_node}")
        degrees = tuple(sorted(set(self.sp_degrees)))
        if not degrees or degrees[0] != 1:
            raise ValueError(f"sp_degrees must include 1, got {self.sp_degrees}")
        object.__setattr__(self, "sp_degrees", degrees)

    @cached_property  # the spec is frozen; read on hot paths (controller, dispatcher, policies)
    def usable_degrees(self) -> tuple[int, ...]:
        """Degrees whose aligned block fits in one node and in the cluster."""
        limit = min(self.gpus_per_node, self.num_gpus)
        return tuple(p for p in self.sp_degrees if p <= limit and self.gpus_per_node % p == 0)

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node

    def groups(self, degree: int) -> list[tuple[int, ...]]:
        """Every aligned block of `degree` GPUs (start a multiple of degree, inside one node)."""
        return self._groups[degree]

    def is_valid_group(self, gpus: tuple[int, ...]) -> bool:
        if type(gpus) is tuple and gpus in self._group_set:  # the usual case: already in order (no sort)
            return True
        p = len(gpus)
        return p in self._groups and tuple(sorted(gpus)) in self._group_set

    @cached_property
    def _groups(self) -> dict[int, list[tuple[int, ...]]]:
        out: dict[int, list[tuple[int, ...]]] = {}
        for p in self.usable_degrees:
            out[p] = [
                tuple(range(s, s + p))
                for s in range(0, self.num_gpus - p + 1, p)
                if self.node_of(s) == self.node_of(s + p - 1)
            ]
        return out

    @cached_property
    def _group_set(self) -> frozenset[tuple[int, ...]]:
        return frozenset(g for gs in self._groups.values() for g in gs)


@dataclass(frozen=True)
class ImageView:
    """A queued image request."""

    id: str
    model: str
    width: int
    height: int
    steps: int
    arrival: float
    deadline: float

    @property
    def batch_key(self) -> tuple[str, int, int, int]:
        """Images may share a batch (one forward pass) only when these agree."""
        return (self.model, self.width, self.height, self.steps)


@dataclass(frozen=True)
class VideoView:
    """A video that is queued, running or paused.

    `gpus` is its current SP group while running (empty otherwise). `home_gpu` is where its paused state lives
    (its last leader), None if it never ran. `busy_until` is when its in-flight step ends; at or before `now`
    the video is at a step boundary and a new action takes effect at once. `decoding` videos are in the VAE
    decode on gpus[0]: not preemptible.
    """

    id: str
    model: str
    width: int
    height: int
    frames: int
    steps: int
    steps_done: int
    arrival: float
    deadline: float
    status: RequestStatus
    gpus: tuple[int, ...] = ()
    home_gpu: int | None = None
    busy_until: float = 0.0
    decoding: bool = False
    pauses: int = 0
    sp_changes: int = 0

    @property
    def remaining_steps(self) -> int:
        return self.steps - self.steps_done

    @property
    def degree(self) -> int:
        return len(self.gpus)


@dataclass(frozen=True)
class Snapshot:
    """The state a policy decides on.

    `busy_until[g]` is when GPU g finishes non-preemptible work (an image batch or a video decode); a value
    at or before `now` means no such work. GPUs of running videos are listed in the video views.
    """

    now: float
    cluster: ClusterSpec
    profile: "Profile"
    images: tuple[ImageView, ...] = ()
    videos: tuple[VideoView, ...] = ()
    busy_until: tuple[float, ...] = ()
    last_image_arrival: float | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.busy_until:
            object.__setattr__(self, "busy_until", (float("-inf"),) * self.cluster.num_gpus)
        if len(self.busy_until) != self.cluster.num_gpus:
            raise ValueError("busy_until must have one entry per GPU")

    def video_gpus(self) -> set[int]:
        """GPUs held by running videos."""
        return {g for v in self.videos if v.status is RequestStatus.RUNNING for g in v.gpus}

    def free_gpus(self) -> list[int]:
        """GPUs neither running a video nor busy with non-preemptible work now."""
        held = self.video_gpus()
        return [g for g in range(self.cluster.num_gpus) if g not in held and self.busy_until[g] <= self.now]

    def paused_per_gpu(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for v in self.videos:
            if v.status is RequestStatus.PAUSED and v.home_gpu is not None:
                counts[v.home_gpu] = counts.get(v.home_gpu, 0) + 1
        return counts
