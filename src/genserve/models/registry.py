"""Model names -> adapters: the embedded tiny models, or a Hugging Face id / local path via from_pretrained."""

from __future__ import annotations

import os
import re

import torch

from genserve.core.errors import ValidationError
from genserve.models.base import DEFAULT_MAX_STEPS, Adapter
from genserve.models.tiny import TINY_NAMES, TINY_SD3, TINY_TEXT_LEN, TINY_WAN, build_tiny_sd3, build_tiny_wan


def bundled_names() -> list[str]:
    from genserve.models.catalog import names

    return names()


_HF_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def adapter_for(pipe, name: str, **kw) -> Adapter:
    """Wrap an already built pipeline in the adapter of its family."""
    from diffusers import (FluxPipeline, QwenImagePipeline, StableDiffusion3Pipeline, WanImageToVideoPipeline,
                           WanPipeline)

    from genserve.models.flux import FluxAdapter
    from genserve.models.qwen import QwenImageAdapter
    from genserve.models.sd3 import SD3Adapter
    from genserve.models.wan import WanAdapter, WanI2VAdapter

    for cls, adapter in ((StableDiffusion3Pipeline, SD3Adapter), (WanPipeline, WanAdapter),
                         (FluxPipeline, FluxAdapter), (QwenImagePipeline, QwenImageAdapter),
                         (WanImageToVideoPipeline, WanI2VAdapter)):
        if isinstance(pipe, cls):
            return adapter(pipe, name, **kw)
    raise ValidationError(f"model {name!r} is a {type(pipe).__name__}; supported: StableDiffusion3Pipeline "
                          f"(SD3, SD3.5), FluxPipeline (FLUX.1), QwenImagePipeline (Qwen-Image) and WanPipeline "
                          f"(Wan 2.1, 2.2)")


def load_adapter(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, *,
                 max_steps: int = DEFAULT_MAX_STEPS, max_sequence_length: int | None = None) -> Adapter:
    """`tiny-sd3` / `tiny-wan` are built in code; anything else is a Hugging Face id or a local pipeline folder."""
    if name in TINY_NAMES:
        pipe = build_tiny_sd3() if name == TINY_SD3 else build_tiny_wan()
        max_sequence_length = max_sequence_length or TINY_TEXT_LEN
    elif name.split("@")[0] in bundled_names():
        # A bundled configuration with random weights; "NAME@K" keeps K transformer blocks (and text layers).
        from genserve.models.catalog import bundled_adapter

        base, _, k = name.partition("@")
        if k and not (k.isdigit() and int(k) > 0):
            raise ValidationError(f"model {name!r}: the block count after @ must be a positive integer")
        if dtype is None and torch.device(device).type == "cuda":
            dtype = torch.bfloat16  # full-size random weights: as served
        return bundled_adapter(base, blocks=int(k) if k else None, dtype=dtype, device=device, max_steps=max_steps,
                               text_len=max_sequence_length or TINY_TEXT_LEN, adapter_name=name)
    elif os.path.isdir(name) or _HF_ID.match(name or ""):
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(name, **({"torch_dtype": dtype} if dtype else {}))
        except Exception as e:  # offline, missing, gated: say what we know, not a stack of hub internals
            raise ValidationError(f"cannot load model {name!r} ({type(e).__name__}: {e}); "
                                  f"built-in models: {', '.join(TINY_NAMES)}") from e
    else:
        raise ValidationError(f"unknown model {name!r}: use one of {', '.join(TINY_NAMES)}, "
                              f"a Hugging Face id (org/name) or a local pipeline folder")
    pipe.to(device=device, dtype=dtype) if dtype else pipe.to(device)
    return adapter_for(pipe, name, max_steps=max_steps, max_sequence_length=max_sequence_length)


__all__ = ["TINY_NAMES", "TINY_SD3", "TINY_WAN", "adapter_for", "load_adapter"]
