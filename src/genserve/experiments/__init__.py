"""The paper's experiments, the hindsight upper bound on SLO attainment, reports and plots.

Control-plane rule: nothing here imports torch (numpy, scipy, highspy and matplotlib only).
`upper_bound` and `BoundResult` (bound.py) are importable from here; they load numpy/scipy on first use.
"""

__all__ = ["BoundResult", "upper_bound"]


def __getattr__(name: str):
    if name in __all__:
        from genserve.experiments import bound

        return getattr(bound, name)
    raise AttributeError(f"module 'genserve.experiments' has no attribute {name!r}")
