"""Switches and settings shared by every policy (the CLI maps flags onto these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyOptions:
    """Each policy reads the fields that concern it and ignores the rest.

    batching: batch same-resolution images (None: the policy's default: on for genserve, off for baselines).
    preemption / dp / elastic_sp: the genserve ablation ladder (FCFS -> +preemption -> +DP -> +SP switching).
    tail_guard: genserve's bound on repeated preemption of one video (beyond the paper).
    max_paused_per_gpu: paused videos whose state may live on one GPU (the paper: 1).
    idle_resume_s: resume paused videos after this long without an image arrival.
    image_gpus: dedicated pools: GPUs reserved for images (the rest serve videos).
    """

    batching: bool | None = None
    preemption: bool = True
    dp: bool = True
    elastic_sp: bool = True
    tail_guard: bool = True
    max_paused_per_gpu: int = 1
    idle_resume_s: float = 5.0
    image_gpus: int | None = None

    def batching_or(self, default: bool) -> bool:
        return default if self.batching is None else self.batching
