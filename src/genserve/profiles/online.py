"""Online profile correction: learn how far the real step times drift from the offline profile, and correct the
estimates the controller and the policies use (beyond the paper, which trusts its offline profile; spec 10).

`OnlineCorrection` keeps, per key, an exponentially weighted moving average (EWMA) of measured / predicted:

* video steps: key ("step", model, width, height, frames, degree); the measurement is a `StepDone.duration` of a
  plain step (no text encode, resume or reconfigure inside it), the prediction the offline `video_step`;
* image batches: key ("image", model, width, height, batch); the measurement is `BatchDone.duration` (end to
  end), the prediction the offline `image_latency` of that batch.

A factor applies once its key has `min_samples` samples; before that, the model's own factor (every key of the same
kind and model pooled) applies once the model has `min_samples` samples, since drift is usually machine wide (a
slower or loaded device), else 1. Factors are clamped to [lo, hi]. The first sample of a key seeds its average.
Ratios within `deadband` of 1 count as exactly 1, so that an executor that follows the profile (the simulator)
leaves every factor at exactly 1.0 and every estimate bit for bit unchanged.

`CorrectedProfile(base, correction)` is a `Profile`-compatible view: `video_step`, `image_latency` and
`isolated_latency` are multiplied by the current factor, everything else (doc, degrees, max_batch, decode, pause /
resume / reconfigure costs, text encode) is the base profile's. Policies keep calling the same methods.
Torch-free (control plane).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CorrectedProfile", "OnlineCorrection"]


class OnlineCorrection:
    """Per-key EWMA of measured / predicted latency ratios. See the module docstring."""

    def __init__(self, alpha: float = 0.3, lo: float = 0.25, hi: float = 4.0, min_samples: int = 3,
                 deadband: float = 1e-9, pool_models: bool = True) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"bounds must satisfy 0 < lo <= 1 <= hi, got {lo}, {hi}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        self.alpha, self.lo, self.hi = alpha, lo, hi
        self.min_samples = min_samples
        self.deadband = deadband
        self.pool_models = pool_models
        self._ewma: dict[tuple, float] = {}  # key -> EWMA of the ratio
        self._n: dict[tuple, int] = {}
        self._model: dict[tuple, float] = {}  # (kind, model) -> EWMA over all its keys
        self._model_n: dict[tuple, int] = {}
        self.samples = 0
        self.skipped = 0  # measurements not used (no positive duration or prediction)

    # ---- learning ------------------------------------------------------------------------------------------------
    def observe(self, key: tuple, measured: float, predicted: float) -> None:
        if not (measured > 0 and predicted > 0):
            self.skipped += 1
            return
        ratio = measured / predicted
        if abs(ratio - 1.0) <= self.deadband:
            ratio = 1.0
        ratio = min(self.hi, max(self.lo, ratio))
        self.samples += 1
        self._update(self._ewma, self._n, key, ratio)
        self._update(self._model, self._model_n, key[:2], ratio)

    def _update(self, avg: dict, count: dict, key: tuple, ratio: float) -> None:
        old = avg.get(key)
        avg[key] = ratio if old is None else old + self.alpha * (ratio - old)
        count[key] = count.get(key, 0) + 1

    def observe_step(self, model: str, width: int, height: int, frames: int, degree: int, measured: float,
                     predicted: float) -> None:
        self.observe(("step", model, width, height, frames, degree), measured, predicted)

    def observe_batch(self, model: str, width: int, height: int, batch: int, measured: float,
                      predicted: float) -> None:
        self.observe(("image", model, width, height, batch), measured, predicted)

    # ---- reading -------------------------------------------------------------------------------------------------
    def factor(self, key: tuple) -> float:
        if self._n.get(key, 0) >= self.min_samples:
            f = self._ewma[key]
        elif self.pool_models and self._model_n.get(key[:2], 0) >= self.min_samples:
            f = self._model[key[:2]]
        else:
            return 1.0
        return min(self.hi, max(self.lo, f))

    def factors(self) -> dict[str, float]:
        """Applied factors of every key seen, as 'kind:model:WxH[xF]:b|pN' -> factor (for metrics and reports)."""
        out = {}
        for key in self._ewma:
            if key[0] == "step":
                name = f"step:{key[1]}:{key[2]}x{key[3]}x{key[4]}:p{key[5]}"
            else:
                name = f"image:{key[1]}:{key[2]}x{key[3]}:b{key[4]}"
            out[name] = self.factor(key)
        return out

    def __repr__(self) -> str:
        return f"OnlineCorrection(samples={self.samples}, keys={len(self._ewma)})"


class CorrectedProfile:
    """A Profile-compatible view whose step and batch latencies follow the online correction."""

    def __init__(self, base, correction: OnlineCorrection | None = None) -> None:
        self.base = base
        self.correction = correction if correction is not None else OnlineCorrection()
        self.name = base.name
        self.doc = base.doc
        self.source = getattr(base, "source", "<memory>")

    def __getattr__(self, name: str) -> Any:  # everything not corrected is the base profile's
        if name == "base":  # not set yet (copy / unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def video_step(self, model: str, width: int, height: int, frames: int, degree: int = 1) -> float:
        t = self.base.video_step(model, width, height, frames, degree)
        return t * self.correction.factor(("step", model, width, height, frames, degree))

    def image_latency(self, model: str, width: int, height: int, batch: int = 1, steps: int | None = None) -> float:
        t = self.base.image_latency(model, width, height, batch, steps)
        return t * self.correction.factor(("image", model, width, height, batch))

    def isolated_latency(self, modality: str, model: str, width: int, height: int, frames: int = 1,
                         steps: int | None = None) -> float:
        if str(getattr(modality, "value", modality)) == "image":
            return self.image_latency(model, width, height, 1, steps)
        n = self.base.default_steps(model) if steps is None else steps
        return (self.base.text_encode(model) + n * self.video_step(model, width, height, frames, 1)
                + self.base.video_decode(model, width, height, frames))

    def __repr__(self) -> str:
        return f"CorrectedProfile({self.name!r}, {self.correction!r})"
