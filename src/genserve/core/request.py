"""Requests and their life cycle."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from genserve.core.errors import IllegalTransition, ValidationError


class Modality(str, enum.Enum):
    IMAGE = "image"
    VIDEO = "video"


class RequestStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RequestStatus.DONE, RequestStatus.FAILED, RequestStatus.CANCELLED})

# RUNNING -> QUEUED is the fault path: the worker died before any state was kept (e.g. an image batch).
# Only videos can be PAUSED; that is checked in Request.transition.
_ALLOWED: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.QUEUED: frozenset({RequestStatus.RUNNING, RequestStatus.FAILED, RequestStatus.CANCELLED}),
    RequestStatus.RUNNING: frozenset(
        {RequestStatus.PAUSED, RequestStatus.DONE, RequestStatus.FAILED, RequestStatus.CANCELLED, RequestStatus.QUEUED}
    ),
    RequestStatus.PAUSED: frozenset({RequestStatus.RUNNING, RequestStatus.FAILED, RequestStatus.CANCELLED}),
    RequestStatus.DONE: frozenset(),
    RequestStatus.FAILED: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
}


def check_transition(src: RequestStatus, dst: RequestStatus) -> None:
    """Raise IllegalTransition unless src -> dst is allowed."""
    if dst not in _ALLOWED[src]:
        raise IllegalTransition(f"illegal transition {src.value} -> {dst.value}")


@dataclass
class Request:
    """One generation request.

    Times are seconds on the engine's clock (virtual in the simulator, monotonic wall time when serving).
    `deadline` is absolute: the request meets its SLO when it completes at or before it.
    For images `frames` is 1.
    """

    id: str
    modality: Modality
    model: str
    prompt: str
    width: int
    height: int
    steps: int
    seed: int
    arrival: float
    deadline: float
    frames: int = 1
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    status: RequestStatus = RequestStatus.QUEUED
    history: list[tuple[float, RequestStatus]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.modality = Modality(self.modality)
        if not self.id:
            raise ValidationError("request id must not be empty")
        if self.width <= 0 or self.height <= 0:
            raise ValidationError(f"width and height must be positive, got {self.width}x{self.height}")
        if self.steps <= 0:
            raise ValidationError(f"steps must be positive, got {self.steps}")
        if self.frames <= 0:
            raise ValidationError(f"frames must be positive, got {self.frames}")
        if self.modality is Modality.IMAGE and self.frames != 1:
            raise ValidationError(f"an image request has frames=1, got {self.frames}")
        if self.deadline < self.arrival:
            raise ValidationError(f"deadline {self.deadline} is before arrival {self.arrival}")

    @property
    def is_video(self) -> bool:
        return self.modality is Modality.VIDEO

    @property
    def slo_s(self) -> float:
        """The latency budget: deadline minus arrival."""
        return self.deadline - self.arrival

    def transition(self, dst: RequestStatus, now: float) -> None:
        """Move to `dst`, raising IllegalTransition when the life cycle forbids it."""
        if type(dst) is not RequestStatus:  # (the controller passes members: skip the slow enum lookup)
            dst = RequestStatus(dst)
        if dst not in _ALLOWED[self.status]:
            check_transition(self.status, dst)  # raises
        if dst is RequestStatus.PAUSED and not self.is_video:
            raise IllegalTransition("only video requests can be paused")
        self.history.append((now, dst))
        self.status = dst
