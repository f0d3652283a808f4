"""`genserve profile`: measure a real image/video model pair on this machine's devices and write a profile JSON
(`genserve.profile/v1`, see schema.py) that the scheduler and the simulator can trust.

How it measures. One process per device (`genserve.parallel.run_ranks`: the same torch.distributed world, gloo on
CPU / NCCL on CUDA, one intra-op thread per CPU slot, as the LocalExecutor's workers run). Only one group works at
a time while the other ranks wait at a barrier; each timing is the slowest member's (max over ranks), the median
of `repeats` after `warmup` untimed runs.

* image model (rank 0 alone): text encode (`adapter.encode`, once per batch in T_img); per resolution and batch
  size b in 1/2/4/8: one denoising step of b requests (`step_batch`) and the VAE decode of b images
  (`decode_batch`), as the worker's `op_batch` runs them.
* video model: per (width, height, frames) point and every SP degree p the device count allows (1, 2, 4, 8 up
  to the number of devices; groups (0..p-1)): one DiT denoising step (`WanAdapter.step`, under `sp_group` for
  p > 1, exactly as the worker's `_sp_step`); the VAE decode (rank 0); text encode.
* pause (the worker keeps the state where it is: `adapter.pause`), resume at degree p (the paused state moves from
  its holder, rank 0, to the group (0..p-1): `State.to_bytes`, `move_bytes`, `State.from_bytes`, as the worker's
  `_move`; p = 1 is the in-place `adapter.resume`), reconfigure at degree p (a running state moves from rank 0 to
  a group that does not contain it, the last p ranks; to (0..p-1) when p is every device), at the largest point.

torch is imported lazily, inside functions: `genserve.profiles` stays torch-free at import.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from genserve.profiles.schema import SCHEMA_ID

DEFAULT_BATCHES = (1, 2, 4, 8)
MIN_TIMED_S = 0.25  # keep sampling a cheap operation until this much time has been timed ...
MAX_REPEAT_FACTOR = 10  # ... or this many times `repeats` samples
DEFAULT_MAX_STEPS = 200  # the adapters' step limit (models.base.DEFAULT_MAX_STEPS)
PROMPT = "a red fox in the snow, profile run"


def default_grid(base: str = "tiny-cpu") -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """The resolution points of a bundled profile (they cover its defaults): what a re-measurement keeps."""
    from genserve.profiles.profile import Profile

    doc = Profile.load(base).doc
    img = doc.image_models[doc.defaults.image_model].points
    vid = doc.video_models[doc.defaults.video_model].points
    return ([(p.width, p.height) for p in img], [(p.width, p.height, p.frames) for p in vid])


def parse_sizes(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """'32x32,64x64,64x64x9,64x64x17': WxH are image points, WxHxF video points."""
    img, vid = [], []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.lower().split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"bad size {item!r}: use WxH (image) or WxHxF (video)") from None
        if len(nums) == 2:
            img.append((nums[0], nums[1]))
        elif len(nums) == 3:
            vid.append((nums[0], nums[1], nums[2]))
        else:
            raise ValueError(f"bad size {item!r}: use WxH (image) or WxHxF (video)")
    return img, vid


def _opt(default, *names, help: str = ""):  # noqa: A002 - typer's keyword
    import typer

    return typer.Option(default, *names, help=help)


def sp_degrees(n_devices: int) -> list[int]:
    return [p for p in (1, 2, 4, 8, 16) if p <= n_devices]


# ---- per-rank program ------------------------------------------------------------------------------------------
class _Solo:
    """Where a one-device operation runs: a truthy/falsy marker `timed` recognises (mean over ranks when busy)."""

    __slots__ = ("on",)

    def __init__(self, on: bool) -> None:
        self.on = on

    def __bool__(self) -> bool:
        return self.on


def _rank_profile(rank: int, world: int, cfg: dict) -> dict:
    import torch
    import torch.distributed as dist

    from genserve.core.errors import ValidationError
    from genserve.core.snapshot import ClusterSpec
    from genserve.models.registry import load_adapter
    from genserve.models.state import State
    from genserve.parallel.groups import GroupRegistry
    from genserve.parallel.state import move_bytes
    from genserve.parallel.wan import sp_group

    device = cfg["devices"][rank]
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    coll = torch.device(device) if cuda else torch.device("cpu")  # where collective buffers live (nccl: the GPU)
    reg = GroupRegistry(ClusterSpec(num_gpus=world, gpus_per_node=world))
    warmup, repeats = cfg["warmup"], cfg["repeats"]
    min_timed = cfg.get("min_timed_s", MIN_TIMED_S)
    out: dict[str, Any] = {"image": {}, "video": {}, "log": []}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    busy = cfg.get("all_busy", False)  # one-device operations run on every device at once (see measure())

    def timed(fn: Callable[[], Any], active: bool, n: int | None = None, mean: bool = False) -> float:
        """Median of the slowest rank's time for fn (run where `active`) over at least `repeats` runs after
        `warmup`, and more (up to MAX_REPEAT_FACTOR x repeats) until MIN_TIMED_S has been timed: cheap operations
        get many samples, which a loaded machine needs. Every rank sees the same reduced times, so every rank
        takes the same number of turns."""
        times: list[float] = []
        one = True if active is SOLO else None
        active = bool(active)
        n_min = n or repeats
        i = 0
        while i < warmup + n_min or (sum(times) < min_timed and len(times) < MAX_REPEAT_FACTOR * n_min):
            i += 1
            dist.barrier()
            t0 = time.perf_counter()
            if active:
                fn()
                sync()
            dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=coll)
            if mean or (busy and active and one is not None):  # every rank ran its own copy: their mean
                dist.all_reduce(dt, op=dist.ReduceOp.SUM)
                dt /= world
            else:
                dist.all_reduce(dt, op=dist.ReduceOp.MAX)
            if i > warmup:
                times.append(dt.item())
        return statistics.median(times)

    SOLO = _Solo(busy or rank == 0)  # truthy where a one-device operation runs (rank 0, or every rank when busy)
    costs = cfg.get("engine_costs", False)  # also what a worker pays around the model (see schema.py)
    busy_steps = min(DEFAULT_MAX_STEPS, warmup + MAX_REPEAT_FACTOR * 10 + 1)  # states for the n=10 busy timings
    spool = None
    import shutil
    import tempfile

    if costs and SOLO:
        spool = Path(tempfile.mkdtemp(prefix="genserve-profile-"))
    t0 = time.perf_counter()
    # ---- image model: rank 0 alone
    if cfg["image_model"]:
        img = load_adapter(cfg["image_model"], device) if SOLO or (costs and world > 1) else None
        out["log"].append(f"image model loaded in {time.perf_counter() - t0:.1f}s")
        out["image"]["text_encode_s"] = timed(lambda: img.encode(PROMPT), SOLO)
        if costs:
            out["image"]["prepare_s"] = timed(lambda: img.prepare({"prompt": PROMPT, "width": cfg["image_sizes"][0][0],
                                                                   "height": cfg["image_sizes"][0][1], "steps": 8,
                                                                   "seed": 0}), SOLO)
        steps_needed = min(DEFAULT_MAX_STEPS, warmup + MAX_REPEAT_FACTOR * repeats + 1)
        for (w, h) in cfg["image_sizes"]:
            why = ""
            if rank == 0:
                try:
                    img.validate({"prompt": PROMPT, "width": w, "height": h, "steps": 1})
                except ValidationError as e:  # e.g. beyond the model's positional embedding: it cannot serve it
                    why = str(e)
            ok = torch.tensor([0 if why else 1], device=coll)
            dist.broadcast(ok, 0)  # every rank takes the same branch (they meet in barriers below)
            if not ok.item():
                out["log"].append(f"image {w}x{h} skipped: {why}")
                continue
            row: dict[str, dict[int, float]] = {"step_s": {}, "decode_s": {}}
            for b in cfg["batches"]:
                states = ([img.prepare({"prompt": PROMPT, "width": w, "height": h, "steps": steps_needed, "seed": j})
                           for j in range(b)] if SOLO else [])
                row["step_s"][b] = timed(lambda: img.step_batch(states), SOLO)
                row["decode_s"][b] = timed(lambda: img.decode_batch(states), SOLO)
                if costs:
                    from genserve.models import save_png

                    pics = img.decode_batch(states) if SOLO else []
                    row.setdefault("write_s", {})[b] = timed(
                        lambda: [save_png(x, spool / f"i{j}.png") for j, x in enumerate(pics)], SOLO)
            if costs and world > 1:  # the same b=1 step with every device computing its own at once
                mine = [img.prepare({"prompt": PROMPT, "width": w, "height": h, "steps": busy_steps, "seed": rank})
                        for _ in range(2)]  # a fresh state per timing: up to MAX_REPEAT_FACTOR x 10 steps each
                row["alone_step_s"] = timed(lambda: img.step_batch([mine[0]]), SOLO, n=10)  # next to the busy one
                row["busy_step_s"] = timed(lambda: img.step_batch([mine[1]]), True, n=10, mean=True)
            out["image"][f"{w}x{h}"] = row
            out["log"].append(f"image {w}x{h} done at {time.perf_counter() - t0:.1f}s")
        del img
    # ---- video model: every rank
    if cfg["video_model"]:
        vid = load_adapter(cfg["video_model"], device)
        models = [getattr(vid.pipe, "transformer", None), getattr(vid.pipe, "transformer_2", None)]
        out["log"].append(f"video model loaded at {time.perf_counter() - t0:.1f}s")
        out["video"]["text_encode_s"] = timed(lambda: vid.encode(PROMPT), SOLO)
        if costs:
            w0, h0, f0 = cfg["video_points"][0]
            out["video"]["prepare_s"] = timed(lambda: vid.prepare({"prompt": PROMPT, "width": w0, "height": h0,
                                                                   "frames": f0, "steps": 10, "seed": 0}), SOLO)
        steps_needed = min(DEFAULT_MAX_STEPS, warmup + MAX_REPEAT_FACTOR * repeats + 1)
        last_req = None
        measured = []
        for (w, h, f) in cfg["video_points"]:
            req = {"prompt": PROMPT, "width": w, "height": h, "frames": f, "steps": steps_needed, "seed": 0}
            try:
                vid.validate(req)
            except ValidationError as e:
                out["log"].append(f"video {w}x{h}x{f} skipped: {e}")
                continue
            measured.append((w, h, f))
            last_req = req
            row = {"step_s": {}}
            for p in cfg["degrees"]:
                gpus = tuple(range(p))
                member = rank in gpus or (p == 1 and busy)
                state = vid.prepare(req) if member else None  # same seed: the state a move would give every member
                if p == 1:
                    row["step_s"][p] = timed(lambda: vid.step(state), SOLO)
                else:
                    group = reg.group(gpus)

                    def sp_step():
                        with sp_group(models, group, mode=cfg["sp_mode"]):
                            vid.step(state)

                    row["step_s"][p] = timed(sp_step, member)
            done = vid.prepare({**req, "steps": 1}) if SOLO else None
            if SOLO:
                vid.step(done)
            row["decode_s"] = timed(lambda: vid.decode(done), SOLO)
            if costs:
                from genserve.models import save_mp4

                frames = vid.decode(done) if SOLO else None
                row["write_s"] = timed(lambda: save_mp4(frames, spool / "v.mp4", fps=cfg.get("fps", 8)), SOLO)
                if world > 1:  # SP-1 step and decode + write with every device doing its own at once
                    mine = [vid.prepare({**req, "steps": busy_steps, "seed": rank}) for _ in range(2)]
                    row["alone_step_s"] = timed(lambda: vid.step(mine[0]), SOLO, n=10)  # next to the busy one
                    row["busy_step_s"] = timed(lambda: vid.step(mine[1]), True, n=10, mean=True)
                    fin = vid.prepare({**req, "steps": 1, "seed": rank})
                    vid.step(fin)
                    tmp = Path(tempfile.mkdtemp(prefix="genserve-profile-"))
                    row["busy_decode_s"] = timed(
                        lambda: save_mp4(vid.decode(fin), tmp / "v.mp4", fps=cfg.get("fps", 8)), True, n=5, mean=True)
                    shutil.rmtree(tmp, ignore_errors=True)
            out["video"][f"{w}x{h}x{f}"] = row
            out["log"].append(f"video {w}x{h}x{f} done at {time.perf_counter() - t0:.1f}s")
        # pause / resume / reconfigure, at the largest point (the biggest state)
        big = max(measured, key=lambda t: t[0] * t[1] * t[2])
        req = {**last_req, "width": big[0], "height": big[1], "frames": big[2]}
        state = vid.prepare(req) if rank == 0 else None
        if rank == 0:
            vid.step(state)
        out["video"]["pause_s"] = timed(lambda: vid.pause(state), rank == 0)
        dev = device if cuda else "cpu"

        def move(holder: int, gpus: tuple[int, ...]) -> None:
            me = rank
            if me != holder and me not in gpus:
                return
            got = move_bytes(state.to_bytes() if me == holder else None, holder, gpus, reg, device=dev)
            if me != holder:
                State.from_bytes(got, vid.device)

        resume, reconf = {}, {}
        for p in cfg["degrees"]:
            gpus = tuple(range(p))
            if p == 1:
                resume[p] = timed(lambda: vid.resume(state), rank == 0)
            else:
                resume[p] = timed(lambda g=gpus: move(0, g), rank in gpus)
            target = tuple(range(world - p, world)) if p < world else gpus
            reconf[p] = timed(lambda g=target: move(0, g), rank == 0 or rank in target)
        out["video"]["resume_s"], out["video"]["reconfigure_s"] = resume, reconf
        if costs:  # a move from a holder outside the new group: what the reconfigure timing above measures
            out["video"]["handover_s"] = dict(reconf)
        out["video"]["state_bytes"] = len(state.to_bytes()) if rank == 0 else 0
    out["wall_s"] = time.perf_counter() - t0
    if spool is not None:
        shutil.rmtree(spool, ignore_errors=True)
    dist.barrier()
    return out


# ---- driver ----------------------------------------------------------------------------------------------------
def measure(*, image_model: str = "tiny-sd3", video_model: str = "tiny-wan", devices: Sequence[str] = ("cpu",) * 4,
            image_sizes: Sequence[tuple[int, int]] | None = None,
            video_points: Sequence[tuple[int, int, int]] | None = None, batches: Sequence[int] = DEFAULT_BATCHES,
            repeats: int = 3, warmup: int = 1, sp_mode: str = "auto", timeout_s: float = 600.0,
            min_timed_s: float = MIN_TIMED_S, engine_costs: bool = False, all_busy: bool = False) -> dict:
    """Run the measurement ranks and return rank 0's raw result (seconds, keyed by size strings).

    engine_costs: also prepare_s, write_s, handover_s (schema.py). all_busy: one-device operations (image ops,
    SP-1 steps, decodes, writes, prepare) run on every device at once, each its own copy, and the mean is kept:
    what a step costs while the other workers compute too (on CPU slots sharing cores that is not the idle time;
    the live engine at load is mostly in that state)."""
    from genserve.parallel.launch import run_ranks

    devices = list(devices)
    if not devices:
        raise ValueError("need at least one device")
    if image_sizes is None or video_points is None:
        gi, gv = default_grid()
        image_sizes = gi if image_sizes is None else image_sizes
        video_points = gv if video_points is None else video_points
    cuda = [str(d).startswith("cuda") for d in devices]
    if any(cuda) and not all(cuda):
        raise ValueError("devices must be all cpu or all cuda:<i>")
    cfg = {"image_model": image_model, "video_model": video_model, "devices": devices,
           "image_sizes": [tuple(s) for s in image_sizes], "video_points": [tuple(s) for s in video_points],
           "batches": sorted(set(batches)), "repeats": max(1, repeats), "warmup": max(0, warmup),
           "degrees": sp_degrees(len(devices)), "sp_mode": sp_mode, "min_timed_s": min_timed_s,
           "engine_costs": engine_costs, "all_busy": all_busy}
    backend = "nccl" if all(cuda) else "gloo"
    t0 = time.perf_counter()
    res = run_ranks(_rank_profile, len(devices), args=(cfg,), timeout_s=timeout_s, backend=backend)[0]
    res["total_s"] = time.perf_counter() - t0
    res["config"] = cfg
    return res


def to_profile(raw: dict, *, name: str, description: str, image_default_steps: int = 8,
               video_default_steps: int = 10, defaults: dict | None = None) -> dict:
    """The profile document (schema genserve.profile/v1) from `measure`'s raw result."""
    cfg = raw["config"]
    r6 = lambda x: float(f"{max(x, 1e-7):.4g}")  # noqa: E731 - positive, 4 significant digits
    img_pts = [{"width": w, "height": h,
                "step_s": {str(b): r6(v) for b, v in raw["image"][f"{w}x{h}"]["step_s"].items()},
                "decode_s": {str(b): r6(v) for b, v in raw["image"][f"{w}x{h}"]["decode_s"].items()}}
               for (w, h) in cfg["image_sizes"] if f"{w}x{h}" in raw["image"]]
    vid = raw["video"]
    vid_pts = [{"width": w, "height": h, "frames": f,
                "step_s": {str(p): r6(v) for p, v in vid[f"{w}x{h}x{f}"]["step_s"].items()},
                "decode_s": r6(vid[f"{w}x{h}x{f}"]["decode_s"])}
               for (w, h, f) in cfg["video_points"] if f"{w}x{h}x{f}" in vid]
    if cfg.get("engine_costs"):  # the optional fields (schema.py)
        for p in img_pts:
            p["write_s"] = {str(b): r6(v) for b, v in raw["image"][f"{p['width']}x{p['height']}"]["write_s"].items()}
        for p in vid_pts:
            p["write_s"] = r6(vid[f"{p['width']}x{p['height']}x{p['frames']}"]["write_s"])
    if defaults is None:
        defaults = {"image_model": cfg["image_model"], "video_model": cfg["video_model"],
                    "image_sizes": [[p["width"], p["height"]] for p in img_pts],
                    "video_sizes": [[p["width"], p["height"], p["frames"]] for p in vid_pts]}
    doc = {
        "schema": SCHEMA_ID, "name": name, "description": description, "defaults": defaults,
        "image_models": {cfg["image_model"]: {"default_steps": image_default_steps,
                                              "text_encode_s": r6(raw["image"]["text_encode_s"]),
                                              "points": img_pts}},
        "video_models": {cfg["video_model"]: {"default_steps": video_default_steps,
                                              "text_encode_s": r6(vid["text_encode_s"]),
                                              "pause_s": r6(vid["pause_s"]),
                                              "resume_s": {str(p): r6(v) for p, v in vid["resume_s"].items()},
                                              "reconfigure_s": {str(p): r6(v) for p, v in
                                                                vid["reconfigure_s"].items()},
                                              "points": vid_pts}},
    }
    if cfg.get("engine_costs"):
        doc["image_models"][cfg["image_model"]]["prepare_s"] = r6(raw["image"]["prepare_s"])
        vm = doc["video_models"][cfg["video_model"]]
        vm["prepare_s"] = r6(vid["prepare_s"])
        vm["handover_s"] = {str(p): r6(v) for p, v in vid["handover_s"].items()}
        rows = [vid[f"{w}x{h}x{f}"] for (w, h, f) in cfg["video_points"] if f"{w}x{h}x{f}" in vid]
        irows = [raw["image"][f"{w}x{h}"] for (w, h) in cfg["image_sizes"] if f"{w}x{h}" in raw["image"]]
        if rows and "busy_step_s" in rows[0]:  # slowdowns with every device busy (schema.py)
            r3 = lambda x: float(f"{max(x, 1.0):.3g}")  # noqa: E731 - a slowdown, never a speed-up
            vm["busy_factor"] = r3(statistics.median(r["busy_step_s"] / r["alone_step_s"] for r in rows))
            vm["busy_decode_factor"] = r3(statistics.median(r["busy_decode_s"] / (r["decode_s"] + r["write_s"])
                                                            for r in rows))
            doc["image_models"][cfg["image_model"]]["busy_factor"] = r3(statistics.median(
                r["busy_step_s"] / r["alone_step_s"] for r in irows))
    return doc


def run_profile(*, image_model: str = "tiny-sd3", video_model: str = "tiny-wan", devices: Sequence[str] = ("cpu",) * 4,
                out: str | Path | None = None, repeats: int = 3, warmup: int = 1, sizes: str | None = None,
                name: str | None = None, base: str = "tiny-cpu", log: Callable[[str], None] = print,
                min_timed_s: float = MIN_TIMED_S, engine_costs: bool = False, all_busy: bool = False) -> dict:
    """Measure, build and validate the profile; write it to `out` when given. Keeps the defaults section (model
    names, default sizes, default steps) of the bundled `base` profile when the models are the same."""
    import os
    import platform

    from genserve.profiles.profile import Profile

    img_sizes = vid_pts = None
    if sizes:
        img_sizes, vid_pts = parse_sizes(sizes)
        if not img_sizes or not vid_pts:
            raise ValueError("--sizes needs at least one WxH (image) and one WxHxF (video) point")
    defaults = None
    steps = {"image": 8, "video": 10}
    try:
        b = Profile.load(base)
    except Exception:  # noqa: BLE001 - no base: defaults from the measured points
        b = None
    if b is not None and b.doc.defaults.image_model == image_model and b.doc.defaults.video_model == video_model:
        if not sizes:
            defaults = b.doc.defaults.model_dump(mode="json")
        steps = {"image": b.default_steps(image_model), "video": b.default_steps(video_model)}
    raw = measure(image_model=image_model, video_model=video_model, devices=devices, image_sizes=img_sizes,
                  video_points=vid_pts, repeats=repeats, warmup=warmup, min_timed_s=min_timed_s,
                  engine_costs=engine_costs, all_busy=all_busy)
    for line in raw.get("log", []):
        log(f"  {line}")
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    desc = (f"Measured by `genserve profile` on {len(devices)} x {devices[0]} ({platform.node()}, "
            f"{os.cpu_count()} cores, load average {load}) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"median of {repeats} after {warmup} warm-up, slowest rank; {raw['total_s']:.0f}s"
            + ("; engine costs" if engine_costs else "") + ("; all devices busy" if all_busy else "") + ".")
    doc = to_profile(raw, name=name or base, description=desc, image_default_steps=steps["image"],
                     video_default_steps=steps["video"], defaults=defaults)
    Profile.from_dict(doc, "<measured>")  # validates (raises ProfileError on a bad document)
    if out is not None:
        Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    doc["_raw"] = raw
    return doc


# ---- command line ----------------------------------------------------------------------------------------------
def profile_command(
    image_model: str = _opt("tiny-sd3", "--image-model", help="Image model (tiny-sd3, an HF id or a local folder)."),
    video_model: str = _opt("tiny-wan", "--video-model", help="Video model (tiny-wan, an HF id or a local folder)."),
    devices: str = _opt("cpu,cpu,cpu,cpu", "--devices",
                        help="Comma-separated devices, one process each (cpu,cpu or cuda:0,cuda:1,...); SP degrees "
                             "1, 2, 4, 8 up to their number are profiled."),
    out: Path = _opt(Path("profile.json"), "-o", "--out", help="Profile JSON to write."),
    repeats: int = _opt(3, "--repeats", help="Timed repetitions per measurement (the median is kept)."),
    warmup: int = _opt(1, "--warmup", help="Untimed runs before each measurement."),
    sizes: str = _opt("", "--sizes", help="Points to measure, e.g. 32x32,64x64,64x64x9 (WxH image, WxHxF video); "
                                          "default: the bundled tiny-cpu profile's grid."),
    name: str = _opt("tiny-cpu", "--name", help="Profile name written into the file."),
    engine_costs: bool = _opt(False, "--engine-costs", help="Also measure prepare, PNG/MP4 writes and handovers "
                                                            "(optional profile fields, see profiles/schema.py)."),
    all_busy: bool = _opt(False, "--all-busy", help="Time one-device operations with every device busy at once."),
) -> None:
    """Measure the image and video models on this machine's devices and write a latency profile (JSON)."""
    import typer

    from genserve.core.errors import GenServeError

    devs = [d.strip() for d in devices.split(",") if d.strip()]
    t0 = time.perf_counter()
    try:
        doc = run_profile(image_model=image_model, video_model=video_model, devices=devs, out=out, repeats=repeats,
                          warmup=warmup, sizes=sizes or None, name=name, log=typer.echo, engine_costs=engine_costs,
                          all_busy=all_busy)
    except (GenServeError, ValueError, OSError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    img = doc["image_models"][image_model]
    vid = doc["video_models"][video_model]
    typer.echo(f"image {image_model}: text encode {img['text_encode_s']:.4g}s; "
               + "; ".join(f"{p['width']}x{p['height']} step(b=1) {p['step_s']['1']:.4g}s decode {p['decode_s']['1']:.4g}s"
                           for p in img["points"]))
    typer.echo(f"video {video_model}: " + "; ".join(
        f"{p['width']}x{p['height']}x{p['frames']} step " + "/".join(f"p{k}={v:.4g}" for k, v in p["step_s"].items())
        + f"s decode {p['decode_s']:.4g}s" for p in vid["points"]))
    typer.echo(f"wrote {out} ({time.perf_counter() - t0:.0f}s)")

