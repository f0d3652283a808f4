"""Events that executors report to the controller (and the simulator schedules on its clock)."""

from __future__ import annotations

from dataclasses import dataclass

from genserve.core.request import Request


@dataclass(frozen=True)
class Arrival:
    time: float
    request: Request


@dataclass(frozen=True)
class StepDone:
    """A video finished denoising step `step` (0-based) on `gpus`; `duration` is the measured step time.

    `final` is False only for progress reports inside a multi-step run (`Executor.run_step(..., count=n)`):
    the video is at a step boundary, waiting for the controller, only when `final` is True.
    """

    time: float
    request_id: str
    step: int
    gpus: tuple[int, ...]
    duration: float
    final: bool = True


@dataclass(frozen=True)
class VideoDone:
    """A video finished its VAE decode: the output exists."""

    time: float
    request_id: str
    gpu: int


@dataclass(frozen=True)
class BatchDone:
    """An image batch finished end to end on `gpu`."""

    time: float
    request_ids: tuple[str, ...]
    gpu: int
    duration: float


@dataclass(frozen=True)
class Failed:
    """Work for `request_ids` failed on `gpus`; `retryable` when the request can run again elsewhere."""

    time: float
    request_ids: tuple[str, ...]
    gpus: tuple[int, ...]
    reason: str
    retryable: bool = True


Event = Arrival | StepDone | VideoDone | BatchDone | Failed
