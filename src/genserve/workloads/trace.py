"""JSONL traces: one request per line.

Schema (`genserve.trace/v1`), one JSON object per line:
    id          str      unique within the trace
    modality    "image" | "video"
    model       str      a model name the profile (and the engine) knows
    prompt      str      non-empty
    width       int > 0
    height      int > 0
    frames      int > 0  1 for images (default 1)
    steps       int > 0  denoising steps (default: the model's default in the profile)
    seed        int >= 0
    arrival     float >= 0, seconds from the start of the trace; lines need not be sorted
    deadline    float    optional: absolute deadline in seconds (same clock as arrival)
    sigma       float    optional: deadline = arrival + sigma * 1.5 * isolated latency
When neither deadline nor sigma is given, the caller's sigma applies (e.g. `genserve simulate --sigma`),
so one trace can be replayed at several SLO scales.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genserve.core.errors import ProfileError, TraceError
from genserve.core.request import Modality, Request

SLO_FACTOR = 1.5  # AlpaServe's convention, kept by the paper: deadline = sigma * 1.5 * isolated latency


class TraceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    modality: Literal["image", "video"]
    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    frames: int = Field(default=1, gt=0)
    steps: int | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    arrival: float = Field(ge=0)
    deadline: float | None = None
    sigma: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "TraceRecord":
        if self.modality == "image" and self.frames != 1:
            raise ValueError("frames must be 1 for an image")
        if self.deadline is not None and self.deadline < self.arrival:
            raise ValueError("deadline is before arrival")
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(exclude_none=True), separators=(",", ":"))


DEADLINE_BASES = ("sp1", "sp2", "sp4", "sp8", "fastest")


def isolated_latency(profile, modality: str, model: str, width: int, height: int, frames: int, steps: int | None,
                     basis: str = "sp1") -> float:
    """The isolated end-to-end latency a deadline is based on.

    basis "sp1" (default): one GPU, batch 1, SP 1, encode + steps + decode (profile.isolated_latency).
    basis "sp2" / "sp4" / "sp8": a video at that SP degree (the highest profiled degree not above it);
    "fastest": a video at its fastest profiled SP degree. Images: batch 1 on one GPU under every basis. The paper
    says only "offline end-to-end latency"; which configuration it means is one of the unknowns fitted in
    genserve/experiments/fit.py."""
    if basis not in DEADLINE_BASES:
        raise ValueError(f"unknown deadline basis {basis!r}; choose one of {', '.join(DEADLINE_BASES)}")
    if basis == "sp1" or str(getattr(modality, "value", modality)) == "image":
        return profile.isolated_latency(modality, model, width, height, frames, steps)
    n = profile.default_steps(model) if steps is None else steps
    degrees = profile.degrees(model)
    if basis == "fastest":
        step = min(profile.video_step(model, width, height, frames, p) for p in degrees)
    else:
        cap = int(basis[2:])
        step = profile.video_step(model, width, height, frames, max([p for p in degrees if p <= cap] or [1]))
    return profile.text_encode(model) + n * step + profile.video_decode(model, width, height, frames)


def deadline_for(profile, modality: str, model: str, width: int, height: int, frames: int, steps: int | None,
                 arrival: float, sigma: float, basis: str = "sp1") -> float:
    """arrival + sigma * 1.5 * isolated latency (default basis "sp1": one GPU, batch 1, SP 1, encode + steps +
    decode; see `isolated_latency`)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if basis == "sp1":
        return arrival + sigma * SLO_FACTOR * profile.isolated_latency(modality, model, width, height, frames, steps)
    return arrival + sigma * SLO_FACTOR * isolated_latency(profile, modality, model, width, height, frames, steps,
                                                           basis)


def write_trace(records: Iterable[TraceRecord], path: str | Path) -> None:
    text = "".join(r.to_json() + "\n" for r in records)
    Path(path).write_text(text)


def read_trace(path: str | Path) -> list[TraceRecord]:
    """Parse and validate a JSONL trace; errors name the line and the field."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise TraceError(f"cannot read trace {path}: {e.strerror}") from None
    out: list[TraceRecord] = []
    seen: set[str] = set()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(f"{path}:{no}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise TraceError(f"{path}:{no}: expected a JSON object")
        try:
            rec = TraceRecord.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(record)"
            raise TraceError(f"{path}:{no}: field {field!r}: {err['msg']}") from None
        if rec.id in seen:
            raise TraceError(f"{path}:{no}: field 'id': duplicate id {rec.id!r}")
        seen.add(rec.id)
        out.append(rec)
    return out


def to_requests(records: Iterable[TraceRecord], profile, sigma: float = 1.0, basis: str = "sp1") -> list[Request]:
    """Turn records into requests sorted by arrival, filling steps and deadlines from the profile (`basis`: which
    configuration's isolated latency the deadlines use, see `isolated_latency`)."""
    out = []
    for rec in records:
        try:
            steps = rec.steps or profile.default_steps(rec.model)
            if rec.deadline is not None:
                deadline = rec.deadline
            else:
                deadline = deadline_for(profile, rec.modality, rec.model, rec.width, rec.height, rec.frames, steps,
                                        rec.arrival, rec.sigma or sigma, basis)
        except ProfileError as e:
            raise TraceError(f"request {rec.id!r}: {e}") from None
        out.append(Request(id=rec.id, modality=Modality(rec.modality), model=rec.model, prompt=rec.prompt,
                           width=rec.width, height=rec.height, frames=rec.frames, steps=steps, seed=rec.seed,
                           arrival=rec.arrival, deadline=deadline))
    out.sort(key=lambda r: (r.arrival, r.id))
    return out
