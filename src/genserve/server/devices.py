"""`genserve serve --devices`: a device list (cuda:0,cuda:1 / cpu,cpu) or a count, checked with clear errors."""

from __future__ import annotations

import os
import re

from genserve.core.errors import ValidationError

_CUDA = re.compile(r"cuda:(\d+)")


def parse_devices(devices: str | None, workers: int | None, device: str | None) -> list[str]:
    """The worker devices, e.g. ["cuda:0", "cuda:1"] or ["cpu", "cpu"].

    devices: "cuda:0,cuda:1", "cpu,cpu" or a count ("4", of kind `device`); workers: a count (--workers);
    device: "cpu" or "cuda", the kind of a count (default cpu)."""
    if device is not None and device not in ("cpu", "cuda"):
        raise ValidationError(f"--device must be cpu or cuda, got {device!r}")
    if devices is not None and workers is not None:
        raise ValidationError("give either --devices (a list or a count) or --workers (a count), not both")
    if devices is None or devices.strip().isdigit():
        n = workers if devices is None else int(devices)
        n = 2 if n is None else n
        if n <= 0:
            raise ValidationError(f"the number of devices must be positive, got {n}")
        return ["cpu"] * n if device in (None, "cpu") else [f"cuda:{i}" for i in range(n)]
    items = [d.strip().lower() for d in devices.split(",")]
    for d in items:
        if d != "cpu" and not _CUDA.fullmatch(d):
            what = "an empty entry" if not d else repr(d)
            raise ValidationError(f"--devices: {what} is not a device; give a list like cuda:0,cuda:1 or "
                                  "cpu,cpu, or a count like 4")
    kinds = {"cpu" if d == "cpu" else "cuda" for d in items}
    if len(kinds) > 1:
        raise ValidationError(f"--devices mixes CPU slots and GPUs ({devices}); use one kind")
    if device is not None and kinds != {device}:
        raise ValidationError(f"--device {device} contradicts --devices {devices}")
    dup = sorted({d for d in items if d != "cpu" and items.count(d) > 1})
    if dup:
        raise ValidationError(f"--devices names {', '.join(dup)} more than once; one worker per GPU")
    return items


def pin_gpus(devices: list[str]) -> list[str]:
    """Workers use cuda:0..n-1 (worker i on cuda:i). For another set of GPUs, make exactly those visible, in
    that order, through CUDA_VISIBLE_DEVICES (composed with one already set); returns the devices to use."""
    if not devices or devices[0] == "cpu":
        return devices
    wanted = [int(_CUDA.fullmatch(d).group(1)) for d in devices]
    if wanted == list(range(len(wanted))):
        return devices
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else None
    if ids is not None and max(wanted) >= len(ids):
        raise ValidationError(f"--devices names cuda:{max(wanted)}, but CUDA_VISIBLE_DEVICES={visible} shows "
                              f"only {len(ids)} GPUs")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids[i] if ids is not None else str(i) for i in wanted)
    return [f"cuda:{i}" for i in range(len(wanted))]
