"""Arrival processes. Rates are in requests per minute; times are seconds from 0.

- poisson: exponential inter-arrivals (CV = 1).
- bursty: Gamma inter-arrivals with coefficient of variation `cv` (default 3): shape k = 1/cv^2,
  scale = mean/k, so the mean rate is unchanged while arrivals cluster (AlpaServe's convention).
"""

from __future__ import annotations

import numpy as np

ARRIVALS = ("poisson", "bursty")
DEFAULT_BURSTY_CV = 3.0


def arrival_times(kind: str, rate_per_min: float, n: int, rng: np.random.Generator,
                  cv: float = DEFAULT_BURSTY_CV) -> np.ndarray:
    if rate_per_min <= 0:
        raise ValueError(f"rate must be positive (requests/minute), got {rate_per_min}")
    if n < 0:
        raise ValueError(f"number of requests must be >= 0, got {n}")
    mean = 60.0 / rate_per_min
    if kind == "poisson":
        gaps = rng.exponential(mean, size=n)
    elif kind == "bursty":
        if cv <= 0:
            raise ValueError(f"bursty cv must be positive, got {cv}")
        shape = 1.0 / (cv * cv)
        gaps = rng.gamma(shape, mean / shape, size=n)
    else:
        raise ValueError(f"unknown arrival process {kind!r}; choose one of {', '.join(ARRIVALS)}")
    return np.cumsum(gaps)
