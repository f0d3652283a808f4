"""Clocks: the only thing, with the executor, that differs between the simulator and the live engine.

A clock answers `now()` in seconds. The controller never sleeps and never reads wall time itself; whoever
drives it (the simulator's event loop, or the live engine's loop) owns the clock and advances or reads it.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...


class VirtualClock:
    """Simulated time, advanced only by the discrete-event loop (never backwards)."""

    __slots__ = ("_t",)

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance_to(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"virtual clock cannot go back from {self._t} to {t}")
        self._t = t


class WallClock:
    """Monotonic wall time in seconds since the clock was made (trace arrivals use the same origin)."""

    __slots__ = ("_t0",)

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0
