"""Experiment grids: which traces (settings) and which policies (variants) each experiment runs.

A setting is one workload (WorkloadSpec fields), an SLO scale and a cluster size; a variant is a policy name plus
PolicyOptions fields. Every (setting, seed) trace also gets the LP upper bound (bound.py).
Defaults follow the paper (spec section 7): 100 requests, balanced mix, 24 req/min on 8 GPUs, Poisson, uniform
resolutions, sigma 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genserve.experiments.paper import E1_SIGMAS, POLICIES5

EXPERIMENTS = ("e1", "e2", "e3", "e4", "ablation", "resolution", "deployment", "scale")
ALL = ("e1", "e2", "e3", "e4", "ablation", "resolution", "deployment", "scale")


@dataclass(frozen=True)
class Variant:
    label: str
    policy: str
    options: tuple[tuple[str, object], ...] = ()  # PolicyOptions fields


@dataclass
class Setting:
    label: str  # e.g. "sigma=0.8"
    workload: dict  # WorkloadSpec fields (seed filled per run)
    sigma: float = 1.0
    gpus: int = 8
    budget_s: float | None = None  # wall budget per simulation (scale runs)
    bound_intervals: int = 600


@dataclass
class Experiment:
    name: str
    title: str
    x_label: str  # the axis the settings vary along
    settings: list[Setting]
    variants: list[Variant]
    metrics: tuple[str, ...] = ("overall",)  # SAR fields the table shows
    keep_latencies: bool = False
    notes: list[str] = field(default_factory=list)


def _base(requests: int, **kw) -> dict:
    d = {"requests": requests, "rate": 24.0, "mix": "balanced", "arrival": "poisson", "resolutions": "uniform"}
    d.update(kw)
    return d


def _policies(names=POLICIES5) -> list[Variant]:
    return [Variant(n, n) for n in names]


def build(name: str, *, requests: int = 100, gpus: int = 8, scale_gpus: tuple[int, ...] = (64, 256),
          scale_requests: int | None = None) -> Experiment:
    """The grid of experiment `name` (rates are per 8 GPUs and scale with --gpus)."""
    k = gpus / 8

    def rate(r: float) -> float:
        return r * k

    if name == "e1":
        return Experiment("e1", "E1: SLO attainment vs SLO scale sigma (balanced, 24 req/min)", "sigma",
                          [Setting(f"sigma={s}", _base(requests, rate=rate(24)), s, gpus) for s in E1_SIGMAS],
                          _policies())
    if name == "e2":
        return Experiment("e2", "E2: SLO attainment vs workload mix (sigma 1, 24 req/min)", "mix",
                          [Setting(f"mix={m}", _base(requests, rate=rate(24), mix=m), 1.0, gpus)
                           for m in ("heavy", "balanced", "light")],
                          _policies(), metrics=("overall", "image", "video"))
    if name == "e3":
        return Experiment("e3", "E3: SLO attainment vs arrival rate (balanced, sigma 1)", "rate (req/min)",
                          [Setting(f"rate={r}", _base(requests, rate=rate(r)), 1.0, gpus)
                           for r in (12, 18, 24, 30, 36)],
                          _policies())
    if name == "e4":
        return Experiment("e4", "E4: latency distributions (balanced, 24 req/min, sigma 1)", "policy",
                          [Setting("default", _base(requests, rate=rate(24)), 1.0, gpus)],
                          _policies(), metrics=("overall", "image", "video"), keep_latencies=True)
    if name == "resolution":
        return Experiment("resolution", "Resolution spread: uniform vs skewed (Dirichlet alpha 1)", "resolutions",
                          [Setting(f"res={r}", _base(requests, rate=rate(24), resolutions=r, alpha=1.0), 1.0, gpus)
                           for r in ("uniform", "skewed")],
                          _policies(), metrics=("image", "video", "overall"))
    if name == "ablation":
        off = (("preemption", False), ("dp", False), ("elastic_sp", False))
        return Experiment("ablation", "Ablation on skewed resolutions: FCFS -> +preemption -> +DP -> +SP switching",
                          "rung",
                          [Setting("res=skewed", _base(requests, rate=rate(24), resolutions="skewed"), 1.0, gpus)],
                          [Variant("FCFS", "genserve", off),
                           Variant("+preemption", "genserve", (("preemption", True), ("dp", False),
                                                               ("elastic_sp", False))),
                           Variant("+DP", "genserve", (("preemption", True), ("dp", True), ("elastic_sp", False))),
                           Variant("+SP switching", "genserve", ())],
                          metrics=("overall", "image", "video"))
    if name == "deployment":
        pools = [(2, 6), (3, 5), (4, 4)]
        variants = [Variant("replicated", "genserve")]
        for i, v in pools:
            x = max(1, round(i * gpus / 8))
            variants.append(Variant(f"dedicated {i}:{v}", "dedicated", (("image_gpus", x),)))
        return Experiment("deployment", "Replicated co-serving vs dedicated pools (image:video GPUs)", "mix",
                          [Setting(f"mix={m}", _base(requests, rate=rate(24), mix=m), 1.0, gpus)
                           for m in ("light", "balanced", "heavy")],
                          variants, metrics=("overall", "image", "video"))
    if name == "scale":
        settings = []
        for n in (gpus,) + tuple(g for g in scale_gpus if g != gpus):
            kk = n / 8
            reqs = scale_requests if scale_requests is not None else int(round(requests * kk))
            for mix in ("balanced", "heavy"):
                settings.append(Setting(f"gpus={n},mix={mix}", _base(reqs, rate=24 * kk, mix=mix), 1.0, n,
                                        budget_s=600.0, bound_intervals=200 if n > 64 else 300))
        return Experiment("scale", f"Cluster scale: load scaled with N (24 req/min per 8 GPUs), "
                          f"{settings[0].workload['requests']}-request traces", "GPUs",
                          settings, _policies(("fcfs", "srtf", "genserve")), metrics=("overall", "image", "video"))
    raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} or all")
