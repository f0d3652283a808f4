"""The Plan a policy returns: one action per queued, running or paused request, plus image batches."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ActionKind(str, enum.Enum):
    HOLD = "hold"  # queued: stay queued; running video: pause at its next step boundary; paused: stay paused
    START = "start"  # queued video: start on `gpus`
    RESUME = "resume"  # paused video: resume on `gpus` (any degree)
    CONTINUE = "continue"  # running video: keep its current `gpus`
    RECONFIGURE = "reconfigure"  # running video: move to another GPU set / SP degree at the next boundary
    BATCH = "batch"  # queued image: member of plan.batches[batch]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    gpus: tuple[int, ...] = ()
    batch: int | None = None

    @property
    def degree(self) -> int:
        return len(self.gpus)


HOLD = Action(ActionKind.HOLD)


@dataclass(frozen=True)
class ImageBatch:
    """Same-resolution images that run as one forward pass on one GPU."""

    request_ids: tuple[str, ...]
    gpu: int


@dataclass
class Plan:
    """What every live request does until the next round.

    `wake_at` (optional): ask the engine for another round no later than this time even if no event arrives
    (e.g. a batching policy waiting for more same-resolution images, or an idle-resume timer). None: no request.
    """

    actions: dict[str, Action] = field(default_factory=dict)
    batches: list[ImageBatch] = field(default_factory=list)
    wake_at: float | None = None

    def add_batch(self, request_ids: tuple[str, ...] | list[str], gpu: int) -> None:
        index = len(self.batches)
        self.batches.append(ImageBatch(tuple(request_ids), gpu))
        for rid in request_ids:
            self.actions[rid] = Action(ActionKind.BATCH, (gpu,), index)

    def gpus_used(self) -> list[int]:
        """Every GPU the plan allocates (repeats mean a double booking)."""
        used = [g for a in self.actions.values() if a.kind not in (ActionKind.HOLD, ActionKind.BATCH) for g in a.gpus]
        used.extend(b.gpu for b in self.batches)
        return used
