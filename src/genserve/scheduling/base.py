"""The policy interface shared by the simulator and the live engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from genserve.core.plan import Plan
from genserve.core.snapshot import Snapshot


@runtime_checkable
class Policy(Protocol):
    """Decides, each round, what every live request does until the next round.

    `plan` must be a pure function of the snapshot (the round's time is `snapshot.now`). It returns an action
    for every queued, running and paused request. Actions for a running video that is mid-step take effect at
    its next step boundary; an image batch placed on a GPU that is still busy starts when the GPU frees.
    `preemptive` tells the engine whether the policy may pause running work.
    """

    name: str
    preemptive: bool

    def plan(self, snapshot: Snapshot) -> Plan: ...
