"""What the image and video adapters share: request normalisation, validation, the run loop."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from genserve.core.errors import ValidationError
from genserve.models.state import State

DEFAULT_MAX_STEPS = 200


@dataclass(frozen=True)
class Spec:
    """The fields of a request an adapter needs (a genserve Request, a dict or any object with these attributes)."""

    prompt: str
    width: int
    height: int
    steps: int
    seed: int = 0
    frames: int = 1
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    id: str = ""
    image: Any = None  # image-to-video conditioning frame (PIL image, array or tensor); None for text-to-*

    @classmethod
    def of(cls, req: Any) -> "Spec":
        if isinstance(req, Spec):
            return req
        get = req.get if isinstance(req, dict) else (lambda k, d=None: getattr(req, k, d))
        missing = [k for k in ("width", "height", "steps") if get(k) is None]
        if missing:
            raise ValidationError(f"request is missing {', '.join(missing)}")
        try:
            g = get("guidance_scale")
            return cls(prompt=get("prompt"), width=int(get("width")), height=int(get("height")),
                       steps=int(get("steps")), seed=int(_default(get("seed"), 0)),
                       frames=int(_default(get("frames"), 1)), guidance_scale=None if g is None else float(g),
                       negative_prompt=get("negative_prompt"), id=str(get("id", "") or ""), image=get("image"))
        except (TypeError, ValueError) as e:
            raise ValidationError(f"request has a non-numeric size, steps, seed, frames or guidance: {e}") from e


def _default(value, default):
    return default if value is None else value


class Adapter:
    """One diffusers pipeline driven a step at a time. Subclasses: SD3Adapter (image), WanAdapter (video)."""

    kind = ""
    default_guidance = 1.0

    def __init__(self, pipe, name: str, *, max_steps: int = DEFAULT_MAX_STEPS, max_sequence_length: int | None = None):
        self.pipe = pipe
        self.name = name
        self.max_steps = max_steps
        self.max_sequence_length = max_sequence_length
        pipe.set_progress_bar_config(disable=True)
        self._scheduler = copy.deepcopy(pipe.scheduler)
        self._device = None  # pristine; each request deep-copies it

    @property
    def device(self) -> torch.device:
        # Cached: pipe._execution_device walks every module (milliseconds). Use to() to move the adapter.
        if self._device is None:
            self._device = self.pipe._execution_device
        return self._device

    def to(self, device: str | torch.device) -> "Adapter":
        self.pipe.to(device)
        self._device = None
        return self

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self, req: Any) -> Spec:
        """Raise ValidationError with a readable message, or return the normalised Spec."""
        spec = Spec.of(req)
        if not isinstance(spec.prompt, str) or not spec.prompt.strip():
            raise ValidationError("prompt must not be empty")
        if spec.steps <= 0:
            raise ValidationError(f"steps must be positive, got {spec.steps}")
        if spec.steps > self.max_steps:
            raise ValidationError(f"steps must be at most {self.max_steps} for {self.name}, got {spec.steps}")
        m = self.size_multiple
        if spec.width <= 0 or spec.height <= 0 or spec.width % m or spec.height % m:
            raise ValidationError(f"width and height must be positive multiples of {m} for {self.name} "
                                  f"(VAE x{m // self.patch} times patch {self.patch}), got {spec.width}x{spec.height}")
        limit = self.max_side
        if limit and max(spec.width, spec.height) > limit:
            raise ValidationError(f"width and height must be at most {limit} for {self.name} "
                                  f"(positional embedding size), got {spec.width}x{spec.height}")
        g = spec.guidance_scale
        if g is not None and not (g >= 0):
            raise ValidationError(f"guidance_scale must be >= 0, got {g}")
        self._validate_frames(spec)
        return spec

    size_multiple = 16
    patch = 2
    max_side = 0

    def _validate_frames(self, spec: Spec) -> None:
        raise NotImplementedError

    def guidance_of(self, spec: Spec) -> float:
        """The request's guidance scale, or the model's default."""
        return self.default_guidance if spec.guidance_scale is None else float(spec.guidance_scale)

    # -- the step loop ----------------------------------------------------------------------------------------
    def new_scheduler(self):
        """A private deep copy of the pipeline's scheduler: timesteps and solver history live per request."""
        return copy.deepcopy(self._scheduler)

    def generator(self, seed: int) -> torch.Generator:
        # Same device rule as diffusers' randn_tensor: a CPU generator draws on the CPU, then moves.
        return torch.Generator("cpu").manual_seed(seed)

    def prepare(self, req: Any) -> State:
        raise NotImplementedError

    def step(self, state: State) -> State:
        raise NotImplementedError

    def decode(self, state: State) -> torch.Tensor:
        raise NotImplementedError

    def _check_runnable(self, state: State) -> None:
        if state.done:
            raise ValidationError(f"request {state.request_id!r} has run all {state.num_steps} steps")
        if state.model != self.name:
            raise ValidationError(f"state belongs to model {state.model!r}, not {self.name!r}")

    def pause(self, state: State) -> State:
        """Pausing keeps the State as it is (nothing to copy): the caller simply stops calling step()."""
        return state

    def resume(self, state: State) -> State:
        """Make a State (paused here, or rebuilt from bytes elsewhere) runnable on this adapter's device."""
        if state.model != self.name:
            raise ValidationError(f"state belongs to model {state.model!r}, not {self.name!r}")
        if state.latents.device != self.device:
            state = State.from_bytes(state.to_bytes(), self.device)
        return state

    def run(self, req: Any, *, pause_at: tuple[int, ...] = ()) -> torch.Tensor:
        """prepare, every step, decode. `pause_at` round-trips the state through bytes before those steps."""
        state = self.prepare(req)
        while not state.done:
            if state.step in pause_at:
                state = State.from_bytes(state.to_bytes(), self.device)
            self.step(state)
        return self.decode(state)


class ImageAdapter(Adapter):
    """An image model: one frame per request."""

    kind = "image"

    def _validate_frames(self, spec: Spec) -> None:
        if spec.frames != 1:
            raise ValidationError(f"{self.name} makes images: frames must be 1, got {spec.frames}")


def shifted_flow_timesteps(scheduler, steps: int, image_seq_len: int, device) -> None:
    """FLUX / Qwen-Image schedule: sigmas 1 .. 1/steps with the shift mu for this many image tokens (the pipelines'
    own calculate_shift and retrieve_timesteps), starting at step 0."""
    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    cfg = scheduler.config
    mu = calculate_shift(image_seq_len, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                         cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
    retrieve_timesteps(scheduler, steps, device, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    scheduler.set_begin_index(0)
