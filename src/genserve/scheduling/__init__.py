"""Scheduling policies: pure functions from a Snapshot to a Plan (no torch, no I/O, no clock)."""

from genserve.scheduling.base import Policy
from genserve.scheduling.validate import plan_violations

__all__ = ["Policy", "plan_violations"]
