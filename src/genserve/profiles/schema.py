"""The JSON schema of a latency profile (`genserve.profile/v1`), as pydantic models.

All times are seconds. Keys of per-batch and per-degree maps are integers written as JSON strings.

    {
      "schema": "genserve.profile/v1",
      "name": "paper",
      "description": "...",
      "defaults": {                      # what `trace generate` draws when the user does not say
        "image_model": "sd3.5-medium", "video_model": "wan2.2-t2v-5b",
        "image_sizes": [[768, 768], ...],            # [width, height]
        "video_sizes": [[256, 256, 81], ...]         # [width, height, frames]
      },
      "image_models": {
        "<name>": {
          "default_steps": 28,
          "text_encode_s": 0.04,                     # once per batch
          "points": [                                # one per profiled resolution
            {"width": 768, "height": 768,
             "step_s":   {"1": 0.046, "2": 0.069, "4": 0.12, "8": 0.22},   # one denoising step, batch b
             "decode_s": {"1": 0.08, ...}}                                 # VAE decode, batch b
          ]
        }
      },
      "video_models": {
        "<name>": {
          "default_steps": 50,
          "text_encode_s": 0.03,
          "pause_s": 3.2e-6,                         # keep state at a step boundary
          "resume_s": {"1": 3.6e-5, "2": ...},       # restore state onto a group of degree p
          "reconfigure_s": {"1": ..., "2": ...},     # move a running video to a group of degree p
          "points": [
            {"width": 256, "height": 256, "frames": 81,
             "step_s": {"1": 0.0882, "2": 0.0551, "4": 0.0519, "8": 0.098},  # one DiT step at SP degree p
             "decode_s": 0.34}                                               # VAE decode, one GPU
          ]
        }
      }
    }

T_img(model, w, h, b, steps) = text_encode_s + steps * step_s(b) + decode_s(b).
Isolated latency (deadlines): image T_img(b=1); video text_encode_s + steps * T_step(p=1) + decode_s.

Optional fields: costs of a live engine that the bare model times leave out, measured by `genserve profile
--engine-costs` (and `genserve bench fidelity`); absent, every latency is exactly what the fields above give.
    image/video model "prepare_s":  per request: text encode + initial latents, as a worker prepares it; replaces
                                    text_encode_s (images: b * prepare_s per batch of b, each image is encoded)
    image/video model "dispatch_s": per command (batch, video step, decode): reply, controller round, next command
    video model "handover_s": {p: s} a resume or SP change whose state lives on a GPU outside the new group: the
                              move; the simulator also waits for that holder to finish its queued work
    image point "write_s": {b: s}   PNG files of a batch of b;   video point "write_s": s   the MP4 file
    image/video model "busy_factor", video model "busy_decode_factor": devices that share a machine's cores (CPU
        slots) slow each other down: a step (decode + write) takes this many times its time with every device
        busy; the simulator scales a command by 1 + (factor - 1) * (other devices busy at its start) / (n - 1)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_ID = "genserve.profile/v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _int_keyed(v: dict) -> dict[int, float]:
    out = {}
    for k, val in v.items():
        ik = int(k)
        if ik <= 0:
            raise ValueError(f"key {k!r} must be a positive integer")
        if float(val) <= 0:
            raise ValueError(f"value for {k!r} must be positive, got {val}")
        out[ik] = float(val)
    if not out:
        raise ValueError("must not be empty")
    return dict(sorted(out.items()))


def _int_keyed_or_none(v: dict | None) -> dict[int, float] | None:
    return None if v is None else _int_keyed(v)


class ImagePoint(_Strict):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    step_s: dict[int, float]
    decode_s: dict[int, float]
    write_s: dict[int, float] | None = None  # optional (see the module docstring)

    _keys = field_validator("step_s", "decode_s", mode="before")(classmethod(lambda cls, v: _int_keyed(v)))
    _opt_keys = field_validator("write_s", mode="before")(classmethod(lambda cls, v: _int_keyed_or_none(v)))

    @model_validator(mode="after")
    def _same_batches(self) -> "ImagePoint":
        if set(self.step_s) != set(self.decode_s):
            raise ValueError(f"step_s and decode_s must list the same batch sizes at {self.width}x{self.height}")
        if self.write_s is not None and set(self.write_s) != set(self.step_s):
            raise ValueError(f"write_s must list the batch sizes of step_s at {self.width}x{self.height}")
        if 1 not in self.step_s:
            raise ValueError(f"batch size 1 must be profiled at {self.width}x{self.height}")
        return self


class VideoPoint(_Strict):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    frames: int = Field(gt=0)
    step_s: dict[int, float]
    decode_s: float = Field(gt=0)
    write_s: float | None = Field(default=None, ge=0)  # optional (see the module docstring)

    _keys = field_validator("step_s", mode="before")(classmethod(lambda cls, v: _int_keyed(v)))

    @model_validator(mode="after")
    def _has_sp1(self) -> "VideoPoint":
        if 1 not in self.step_s:
            raise ValueError(f"SP degree 1 must be profiled at {self.width}x{self.height}x{self.frames}")
        return self


class ImageModel(_Strict):
    default_steps: int = Field(gt=0)
    text_encode_s: float = Field(ge=0)
    points: list[ImagePoint] = Field(min_length=1)
    prepare_s: float | None = Field(default=None, ge=0)  # optional (see the module docstring)
    dispatch_s: float | None = Field(default=None, ge=0)
    busy_factor: float | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> "ImageModel":
        batches = {tuple(p.step_s) for p in self.points}
        if len(batches) != 1:
            raise ValueError("every point must list the same batch sizes")
        pixels = [p.width * p.height for p in self.points]
        if len(set(pixels)) != len(pixels):
            raise ValueError("two points have the same pixel count")
        return self


class VideoModel(_Strict):
    default_steps: int = Field(gt=0)
    text_encode_s: float = Field(ge=0)
    pause_s: float = Field(ge=0)
    resume_s: dict[int, float]
    reconfigure_s: dict[int, float]
    points: list[VideoPoint] = Field(min_length=1)
    prepare_s: float | None = Field(default=None, ge=0)  # optional (see the module docstring)
    dispatch_s: float | None = Field(default=None, ge=0)
    busy_factor: float | None = Field(default=None, ge=1)
    handover_s: dict[int, float] | None = None
    busy_decode_factor: float | None = Field(default=None, ge=1)

    _keys = field_validator("resume_s", "reconfigure_s", mode="before")(classmethod(lambda cls, v: _int_keyed(v)))
    _opt_keys = field_validator("handover_s", mode="before")(classmethod(lambda cls, v: _int_keyed_or_none(v)))

    @model_validator(mode="after")
    def _consistent(self) -> "VideoModel":
        degrees = {tuple(p.step_s) for p in self.points}
        if len(degrees) != 1:
            raise ValueError("every point must list the same SP degrees")
        (deg,) = degrees
        for name in ("resume_s", "reconfigure_s"):
            missing = set(deg) - set(getattr(self, name))
            if missing:
                raise ValueError(f"{name} lacks SP degrees {sorted(missing)}")
        volumes = [p.width * p.height * p.frames for p in self.points]
        if len(set(volumes)) != len(volumes):
            raise ValueError("two points have the same width*height*frames")
        return self


class Defaults(_Strict):
    image_model: str
    video_model: str
    image_sizes: list[tuple[int, int]] = Field(min_length=1)
    video_sizes: list[tuple[int, int, int]] = Field(min_length=1)


class ProfileDoc(_Strict):
    schema_: str = Field(alias="schema")
    name: str
    description: str = ""
    defaults: Defaults
    image_models: dict[str, ImageModel]
    video_models: dict[str, VideoModel]

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: str) -> str:
        if v != SCHEMA_ID:
            raise ValueError(f"unsupported profile schema {v!r}, expected {SCHEMA_ID!r}")
        return v

    @model_validator(mode="after")
    def _defaults_exist(self) -> "ProfileDoc":
        if self.defaults.image_model not in self.image_models:
            raise ValueError(f"defaults.image_model {self.defaults.image_model!r} is not in image_models")
        if self.defaults.video_model not in self.video_models:
            raise ValueError(f"defaults.video_model {self.defaults.video_model!r} is not in video_models")
        return self
