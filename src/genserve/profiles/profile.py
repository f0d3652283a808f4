"""Latency lookup over a profile.

Interpolation: piecewise-linear in pixel count (width*height for images, width*height*frames for videos),
which is proportional to the DiT token count, between the two nearest profiled points. Batch sizes between
profiled ones are interpolated linearly in b; SP degrees must be profiled exactly. Anything outside the
profiled range raises ProfileError: we never extrapolate a latency the scheduler would then trust.
Lookups are memoised: policies call them thousands of times per round.
"""

from __future__ import annotations

import bisect
import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from genserve.core.errors import ProfileError
from genserve.profiles.schema import ImageModel, ProfileDoc, VideoModel

BUNDLED = ("paper", "tiny-cpu", "paper-fit")


def _interp(xs: list[float], ys: list[float], x: float, what: str) -> float:
    if x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        raise ProfileError(f"{what} is outside the profiled range")
    i = bisect.bisect_left(xs, x)
    if i < len(xs) and abs(xs[i] - x) <= 1e-9:
        return ys[i]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Profile:
    """A loaded, validated profile with memoised lookups."""

    def __init__(self, doc: ProfileDoc, source: str = "<memory>") -> None:
        self.doc = doc
        self.name = doc.name
        self.source = source
        self._cache: dict[tuple, float] = {}
        self._img = {m: self._image_axes(spec) for m, spec in doc.image_models.items()}
        self._vid = {m: self._video_axes(spec) for m, spec in doc.video_models.items()}

    # ---- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<memory>") -> "Profile":
        try:
            return cls(ProfileDoc.model_validate(data), source)
        except PydanticValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise ProfileError(f"invalid profile {source}: {loc}: {err['msg']}") from None

    @classmethod
    def load(cls, name_or_path: str | Path) -> "Profile":
        """Load a bundled profile by name (`paper`, `tiny-cpu`) or a JSON file by path."""
        text: str
        key = str(name_or_path)
        if key in BUNDLED:
            text = resources.files("genserve.profiles").joinpath("data", f"{key}.json").read_text()
        else:
            path = Path(key)
            if not path.is_file():
                raise ProfileError(f"no profile {key!r}: not a bundled name ({', '.join(BUNDLED)}) nor a file")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProfileError(f"profile {key}: invalid JSON at line {e.lineno}: {e.msg}") from None
        return cls.from_dict(data, key)

    def to_dict(self) -> dict[str, Any]:
        return self.doc.model_dump(mode="json", by_alias=True, exclude_none=True)  # absent optional fields stay absent

    def scaled(self, image_k: float, video_k: float, name: str | None = None) -> "Profile":
        """A copy with every image time multiplied by `image_k` and every video time by `video_k`.

        Used to fit a bundled profile to the speed measured on this machine (e.g. tiny-cpu on a loaded CPU box), so
        that deadlines and the policy's estimates match the real clock.
        """
        if image_k <= 0 or video_k <= 0:
            raise ProfileError(f"scale factors must be positive, got {image_k} and {video_k}")

        def scale(obj: Any, k: float, timed: bool = False) -> Any:
            if isinstance(obj, dict):
                return {key: scale(v, k, timed or str(key).endswith("_s")) for key, v in obj.items()}
            if isinstance(obj, list):
                return [scale(v, k, timed) for v in obj]
            if timed and isinstance(obj, (int, float)) and not isinstance(obj, bool):
                return obj * k
            return obj

        d = self.to_dict()
        d["image_models"] = scale(d["image_models"], image_k)
        d["video_models"] = scale(d["video_models"], video_k)
        d["name"] = name or f"{self.name}-x{image_k:.3g}-{video_k:.3g}"
        return Profile.from_dict(d, source=f"scaled({self.source})")

    # ---- axes ----------------------------------------------------------------------------------------
    @staticmethod
    def _image_axes(spec: ImageModel) -> dict[str, Any]:
        pts = sorted(spec.points, key=lambda p: p.width * p.height)
        batches = sorted(pts[0].step_s)
        return {
            "x": [float(p.width * p.height) for p in pts],
            "batches": batches,
            "step": {b: [p.step_s[b] for p in pts] for b in batches},
            "decode": {b: [p.decode_s[b] + (p.write_s[b] if p.write_s else 0.0) for p in pts] for b in batches}
            if any(p.write_s for p in pts) else {b: [p.decode_s[b] for p in pts] for b in batches},
        }

    @staticmethod
    def _video_axes(spec: VideoModel) -> dict[str, Any]:
        pts = sorted(spec.points, key=lambda p: p.width * p.height * p.frames)
        degrees = sorted(pts[0].step_s)
        return {
            "x": [float(p.width * p.height * p.frames) for p in pts],
            "degrees": degrees,
            "step": {d: [p.step_s[d] for p in pts] for d in degrees},
            "decode": [p.decode_s + (p.write_s or 0.0) for p in pts] if any(p.write_s for p in pts)
            else [p.decode_s for p in pts],  # decode_s exactly when no point has write_s
        }

    def _image_model(self, model: str) -> ImageModel:
        try:
            return self.doc.image_models[model]
        except KeyError:
            raise ProfileError(
                f"unknown image model {model!r} in profile {self.name!r}; known: {sorted(self.doc.image_models)}"
            ) from None

    def _video_model(self, model: str) -> VideoModel:
        try:
            return self.doc.video_models[model]
        except KeyError:
            raise ProfileError(
                f"unknown video model {model!r} in profile {self.name!r}; known: {sorted(self.doc.video_models)}"
            ) from None

    # ---- queries -------------------------------------------------------------------------------------
    @property
    def image_models(self) -> list[str]:
        return list(self.doc.image_models)

    @property
    def video_models(self) -> list[str]:
        return list(self.doc.video_models)

    def _any_model(self, model: str) -> ImageModel | VideoModel:
        spec = self.doc.image_models.get(model) or self.doc.video_models.get(model)
        if spec is None:
            raise ProfileError(
                f"unknown model {model!r} in profile {self.name!r}; known image models: "
                f"{sorted(self.doc.image_models)}, video models: {sorted(self.doc.video_models)}"
            )
        return spec

    def default_steps(self, model: str) -> int:
        return self._any_model(model).default_steps

    def max_batch(self, model: str) -> int:
        self._image_model(model)
        return self._img[model]["batches"][-1]

    def degrees(self, model: str) -> list[int]:
        self._video_model(model)
        return self._vid[model]["degrees"]

    def _batch_interp(self, table: dict[int, list[float]], batches: list[int], xs: list[float], x: float,
                      b: int, what: str) -> float:
        if b < 1 or b > batches[-1]:
            raise ProfileError(f"{what}: batch {b} is outside the profiled batch sizes {batches}")
        at = [_interp(xs, table[bb], x, what) for bb in batches]
        return _interp([float(bb) for bb in batches], at, float(b), what)

    def image_latency(self, model: str, width: int, height: int, batch: int = 1, steps: int | None = None) -> float:
        """T_img: end-to-end seconds for a batch of `batch` images of width x height."""
        key = ("img", model, width, height, batch, steps)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        spec = self._image_model(model)
        ax = self._img[model]
        what = f"image {model} {width}x{height} batch {batch}"
        n = spec.default_steps if steps is None else steps
        x = float(width * height)
        step = self._batch_interp(ax["step"], ax["batches"], ax["x"], x, batch, what)
        decode = self._batch_interp(ax["decode"], ax["batches"], ax["x"], x, batch, what)
        enc = spec.text_encode_s if spec.prepare_s is None else batch * spec.prepare_s
        value = enc + n * step + decode
        self._cache[key] = value
        return value

    def video_step(self, model: str, width: int, height: int, frames: int, degree: int = 1) -> float:
        """T_step: seconds for one DiT denoising step at SP degree `degree`."""
        key = ("step", model, width, height, frames, degree)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        self._video_model(model)
        ax = self._vid[model]
        what = f"video {model} {width}x{height}x{frames}f"
        if degree not in ax["step"]:
            raise ProfileError(f"{what}: SP degree {degree} is not profiled (profiled: {ax['degrees']})")
        value = _interp(ax["x"], ax["step"][degree], float(width * height * frames), what)
        self._cache[key] = value
        return value

    def video_decode(self, model: str, width: int, height: int, frames: int) -> float:
        key = ("dec", model, width, height, frames)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        self._video_model(model)
        ax = self._vid[model]
        value = _interp(ax["x"], ax["decode"], float(width * height * frames), f"video {model} {width}x{height}x{frames}f")
        self._cache[key] = value
        return value

    def text_encode(self, model: str) -> float:
        spec = self._any_model(model)
        return spec.text_encode_s if spec.prepare_s is None else spec.prepare_s

    def dispatch_cost(self, model: str) -> float:
        """Per command on a live engine (0.0 unless the profile measured it)."""
        return self._any_model(model).dispatch_s or 0.0

    def busy_factor(self, model: str, decode: bool = False) -> float:
        """Slowdown of a command with every device busy (1.0 unless the profile measured it, schema.py)."""
        spec = self._any_model(model)
        f = getattr(spec, "busy_decode_factor", None) if decode else None
        return f or spec.busy_factor or 1.0

    def handover_cost(self, model: str, degree: int) -> float | None:
        """Moving a state from a holder outside the new group of `degree`; None unless the profile measured it."""
        table = self._video_model(model).handover_s
        return None if table is None else self._lookup_degree(table, model, degree, "handover_s")

    def pause_cost(self, model: str) -> float:
        return self._video_model(model).pause_s

    def resume_cost(self, model: str, degree: int) -> float:
        return self._lookup_degree(self._video_model(model).resume_s, model, degree, "resume_s")

    def reconfigure_cost(self, model: str, degree: int) -> float:
        return self._lookup_degree(self._video_model(model).reconfigure_s, model, degree, "reconfigure_s")

    @staticmethod
    def _lookup_degree(table: dict[int, float], model: str, degree: int, what: str) -> float:
        try:
            return table[degree]
        except KeyError:
            raise ProfileError(f"{model}: {what} has no SP degree {degree} (profiled: {sorted(table)})") from None

    def isolated_latency(self, modality: str, model: str, width: int, height: int, frames: int = 1,
                         steps: int | None = None) -> float:
        """One GPU, batch 1, SP 1, encode + steps + decode: the base of every deadline."""
        if str(getattr(modality, "value", modality)) == "image":
            return self.image_latency(model, width, height, 1, steps)
        n = self._video_model(model).default_steps if steps is None else steps
        return (
            self.text_encode(model)
            + n * self.video_step(model, width, height, frames, 1)
            + self.video_decode(model, width, height, frames)
        )

    def check_request(self, modality: str, model: str, width: int, height: int, frames: int = 1) -> None:
        """Raise ProfileError when the profile cannot estimate this request."""
        self.isolated_latency(modality, model, width, height, frames)
