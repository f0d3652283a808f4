"""Helpers for the live tests (requests, events, raw outputs)."""

from __future__ import annotations

import queue
import time

from genserve.core.request import Request

SP_FRAME_TOL = 1e-3  # decoded frames in [0, 1] after a whole denoising loop through other SP degrees
BATCH_PIXEL_TOL = 1e-3  # decoded images: batched vs alone (different matmul shapes)


def video(rid: str, *, w=32, h=32, frames=5, steps=8, seed=1, arrival=0.0, deadline=1e6, prompt=None) -> Request:
    return Request(id=rid, modality="video", model="tiny-wan", prompt=prompt or f"a video of {rid}", width=w,
                   height=h, frames=frames, steps=steps, seed=seed, arrival=arrival, deadline=deadline)


def image(rid: str, *, size=32, steps=4, seed=1, arrival=0.0, deadline=1e6, prompt=None) -> Request:
    return Request(id=rid, modality="image", model="tiny-sd3", prompt=prompt or f"an image of {rid}", width=size,
                   height=size, steps=steps, seed=seed, arrival=arrival, deadline=deadline)


def clone(r: Request, rid: str, **kw) -> Request:
    fields = dict(id=rid, modality=r.modality, model=r.model, prompt=r.prompt, width=r.width, height=r.height,
                  frames=r.frames, steps=r.steps, seed=r.seed, arrival=r.arrival, deadline=r.deadline)
    fields.update(kw)
    return Request(**fields)


def wait_event(q: "queue.Queue", kinds: tuple[str, ...], rid: str | None = None, timeout: float = 60.0):
    """The next event of one of `kinds` (for `rid` if given); Failed events always return."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {kinds} event for {rid} within {timeout}s")
        ev = q.get(timeout=left)
        name = type(ev).__name__
        if name == "Failed":
            return ev
        if name in kinds and (rid is None or getattr(ev, "request_id", None) == rid
                              or rid in getattr(ev, "request_ids", ())):
            return ev


def load_raw(path: str):
    import torch

    return torch.load(path + ".pt", weights_only=True)


def sp_speedup_profile(prof, speedups=None):
    """A copy of `prof` whose SP p step is the SP 1 step divided by speedups[p] (default 1.5 at SP 2, 1.8 at SP 4,
    what SP gives on GPUs). The measured tiny-cpu profile has SP slower than SP 1 (2 shared cores, gloo), so a
    policy reading it never uses SP; tests of the SP and preemption mechanism under a policy use this on purpose."""
    from genserve.profiles import Profile

    speedups = speedups or {2: 1.5, 4: 1.8, 8: 2.0}
    d = prof.to_dict()
    for spec in d["video_models"].values():
        for p in spec["points"]:
            s1 = p["step_s"]["1"]
            p["step_s"] = {k: (s1 if k == "1" else s1 / speedups[int(k)]) for k in p["step_s"]}
    d["name"] = f"{prof.name}-sp-speedup"
    return Profile.from_dict(d, source=f"sp_speedup({prof.source})")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
