"""Request bodies (OpenAI-compatible, plus genserve extensions) and their normalisation into job specs.

Pydantic checks types; `normalise_*` checks values against the settings and the profile and fills defaults,
raising APIError(400) whose message names the field and says what to fix.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import types
import typing
from dataclasses import asdict, dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from genserve.core.errors import ProfileError
from genserve.server.errors import APIError
from genserve.server.settings import ServerSettings

# ASCII digits only ("٤٤x٤٤" must not pass as 44x44); spaces around the numbers are tolerated
SIZE_PATTERN = r"^ *([0-9]{1,6}) *[xX×] *([0-9]{1,6}) *$"
SIZE_RE = re.compile(SIZE_PATTERN)
SECONDS_PATTERN = r"^(?:[0-9]{1,6}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})$"
SECONDS_RE = re.compile(SECONDS_PATTERN)
ID_RE = re.compile(r"^(img|video)_[0-9a-f]{24}$")
SEED_MAX = 2**32 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORM_INT = re.compile(r"([+-]?[0-9]{1,20})(?:\.0*)?")  # "4" or "4.0", like JSON's whole numbers
_FORM_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?")
_D = ServerSettings  # its defaults: the limits the OpenAPI schema documents (normalise_* checks the live ones)


def new_id(kind: str) -> str:
    return f"{'img' if kind == 'image' else 'video'}_{secrets.token_hex(12)}"


def valid_id(job_id: str, kind: str | None = None) -> bool:
    m = ID_RE.match(job_id or "")
    if not m:
        return False
    return kind is None or m.group(1) == ("img" if kind == "image" else "video")


def _whole(value: object) -> object:
    # JSON Schema's "integer" includes 2.0 (and json.dumps writes floats so); true/"2" stay refused
    return int(value) if type(value) is float and value.is_integer() else value


WholeInt = Annotated[int, BeforeValidator(_whole)]


def _bool_only(value: object) -> object:
    if type(value) is not bool:  # Literal[False] alone takes 0 (0 == False)
        raise ValueError("Input should be false")
    return value


def _doc(description: str | None = None, **limits) -> typing.Any:
    """A field whose limits appear in the OpenAPI schema only: normalise_* enforces them against the live
    settings, with the error codes docs/api.md lists (invalid_n, prompt_too_long, ...)."""
    return Field(default=None, description=description, json_schema_extra=limits or None)


def _prompt_doc(description: str, example: str) -> typing.Any:
    return Field(description=description, examples=[example],
                 json_schema_extra={"minLength": 1, "maxLength": _D.max_prompt_chars, "pattern": r"\S"})


class RequestBody(BaseModel):
    """Strict types: JSON `true` is not 1 and "4" is not 4 (`from_form` converts form strings first)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # OpenAI fields genserve does not implement: refused with `unsupported_parameter` and this reason
    UNSUPPORTED: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_form(cls, data: dict[str, str]) -> "RequestBody":
        """Validate form fields (all strings): numbers written in ASCII become int/float first."""
        out: dict[str, object] = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None or not isinstance(value, str):
                continue
            kinds = _arg_types(field.annotation)
            if str in kinds:
                continue
            if int in kinds:
                m = _FORM_INT.fullmatch(value)
                if not m:
                    raise APIError(400, f"invalid '{name}': expected a whole number in ASCII digits such as \"4\", "
                                        f"got {json.dumps(value)[:80]}", param=name, code="invalid_value")
                out[name] = int(m.group(1))
            elif float in kinds:
                number = float(value) if _FORM_FLOAT.fullmatch(value) else math.nan
                if not math.isfinite(number):
                    raise APIError(400, f"invalid '{name}': expected a number in ASCII digits such as \"1.5\", "
                                        f"got {json.dumps(value)[:80]}", param=name, code="invalid_value")
                out[name] = number
        return cls.model_validate(out)


def _arg_types(annotation) -> set:
    """The plain types a field takes: int | None -> {int, NoneType}; Annotated[int, ...] -> {int}."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set().union(*(_arg_types(a) for a in typing.get_args(annotation)))
    if typing.get_origin(annotation) is Annotated:
        return {typing.get_args(annotation)[0]}
    return {annotation}


class _Extensions(RequestBody):
    """genserve's fields beyond OpenAI's (pass them with the openai client's `extra_body`)."""

    # documents normalise_*'s rule: a deadline in seconds, or a scale of the isolated latency, not both
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["deadline_s", "sigma"],
        "properties": {"deadline_s": {"type": "number"}, "sigma": {"type": "number"}}}})

    num_inference_steps: WholeInt | None = _doc("Denoising steps (default: the model's).", minimum=1,
                                                maximum=_D.max_steps)
    guidance_scale: float | None = _doc("Classifier-free guidance scale.", minimum=0, maximum=100)
    seed: WholeInt | None = _doc("Random seed; images of one call use seed, seed+1, ...", minimum=0,
                                 maximum=SEED_MAX)
    negative_prompt: str | None = _doc(maxLength=_D.max_prompt_chars)
    deadline_s: float | None = _doc("SLO: finish within this many seconds from now (not with sigma).",
                                    exclusiveMinimum=0, maximum=7 * 86400)
    sigma: float | None = _doc("SLO scale: deadline = sigma x 1.5 x isolated latency (not with deadline_s).",
                               exclusiveMinimum=0, maximum=1000)


_SIZE_DOC = {"pattern": f"^(?:auto|{SIZE_PATTERN[1:-1]})?$"}


class ImageGenerationRequest(_Extensions):
    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "partial_images": "genserve answers once the images are done and does not stream partial images"}

    prompt: str = _prompt_doc("What to generate (not blank).", "a lighthouse at dawn")
    model: str | None = None
    n: WholeInt = Field(default=1, json_schema_extra={"minimum": 1, "maximum": _D.max_n})
    size: str | None = _doc('"WxH", e.g. "64x64"; "auto" = the model default.', **_SIZE_DOC)
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    user: str | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        default=None, description="png (default), jpeg or webp (converted from the model's PNG).")
    output_compression: WholeInt | None = Field(
        default=None, ge=0, le=100, description="jpeg/webp quality 0-100 (100 = least loss; default 100).")
    # OpenAI fields accepted for compatibility; only their defaults are meaningful here.
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    moderation: str | None = None
    safety_identifier: str | None = None
    stream: Annotated[Literal[False], BeforeValidator(_bool_only)] | None = None


class VideoCreateRequest(_Extensions):
    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "input_reference": "genserve generates videos from text only (no image-to-video); send a prompt"}

    prompt: str = _prompt_doc("What to generate (not blank).", "waves at dusk")
    model: str | None = None
    size: str | None = _doc('"WxH", e.g. "64x64".', **_SIZE_DOC)
    seconds: str | float | None = Field(default=None, description="Clip length; frames = 4*round(s*fps/4)+1.",
                                        json_schema_extra={"pattern": f"^(?:{SECONDS_PATTERN[1:-1]})?$",
                                                           "exclusiveMinimum": 0,
                                                           "maximum": _D.max_frames / _D.fps})
    num_frames: WholeInt | None = _doc("Frames (overrides seconds).", minimum=1, maximum=_D.max_frames)
    user: str | None = None


@dataclass
class JobSpec:
    """A validated request with every default filled in: what the store keeps and the engine receives."""

    kind: str  # image | video
    model: str
    prompt: str
    width: int
    height: int
    frames: int
    steps: int
    seed: int
    guidance_scale: float | None
    negative_prompt: str | None
    deadline_s: float | None
    sigma: float | None
    seconds: str
    user: str | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "JobSpec":
        # rows written before lone surrogates were refused hold them: U+FFFD, or no answer could be encoded
        return cls(**{k: _SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v
                      for k, v in ((k, d.get(k)) for k in cls.__dataclass_fields__)})


def _bad(message: str, param: str | None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def parse_size(size: str, param: str = "size") -> tuple[int, int]:
    m = SIZE_RE.fullmatch(size)
    if not m:
        raise _bad(f"invalid 'size' {size!r}: write it as WIDTHxHEIGHT in pixels, e.g. \"64x64\"", param,
                   "invalid_size")
    return int(m.group(1)), int(m.group(2))


def _model(settings: ServerSettings, name: str | None, kind: str) -> str:
    prof = settings.profile
    mine = prof.image_models if kind == "image" else prof.video_models
    other = prof.video_models if kind == "image" else prof.image_models
    if name is None or name == "":
        return prof.doc.defaults.image_model if kind == "image" else prof.doc.defaults.video_model
    if name in mine:
        return name
    if name in other:
        route = "POST /v1/videos" if kind == "image" else "POST /v1/images/generations"
        raise _bad(f"model {name!r} is a {'video' if kind == 'image' else 'image'} model; use {route}, or one of "
                   f"{sorted(mine)} here", "model", "wrong_modality")
    raise APIError(404, f"model {name!r} does not exist; available {kind} models: {sorted(mine)} "
                        "(GET /v1/models lists them)", param="model", code="model_not_found")


def _common(settings: ServerSettings, body: _Extensions, prompt: str, kind: str, model: str) -> dict:
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("'prompt' must not be empty; describe what to generate", "prompt", "empty_prompt")
    if len(prompt) > settings.max_prompt_chars:
        raise _bad(f"'prompt' is {len(prompt)} characters; the limit is {settings.max_prompt_chars}", "prompt",
                   "prompt_too_long")
    neg = body.negative_prompt
    if neg is not None and len(neg) > settings.max_prompt_chars:
        raise _bad(f"'negative_prompt' is longer than {settings.max_prompt_chars} characters", "negative_prompt",
                   "prompt_too_long")
    steps = body.num_inference_steps
    if steps is None:
        steps = settings.profile.default_steps(model)
    if not 1 <= steps <= settings.max_steps:
        raise _bad(f"'num_inference_steps' must be between 1 and {settings.max_steps}, got {steps}",
                   "num_inference_steps")
    g = body.guidance_scale
    if g is not None and not (0.0 <= g <= 100.0):
        raise _bad(f"'guidance_scale' must be between 0 and 100, got {g}", "guidance_scale")
    seed = body.seed
    if seed is None:
        seed = secrets.randbelow(2**31)
    if not 0 <= seed <= SEED_MAX:
        raise _bad(f"'seed' must be between 0 and {SEED_MAX}, got {seed}", "seed")
    if body.deadline_s is not None and body.sigma is not None:
        raise _bad("give either 'deadline_s' (seconds from now) or 'sigma' (SLO scale), not both", "deadline_s")
    if body.deadline_s is not None and not (0 < body.deadline_s <= 7 * 86400):
        raise _bad(f"'deadline_s' must be positive seconds (at most a week), got {body.deadline_s}", "deadline_s")
    if body.sigma is not None and not (0 < body.sigma <= 1000):
        raise _bad(f"'sigma' must be positive (1.0 = 1.5x the isolated latency), got {body.sigma}", "sigma")
    return dict(model=model, prompt=prompt, steps=steps, seed=seed, guidance_scale=g, negative_prompt=neg,
                deadline_s=body.deadline_s, sigma=body.sigma)


def _check_dims(settings: ServerSettings, w: int, h: int) -> None:
    if not (1 <= w <= settings.max_side and 1 <= h <= settings.max_side):
        raise _bad(f"'size' {w}x{h} is out of range: width and height must be 1..{settings.max_side}", "size",
                   "invalid_size")


def _check_profile(settings: ServerSettings, kind: str, model: str, w: int, h: int, frames: int) -> None:
    try:
        settings.profile.check_request(kind, model, w, h, frames)
    except ProfileError as e:
        what = f"{w}x{h}" + (f" with {frames} frames" if kind == "video" else "")
        sizes = settings.profile.doc.defaults.image_sizes if kind == "image" else settings.profile.doc.defaults.video_sizes
        shown = ", ".join("x".join(str(v) for v in s[:2]) + (f" ({s[2]} frames)" if len(s) > 2 else "") for s in sizes)
        raise _bad(f"model {model!r} cannot serve {what}: {e}. Sizes that work: {shown}", "size",
                   "unsupported_size") from None


def normalise_image(settings: ServerSettings, body: ImageGenerationRequest) -> JobSpec:
    model = _model(settings, body.model, "image")
    common = _common(settings, body, body.prompt, "image", model)
    if not 1 <= body.n <= settings.max_n:
        raise _bad(f"'n' must be between 1 and {settings.max_n}, got {body.n}", "n", "invalid_n")
    if body.size in (None, "", "auto"):
        w, h = settings.profile.doc.defaults.image_sizes[0]
    else:
        w, h = parse_size(body.size)
    _check_dims(settings, w, h)
    if common["seed"] + body.n - 1 > SEED_MAX:
        raise _bad(f"'seed' + n - 1 must not exceed {SEED_MAX}", "seed")
    _check_profile(settings, "image", model, w, h, 1)
    return JobSpec(kind="image", width=w, height=h, frames=1, seconds="0", user=body.user, **common)


def frames_for_seconds(seconds: float, fps: int) -> int:
    """Video DiTs (Wan) take 4k+1 frames: the nearest such count to seconds * fps."""
    return 4 * max(1, round(seconds * fps / 4)) + 1


def normalise_video(settings: ServerSettings, body: VideoCreateRequest) -> JobSpec:
    model = _model(settings, body.model, "video")
    common = _common(settings, body, body.prompt, "video", model)
    d_w, d_h, d_f = settings.profile.doc.defaults.video_sizes[0]
    if body.size in (None, "", "auto"):
        w, h = d_w, d_h
    else:
        w, h = parse_size(body.size)
    _check_dims(settings, w, h)
    seconds_in: float | None = None
    if body.seconds not in (None, ""):
        if isinstance(body.seconds, str) and not SECONDS_RE.fullmatch(body.seconds):  # float() takes "nan", "٤"
            raise _bad(f"'seconds' must be a number such as \"4\" or \"2.5\", got {json.dumps(body.seconds)[:80]}",
                       "seconds")
        seconds_in = float(body.seconds)
        if not (0 < seconds_in <= settings.max_frames / settings.fps):
            raise _bad(f"'seconds' must be positive and at most {settings.max_frames / settings.fps:g} "
                       f"({settings.max_frames} frames at {settings.fps} fps), got {body.seconds}", "seconds")
    if body.num_frames is not None:
        frames = body.num_frames
        if not 1 <= frames <= settings.max_frames:
            raise _bad(f"'num_frames' must be between 1 and {settings.max_frames}, got {frames}", "num_frames")
    elif seconds_in is not None:
        frames = min(frames_for_seconds(seconds_in, settings.fps), settings.max_frames)
    else:
        frames = d_f
    if seconds_in is not None and body.num_frames is None:
        seconds = f"{seconds_in:g}"
    else:
        seconds = f"{frames / settings.fps:g}"
    _check_profile(settings, "video", model, w, h, frames)
    return JobSpec(kind="video", width=w, height=h, frames=frames, seconds=str(seconds), user=body.user, **common)
