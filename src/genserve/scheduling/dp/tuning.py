"""Internal knobs of the GenServe policy (not user options: PolicyOptions carries those).

`PAPER` reproduces the paper's scoring; `DEFAULT` is what we ship, tuned in the simulator on the default setting
only (paper profile, balanced mix, 24 req/min, sigma 1.0, uniform resolutions, 8 GPUs) and checked elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Tuning:
    # value of a video candidate that misses its deadline: paper: 1/(1+|laxity|); ours: lost_score * that
    lost_video_score: float = 1.0
    # tie-break score of an image that misses its deadline (paper: 1/(1+max(0, slack)) = 1)
    lost_image_score: float = 1.0
    # count a held video as recoverable when it can still finish on time after `hold_horizon_s` at its
    # reference degree (paper: a hold scores zero)
    hold_counts: bool = False
    hold_horizon_s: float = 0.0
    # gate resumes / scale-ups of videos that are not budget-tight while images keep arriving (the paper's rule)
    gate_resume: bool = True
    gate_scale_up: bool = False
    # scale up when it helps (score prefers the candidate finishing earliest among feasible ones) instead of the
    # paper's smallest-laxity preference
    prefer_fast: bool = False
    # weight of the per-video 1/(1+slack) term in the score (victim order), and the paper's rule that a video
    # with slack <= 0 is never paused (applied to videos that can still make it)
    victim_weight: float = 0.0
    critical_rule: bool = True
    # tail guard: pauses after which a video may not be paused again, and the ageing weight for lost videos
    max_pauses: int = 2
    cap_feasible_only: bool = False  # the pause cap protects only videos that can still make their deadline
    age_after: float | None = None  # lost videos count again this many SLOs past their deadline
    # a paused video whose home GPU is taken resumes on free GPUs elsewhere when there are any (the paper: home only)
    resume_elsewhere: bool = False


PAPER = Tuning()
DEFAULT = replace(PAPER, lost_image_score=0.02, gate_resume=False, prefer_fast=True, max_pauses=8,
                  cap_feasible_only=True, age_after=0.5, resume_elsewhere=True)
