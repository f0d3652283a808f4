"""Synthetic workloads, deterministic for a seed.

Mix: the video share of requests ("light" 0.2, "balanced" 0.5, "heavy" 0.8, or "V:I" such as "70:30").
Resolutions: "uniform" over the profile's default sizes, or "skewed": weights drawn once per trace from
Dirichlet(alpha) (default alpha 1.0, as in the paper), separately for images and videos. Optional, for fitting the
paper's load (the paper does not say whether its weights were drawn per trace): `skew_seed` draws the skewed
weights once from their own generator seeded with it, so every trace of a setting shares them, and
`image_weights` / `video_weights` fix them outright (either overrides the per-trace draw; the trace's own draws
are then unchanged otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genserve.workloads.arrivals import DEFAULT_BURSTY_CV, arrival_times
from genserve.workloads.prompts import IMAGE_PROMPTS, VIDEO_PROMPTS
from genserve.workloads.trace import TraceRecord

MIXES = {"light": 0.2, "balanced": 0.5, "heavy": 0.8}
RESOLUTIONS = ("uniform", "skewed")


def parse_mix(mix: str | float) -> float:
    """Video share in [0, 1] from a named mix, a 'V:I' ratio, or a number."""
    if isinstance(mix, (int, float)):
        share = float(mix)
    elif mix in MIXES:
        share = MIXES[mix]
    elif ":" in str(mix):
        try:
            v, i = (float(x) for x in str(mix).split(":"))
        except ValueError:
            raise ValueError(f"mix {mix!r}: expected V:I with two numbers, e.g. 70:30") from None
        if v < 0 or i < 0 or v + i == 0:
            raise ValueError(f"mix {mix!r}: parts must be >= 0 and not both 0")
        share = v / (v + i)
    else:
        raise ValueError(f"unknown mix {mix!r}; use light, balanced, heavy or V:I (e.g. 70:30)")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"video share must be within 0..1, got {share}")
    return share


@dataclass(frozen=True)
class WorkloadSpec:
    requests: int = 100
    rate: float = 24.0  # requests per minute
    mix: str = "balanced"
    arrival: str = "poisson"
    cv: float = DEFAULT_BURSTY_CV
    resolutions: str = "uniform"
    alpha: float = 1.0
    seed: int = 0
    image_model: str | None = None  # None: the profile's default
    video_model: str | None = None
    image_sizes: tuple[tuple[int, int], ...] | None = None
    video_sizes: tuple[tuple[int, int, int], ...] | None = None
    sigma: float | None = None  # written into each record when set
    skew_seed: int | None = None  # skewed: weights drawn once from this seed (shared by all traces), not per trace
    image_weights: tuple[float, ...] | None = None  # skewed: fixed weights over image_sizes (override any draw)
    video_weights: tuple[float, ...] | None = None  # skewed: fixed weights over video_sizes


def _weights(kind: str, n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return np.full(n, 1.0 / n)
    if kind == "skewed":
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        return rng.dirichlet(np.full(n, alpha))
    raise ValueError(f"unknown resolution distribution {kind!r}; choose uniform or skewed")


def _fixed_weights(spec: WorkloadSpec, n_img: int, n_vid: int) -> tuple[np.ndarray, np.ndarray]:
    """Skewed weights shared by every trace: explicit ones, else one Dirichlet(alpha) draw from `skew_seed`."""
    drawn = None
    if spec.skew_seed is not None:
        g = np.random.default_rng(spec.skew_seed)
        drawn = (_weights("skewed", n_img, spec.alpha, g), _weights("skewed", n_vid, spec.alpha, g))
    out = []
    for k, (given, n) in enumerate(((spec.image_weights, n_img), (spec.video_weights, n_vid))):
        if given:
            w = np.asarray(given, dtype=float)
            if len(w) != n or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights {tuple(given)} must be {n} non-negative numbers, not all 0")
            out.append(w / w.sum())
        elif drawn is not None:
            out.append(drawn[k])
        else:
            out.append(np.full(n, 1.0 / n))
    return out[0], out[1]


def generate_trace(spec: WorkloadSpec, profile) -> list[TraceRecord]:
    """Draw a trace. One Generator drives every draw in a fixed order, so a seed fixes the trace byte for byte."""
    defaults = profile.doc.defaults
    image_model = spec.image_model or defaults.image_model
    video_model = spec.video_model or defaults.video_model
    image_sizes = list(spec.image_sizes or defaults.image_sizes)
    video_sizes = list(spec.video_sizes or defaults.video_sizes)
    share = parse_mix(spec.mix)
    rng = np.random.default_rng(spec.seed)
    times = arrival_times(spec.arrival, spec.rate, spec.requests, rng, spec.cv)
    if spec.resolutions == "skewed" and (spec.skew_seed is not None or spec.image_weights or spec.video_weights):
        w_img, w_vid = _fixed_weights(spec, len(image_sizes), len(video_sizes))
    else:
        w_img = _weights(spec.resolutions, len(image_sizes), spec.alpha, rng)
        w_vid = _weights(spec.resolutions, len(video_sizes), spec.alpha, rng)
    is_video = rng.random(spec.requests) < share
    img_idx = rng.choice(len(image_sizes), size=spec.requests, p=w_img)
    vid_idx = rng.choice(len(video_sizes), size=spec.requests, p=w_vid)
    prompt_idx = rng.integers(0, len(IMAGE_PROMPTS), size=spec.requests)
    seeds = rng.integers(0, 2**31 - 1, size=spec.requests)
    width = len(str(max(spec.requests - 1, 0)))
    out = []
    for i in range(spec.requests):
        if is_video[i]:
            w, h, f = video_sizes[vid_idx[i]]
            model, prompt, modality = video_model, VIDEO_PROMPTS[prompt_idx[i] % len(VIDEO_PROMPTS)], "video"
        else:
            (w, h), f = image_sizes[img_idx[i]], 1
            model, prompt, modality = image_model, IMAGE_PROMPTS[prompt_idx[i] % len(IMAGE_PROMPTS)], "image"
        out.append(TraceRecord(
            id=f"r{i:0{width}d}", modality=modality, model=model, prompt=prompt, width=int(w), height=int(h),
            frames=int(f), steps=profile.default_steps(model), seed=int(seeds[i]),
            arrival=round(float(times[i]), 6), sigma=spec.sigma,
        ))
    return out
