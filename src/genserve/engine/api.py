"""What the HTTP server needs from a running engine, whatever executes underneath.

An engine runs the Controller on the real clock (a background thread) over some executor: simulated devices
(timed from a profile, no outputs), local worker processes with real diffusers models, or Ray actors.
The server only talks to this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from genserve.core.request import Request, RequestStatus


@dataclass(frozen=True)
class RequestUpdate:
    """A request's state as the engine last saw it. `outputs` are file paths once status is DONE
    (one PNG per image request, one MP4 per video), empty for executors that make no files."""

    request_id: str
    status: RequestStatus
    steps_done: int
    steps_total: int
    error: str | None = None
    outputs: tuple[str, ...] = ()
    finished_at: float | None = None  # engine clock
    met_deadline: bool | None = None

    @property
    def progress(self) -> int:
        """0-100 from real step counts; 100 only once the output exists."""
        if self.status is RequestStatus.DONE:
            return 100
        if self.steps_total <= 0:
            return 0
        return min(99, int(100 * self.steps_done / self.steps_total))


UpdateCallback = Callable[[RequestUpdate], None]


@dataclass
class EngineStats:
    """Counters for /metrics (monotonic counts, current gauges)."""

    queued: dict[str, int] = field(default_factory=dict)  # modality -> queued now
    running: dict[str, int] = field(default_factory=dict)  # modality -> running now
    finished: dict[str, dict[str, int]] = field(default_factory=dict)  # modality -> status -> count
    slo_met: dict[str, int] = field(default_factory=dict)  # modality -> requests done within deadline
    preemptions: int = 0
    sp_changes: int = 0
    gpu_busy_share: list[float] = field(default_factory=list)  # per GPU, since start
    step_seconds: list[float] = field(default_factory=list)  # recent measured video step times (drained)
    profile_correction: dict[str, float] = field(default_factory=dict)  # online correction factors (profiles/online)


class ServingEngine(Protocol):
    """Thread-safe: the server calls these from its event loop's threads."""

    @property
    def now(self) -> float: ...  # the engine clock (seconds), for deadlines

    def start(self) -> None: ...

    def submit(self, request: Request, on_update: UpdateCallback | None = None) -> None:
        """Admit a request (raises ValidationError/ProfileError with a user-facing message).
        `on_update` is called (from an engine thread) on every step and status change."""

    def cancel(self, request_id: str) -> bool:
        """Cancel at the next step boundary; frees its GPUs. False if unknown or already finished."""

    def status(self, request_id: str) -> RequestUpdate | None: ...

    def stats(self) -> EngineStats: ...

    def close(self, drain: bool = False) -> None:
        """Stop; with drain, finish admitted work first. Leaves no worker process behind."""
