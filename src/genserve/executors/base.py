"""The Executor protocol: the commands the controller issues, and the events that come back.

The controller (`genserve.engine.controller.Controller`) is the one control plane; an executor is what runs the
work. `genserve.executors.sim.SimExecutor` charges profiled time on a virtual clock; a live executor (worker
processes running real diffusers models, one per device, SP groups across them; or Ray actors) implements the
same methods. Nothing here imports torch.

Contract
--------
* Every command returns at once (non-blocking). The work runs asynchronously; its outcome comes back as an
  event (`genserve.core.events`) passed to the `emit` callback given to `attach`. A live executor may call
  `emit` from any thread; the engine loop must then queue the events and hand them to the controller on its own
  thread (`Controller.on_event`, then `Controller.flush`). The simulator calls `emit` at the simulated time.
* Commands on one GPU run in the order they were issued (like a CUDA stream): a command whose GPU is still
  finishing earlier work (e.g. the microseconds of a pause) starts when that work ends. The controller never
  issues two overlapping pieces of work on a GPU except in that order-preserving sense.
* The controller issues one denoising step at a time (`run_step`) and decides at every step boundary what the
  video does next: continue, move (SP change), pause, or decode. That is what makes preemption and elastic SP
  possible; an executor must not run ahead.
* Optional, for speed (the simulator implements it; a live executor need not): multi-step runs. An executor with
  `supports_multi_step = True` accepts `run_step(..., count=n)` (steps step..step+n-1 back to back, one
  `StepDone(final=False)` per intermediate step if it wants to report progress, `final=True` after the last) and
  `truncate(request)` (finish the step running now, then stop: that step's StepDone is the final one). The
  controller uses them only when built with `coalesce_steps=True`, for policies that do not need a round at
  every step boundary.

Events
------
* `StepDone(time, request_id, step, gpus, duration, final=True)`: step `step` (0-based) finished on `gpus`; the
  video is at a step boundary; its state (latents, scheduler state, prompt embeddings) lives on `gpus[0]` (the
  leader). (`final=False`: a progress report inside a multi-step run; the run goes on.)
* `VideoDone(time, request_id, gpu)`: the VAE decode finished; the output exists; `gpu` is free.
* `BatchDone(time, request_ids, gpu, duration)`: an image batch finished end to end; `gpu` is free.
* `Failed(time, request_ids, gpus, reason, retryable)`: the work for these requests was lost (a worker died, an
  out-of-memory, a model error). `gpus` are free afterwards unless the executor says otherwise by failing them
  again. `retryable`: the request may run again from scratch elsewhere.
"""

from __future__ import annotations

import enum
from typing import Callable, Protocol, Sequence, runtime_checkable

from genserve.core.events import Event
from genserve.core.request import Request


class StepSetup(str, enum.Enum):
    """What must happen before a denoising step can run on its GPU set."""

    FRESH = "fresh"  # first step: text encode and latent init (on the leader), then the step
    CONTINUE = "continue"  # same GPU set as the previous step: nothing to do
    RESUME = "resume"  # the video was paused: restore its state from `source_gpu` onto the group (resume cost)
    RECONFIGURE = "reconfigure"  # the video was running on another GPU set / SP degree: move it (reconfigure cost)


@runtime_checkable
class Executor(Protocol):
    """Runs what the controller asks, reports through `emit`."""

    def attach(self, emit: Callable[[Event], None]) -> None:
        """Register the callback that receives every event. Called once by the controller before any command."""
        ...

    def start_batch(self, requests: Sequence[Request], gpu: int) -> None:
        """Run same-resolution images end to end (text encode, all steps, decode) as one batch on `gpu`.

        Emits one `BatchDone` for the whole batch (or `Failed`). Not preemptible."""
        ...

    def run_step(self, request: Request, step: int, gpus: tuple[int, ...], setup: StepSetup,
                 source_gpu: int | None = None) -> None:
        """Run denoising step `step` (0-based) of a video on the SP group `gpus` (leader `gpus[0]`).

        `setup` says what precedes it: FRESH (text encode + latent init; `step` is 0), CONTINUE, RESUME (state
        saved on `source_gpu` by `pause`), RECONFIGURE (state on the previous leader `source_gpu`, moved to the
        new group). Emits `StepDone` (or `Failed`)."""
        ...

    # Optional (multi-step runs, see the module docstring): `supports_multi_step = True`, then
    #   run_step(request, step, gpus, setup, source_gpu=None, count=1) and truncate(request: Request) -> None.

    def pause(self, request: Request, gpu: int) -> None:
        """Keep the video's state at its current step boundary on `gpu` (its leader), unsharded; the rest of its
        former group is free at once. No event: the pause is ordered before later work on `gpu`."""
        ...

    def decode(self, request: Request, gpu: int) -> None:
        """VAE-decode a video whose steps are all done, on one GPU (its leader). Emits `VideoDone` (or `Failed`)."""
        ...

    def discard(self, request: Request, gpus: tuple[int, ...]) -> None:
        """Drop whatever state a cancelled or failed request keeps on `gpus` (the controller calls it only at a
        step boundary or on a paused video, never mid-work). No event."""
        ...

    def close(self) -> None:
        """Release workers and resources; no further commands follow."""
        ...
