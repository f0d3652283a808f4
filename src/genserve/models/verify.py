"""`genserve models verify`: the checks that a bundled model runs correctly under genserve's step loop.

Each check yields one JSON-able dict {"check", "model", "ok", ...}:
  pipeline_equal  our prepare + step* + decode equals the diffusers pipeline call (same seed), torch.equal
  pause_resume    for every k: pausing before step k and resuming (in memory with another request interleaved,
                  through to_bytes/from_bytes, and in another worker process) gives the identical result
  sp              SP degrees > 1 over gloo (the adapter's step under sp_group) equal SP 1 within a tolerance
  batch           a batch of 2 (step_batch) equals the two single runs within a tolerance
The model is the real configuration at reduced depth (catalog.build_pipeline) with random weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from genserve.models import catalog
from genserve.models.state import State

# SP and batching change the order of floating-point sums, nothing else: differences are rounding noise,
# bounded relative to the output's magnitude (fp32: ~1e-6 measured; bf16 ~1e-2).
SP_RTOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}
BATCH_RTOL = SP_RTOL


@dataclass
class Options:
    name: str
    blocks: int = 1
    width: int | None = None
    height: int | None = None
    frames: int = 5
    steps: int = 3
    sp: tuple[int, ...] = (1, 2, 4)
    dtype: torch.dtype = torch.float32
    text_len: int = 32
    process: bool = True  # resume in another worker process too
    init: str = "fast"  # catalog.fast_fill; "torch" for the libraries' own initialisers
    overrides: dict | None = None  # {component: {config key: value}}


def default_size(e: catalog.Entry) -> tuple[int, int]:
    """The smallest size that keeps every code path: one size multiple (VAE factor x patch) high, two wide."""
    f = e.latent_factors()
    m = f["spatial"] * f["patch"]
    return 2 * m, m


def request(o: Options, e: catalog.Entry, seed: int = 7, prompt: str = "a red fox in the snow", **kw) -> dict:
    w, h = (o.width, o.height) if o.width else default_size(e)
    req = dict(prompt=prompt, width=w, height=h, steps=o.steps, seed=seed,
               frames=o.frames if e.modality == "video" else 1, negative_prompt="blurry")
    if e.pipeline == "WanImageToVideoPipeline":
        req["image"] = _image(w, h, seed)
    return req | kw


def _image(w: int, h: int, seed: int):
    """A seeded noise picture as the image-to-video conditioning frame."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())


def pipeline_call(adapter, e: catalog.Entry, req: dict, output_type: str = "pt") -> torch.Tensor:
    """The diffusers pipeline's own call for `req` (the reference our loop must reproduce)."""
    pipe = adapter.pipe
    g = adapter.default_guidance if req.get("guidance_scale") is None else req["guidance_scale"]
    kw = dict(height=req["height"], width=req["width"], num_inference_steps=req["steps"], output_type=output_type,
              generator=torch.Generator().manual_seed(req["seed"]), max_sequence_length=adapter.max_sequence_length)
    if e.family == "sd3":
        return pipe(req["prompt"], negative_prompt=req["negative_prompt"], guidance_scale=g, **kw).images[0]
    if e.family == "flux":
        return pipe(req["prompt"], guidance_scale=g, **kw).images[0]
    if e.family == "qwen-image":
        return pipe(req["prompt"], negative_prompt=req["negative_prompt"], true_cfg_scale=g, **kw).images[0]
    g2 = getattr(adapter, "default_guidance_2", None) if req.get("guidance_scale") is None else None
    if "image" in req:  # the I2V pipeline's own text encoding needs ftfy (see WanI2VAdapter.encode)
        e_ = adapter.encode(req["prompt"], req["negative_prompt"], g)
        kw |= {"image": req["image"], "prompt_embeds": e_["prompt_embeds"],
               "negative_prompt_embeds": e_.get("negative_prompt_embeds")}
        return pipe(num_frames=req["frames"], guidance_scale=g, guidance_scale_2=g2, **kw).frames[0]
    return pipe(prompt=req["prompt"], negative_prompt=req["negative_prompt"], num_frames=req["frames"],
                guidance_scale=g, guidance_scale_2=g2, **kw).frames[0]


def _latents_run(adapter, req, blobs: dict | None = None) -> State:
    """Denoise to the end; `blobs` collects State.to_bytes() before every step k >= 1."""
    state = adapter.prepare(req)
    while not state.done:
        if blobs is not None and state.step > 0:
            blobs[state.step] = state.to_bytes()
        adapter.step(state)
    return state


def _finish(adapter, state: State) -> State:
    while not state.done:
        adapter.step(state)
    return state


def _expert_trace(adapter, req) -> list[int]:
    """Which expert (1 or 2) ran each step: proves the A14B switch happens inside the run."""
    pipe = adapter.pipe
    seen: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda *_a, i=i: seen.append(i))
             for i, m in ((1, pipe.transformer), (2, getattr(pipe, "transformer_2", None))) if m is not None]
    try:
        state = adapter.prepare(req)
        per_step = []
        while not state.done:
            n = len(seen)
            adapter.step(state)
            per_step.append(seen[n])
    finally:
        for h in hooks:
            h.remove()
    return per_step


def _rel(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    diff = (a.float() - b.float()).abs().max().item()
    return diff, diff / max(b.float().abs().max().item(), 1e-12)


def verify(o: Options) -> Iterator[dict]:
    e = catalog.entry(o.name)
    t0 = time.perf_counter()
    adapter = catalog.bundled_adapter(o.name, blocks=o.blocks, dtype=o.dtype, text_len=o.text_len, init=o.init,
                                      overrides=o.overrides)
    base = {"model": o.name, "blocks": o.blocks, "dtype": str(o.dtype).removeprefix("torch.")}
    req = request(o, e)
    size = f"{req['width']}x{req['height']}" + (f"x{req['frames']}" if e.modality == "video" else "")
    yield base | {"check": "build", "ok": True, "seconds": round(time.perf_counter() - t0, 2), "size": size,
                  "steps": o.steps, "init": o.init, "overrides": o.overrides or {}}

    # 1. pipeline equality (and a negative control: another seed must change the result)
    t = time.perf_counter()
    blobs: dict[int, bytes] = {}
    full = _latents_run(adapter, req, blobs)  # the uninterrupted run; bytes of its State before every step k
    ours = adapter.decode(full)
    ref = pipeline_call(adapter, e, req)
    other = _latents_run(adapter, req | {"seed": req["seed"] + 1}).latents
    equal = bool(torch.equal(ours, ref))
    changed = not torch.equal(full.latents, other)
    yield base | {"check": "pipeline_equal", "ok": equal and changed, "equal": equal, "seed_changes_output": changed,
                  "shape": list(ours.shape), "seconds": round(time.perf_counter() - t, 2)}

    # 2. pause / resume at every step boundary k (final latents compared; decoding them is check 1's business)
    t = time.perf_counter()
    rows = {}
    for k, blob in sorted(blobs.items()):
        # in memory: the paused State stays put while another request takes a step on the same adapter
        paused = adapter.prepare(req)
        while paused.step < k:
            adapter.step(paused)
        adapter.step(adapter.prepare(req | {"seed": 99, "prompt": "an interleaved request"}))
        mem = _finish(adapter, adapter.resume(paused))
        byt = _finish(adapter, adapter.resume(State.from_bytes(blob, adapter.device)))
        rows[k] = {"memory": bool(torch.equal(mem.latents, full.latents)),
                   "bytes": bool(torch.equal(byt.latents, full.latents))}
    process_ok = None
    if o.process and blobs:
        from genserve.models.verify_ranks import resume_in_process

        got = resume_in_process(adapter, e, blobs)
        for k, lat in got.items():
            rows[k]["process"] = bool(torch.equal(lat, full.latents))
        process_ok = all(r["process"] for r in rows.values())
    info = {}
    if "transformer_2" in e.components:
        trace = _expert_trace(adapter, req)
        switch = trace.index(2) if 2 in trace else None
        info = {"experts_per_step": trace, "switch_step": switch,
                "crosses_switch": switch is not None and 0 < switch < o.steps and switch in blobs}
    ok = bool(rows) and all(all(r.values()) for r in rows.values())
    if info:
        ok = ok and info["crosses_switch"]
    yield base | {"check": "pause_resume", "ok": ok, "ks": sorted(rows), "per_k": rows, "process": process_ok,
                  **info, "seconds": round(time.perf_counter() - t, 2)}

    # 3. sequence parallelism (video families: genserve runs images at SP 1 and batches them instead)
    degrees = [p for p in o.sp if p > 1]
    if e.family == "wan" and degrees:
        from genserve.models.verify_ranks import sp_runs

        t = time.perf_counter()
        got = sp_runs(adapter, e, req, degrees)
        tol = SP_RTOL[o.dtype]
        results = []
        for (p, mode), lat in sorted(got.items()):
            diff, rel = _rel(lat, full.latents)
            results.append({"degree": p, "mode": mode, "max_abs_diff": diff, "rel_diff": rel, "ok": rel <= tol})
        yield base | {"check": "sp", "ok": bool(results) and all(r["ok"] for r in results), "rtol": tol,
                      "heads": e.heads, "runs": results, "seconds": round(time.perf_counter() - t, 2)}
    elif degrees:
        yield base | {"check": "sp", "ok": True, "skipped": "images run at SP 1 (genserve batches images instead)"}

    # 4. batching
    if e.modality == "image" and e.family != "qwen-image":
        t = time.perf_counter()
        reqs = [req, request(o, e, seed=11, prompt="a blue boat on a lake", guidance_scale=e.default_guidance + 1)]
        singles = [_latents_run(adapter, r) for r in reqs]
        states = [adapter.prepare(r) for r in reqs]
        while not all(s.done for s in states):
            adapter.step_batch(states)
        tol = BATCH_RTOL[o.dtype]
        diffs = [_rel(b.latents, s.latents) for b, s in zip(states, singles)]
        distinct = not torch.equal(singles[0].latents, singles[1].latents)
        yield base | {"check": "batch", "ok": distinct and all(r <= tol for _, r in diffs), "rtol": tol,
                      "max_abs_diff": max(d for d, _ in diffs), "rel_diff": max(r for _, r in diffs),
                      "members_differ": distinct, "seconds": round(time.perf_counter() - t, 2)}
    elif e.modality == "image":
        yield base | {"check": "batch", "ok": True, "skipped": "Qwen-Image steps requests one by one (text masks)"}
