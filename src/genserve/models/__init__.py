"""Step-level execution of real diffusers models (SD3, FLUX, Qwen-Image images; Wan videos): pause, resume, batch.

Imports torch and diffusers: the control plane must not import this package.
"""

from genserve.models.base import DEFAULT_MAX_STEPS, Adapter, Spec
from genserve.models.flux import FluxAdapter
from genserve.models.outputs import save_mp4, save_png
from genserve.models.registry import TINY_NAMES, TINY_SD3, TINY_WAN, adapter_for, load_adapter
from genserve.models.qwen import QwenImageAdapter
from genserve.models.sd3 import SD3Adapter
from genserve.models.state import State
from genserve.models.tiny import build_tiny_sd3, build_tiny_wan, build_tiny_wan_transformer, tiny_wan_transformer_config
from genserve.models.wan import WanAdapter, WanI2VAdapter

__all__ = [
    "DEFAULT_MAX_STEPS", "TINY_NAMES", "TINY_SD3", "TINY_WAN", "Adapter", "FluxAdapter", "QwenImageAdapter",
    "SD3Adapter", "Spec", "State", "WanAdapter", "WanI2VAdapter",
    "adapter_for", "build_tiny_sd3", "build_tiny_wan", "build_tiny_wan_transformer", "load_adapter", "save_mp4",
    "save_png", "tiny_wan_transformer_config",
]
