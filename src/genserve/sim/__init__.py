"""The discrete-event simulator: the real controller and policies on a virtual clock (no torch, no sleeps)."""

from genserve.sim.metrics import SimResult, percentiles, write_records
from genserve.sim.run import run_simulation

__all__ = ["SimResult", "percentiles", "run_simulation", "write_records"]
