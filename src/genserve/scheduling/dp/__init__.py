"""The GenServe policy: one DP over video preemption, elastic sequence parallelism and image batching.

`GenServePolicy(options)` is importable from here; see docs/scheduler.md for the design.
"""

from genserve.scheduling.dp.policy import GenServePolicy
from genserve.scheduling.dp.tuning import DEFAULT, PAPER, Tuning

__all__ = ["DEFAULT", "GenServePolicy", "PAPER", "Tuning"]
