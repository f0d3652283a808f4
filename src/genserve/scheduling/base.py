"""The policy interface shared by the simulator and the live engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from genserve.core.plan import Plan
from genserve.core.snapshot import Snapshot


@runtime_checkable
class Policy(Protocol):
    """Decides, each round, what every live request does until the next round.

    `plan` must be a pure function of the snapshot (the round's time is `snapshot.now`). It returns an action
    for every queued, running and paused request. `preemptive` tells the engine whether the policy may pause
    running work.

    How the controller (`genserve.engine.controller`) applies a plan, identically in the simulator and the live
    engine:
    * a running video at a step boundary: CONTINUE runs its next step; HOLD pauses it (state stays on its
      leader, its GPUs free at once); RECONFIGURE moves it when all target GPUs are free now, else it continues
      where it is and the next round re-decides;
    * a running video that is mid-step cannot be interrupted: its action is re-decided by the round at its next
      step boundary (a HOLD there pauses it; in the simulator a coalesced multi-step run is cut short so that
      boundary comes at the end of the step in flight);
    * START, RESUME and image batches start only when all their GPUs are free now; otherwise they wait, and the
      round that follows the event freeing those GPUs decides again (so an image placed on a GPU that is still
      busy starts when the GPU frees, if the policy still wants it there);
    * a decoding video must CONTINUE on its GPU;
    * a plan that double-books a GPU, names an unknown request or gives an action the request's state cannot
      take raises PlanError before any state changes.

    Optional attributes the controller reads:
    * `step_rounds` (default "always"): when rounds run besides arrivals, completions, freed GPUs and
      `Plan.wake_at`. "always": at every video step boundary. "events_or_waiting" (genserve): step boundaries only
      while a request is queued or paused, plus the next boundary of a video that just changed its SP group
      (the simulator coalesces steps while nothing waits). "events": no plain step-boundary rounds; a video
      the last plan wanted to pause or move while it was mid-step gets a round at its next boundary (for a
      policy whose decisions change only on events and the wake-ups it asks for; lets the simulator coalesce
      steps). "when_waiting": step boundaries only while a
      request is queued or paused, and no round at all while nothing waits (a policy that only starts, resumes
      or preempts for waiting work: SRTF). "never": no step-boundary rounds, and none while nothing waits or no
      GPU is free (non-preemptive, non-elastic policies: FCFS, SJF, RASP, dedicated pools). Under "never",
      running videos' `steps_done` in the snapshot may lag (such policies only continue them).
    * `options` (PolicyOptions): `max_paused_per_gpu` is checked in strict mode.
    """

    name: str
    preemptive: bool

    def plan(self, snapshot: Snapshot) -> Plan: ...
