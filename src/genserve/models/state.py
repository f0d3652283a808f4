"""The paused/resumable state of one request, and its byte form.

A State holds everything needed to run the next denoising step: latents, prompt embeddings, the request's own
scheduler object (multistep solvers such as UniPC keep a history of model outputs there), the step index and the
request's sizes and guidance. Pausing is simply not calling step() again; the State stays where it is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch

_FORMAT = 1


@dataclass
class State:
    kind: str  # "image" | "video"
    model: str
    latents: torch.Tensor
    embeds: dict[str, torch.Tensor]  # prompt_embeds, negative_prompt_embeds, pooled_* (SD3)
    scheduler: Any  # a diffusers scheduler, private to this request
    step: int  # next step to run (0-based); == num_steps when denoising is done
    num_steps: int
    seed: int
    width: int
    height: int
    frames: int = 1
    guidance_scale: float = 1.0
    request_id: str = ""
    extra: dict = field(default_factory=dict)  # small plain values (e.g. guidance_scale_2)

    @property
    def done(self) -> bool:
        return self.step >= self.num_steps

    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def nbytes(self) -> int:
        """Tensor bytes held (latents, embeddings, scheduler history)."""
        tensors = [self.latents, *self.embeds.values()]
        tensors += [v for v in _flat(vars(self.scheduler).values()) if isinstance(v, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to_bytes(self) -> bytes:
        """Serialise with torch.save: tensors, plain values and the scheduler's attributes (never modules)."""
        blob = {
            "format": _FORMAT,
            "meta": {k: getattr(self, k) for k in _META},
            "extra": dict(self.extra),
            "latents": self.latents,
            "embeds": dict(self.embeds),
            "scheduler": scheduler_state(self.scheduler),
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> "State":
        """Rebuild a State on `device`; scheduler tensors go where that scheduler keeps them on `device`."""
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if blob.get("format") != _FORMAT:
            raise ValueError(f"unsupported state format {blob.get('format')!r}")
        return cls(
            **blob["meta"],
            latents=blob["latents"].to(device),
            embeds={k: v.to(device) for k, v in blob["embeds"].items()},
            scheduler=restore_scheduler(blob["scheduler"], device),
            extra=blob["extra"],
        )


_META = ("kind", "model", "step", "num_steps", "seed", "width", "height", "frames", "guidance_scale", "request_id")


def _flat(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def scheduler_state(scheduler) -> dict:
    """Class name, config and every instance attribute (timesteps, sigmas, history, step index, ...)."""
    attrs = {k: v for k, v in vars(scheduler).items() if k != "_internal_dict"}
    return {"class": type(scheduler).__name__, "config": dict(scheduler.config), "attrs": attrs}


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to(v, device) for v in obj)
    return obj


def restore_scheduler(d: dict, device: str | torch.device = "cpu"):
    import diffusers
    from diffusers.configuration_utils import FrozenDict

    cls = getattr(diffusers, d["class"], None)
    if cls is None or not hasattr(cls, "from_config"):
        raise ValueError(f"unknown scheduler class {d['class']!r}")
    # Like unpickling: a bare instance given its config and attributes (from_config costs milliseconds).
    scheduler = cls.__new__(cls)
    scheduler._internal_dict = FrozenDict(d["config"])
    where = _placement(cls, d["config"], device)
    for k, v in d["attrs"].items():
        setattr(scheduler, k, _to(v, where.get(k, device)))
    return scheduler


def _placement(cls, config: dict, device) -> dict:
    """Where a scheduler keeps each tensor on `device` (some keep sigmas on the CPU on purpose): ask a probe once."""
    if torch.device(device).type == "cpu":
        return {}
    key = (cls, str(torch.device(device)), repr(sorted(config.items())))
    if key not in _PROBES:
        probe = cls.from_config(config)
        probe.set_timesteps(2, device=device, **({"mu": 0.0} if config.get("use_dynamic_shifting") else {}))
        _PROBES[key] = {k: v.device for k, v in vars(probe).items() if isinstance(v, torch.Tensor)}
    return _PROBES[key]


_PROBES: dict[tuple, dict] = {}
