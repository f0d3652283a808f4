"""Executors: what runs the controller's commands (simulated here; live worker processes elsewhere)."""

from genserve.executors.base import Executor, StepSetup

__all__ = ["Executor", "StepSetup"]
