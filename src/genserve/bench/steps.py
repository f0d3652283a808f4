"""`genserve bench steps`: our step loop vs the plain diffusers pipeline call, and the cost of pause / resume.

Both sides run the same tiny model, inputs and generator seed, interleaved (ABBA order) in one process; the
figures are medians (wall time of the whole request: encode, steps, decode), plus the ratio of minimums, which
is the steadier figure on a shared, loaded machine. Outputs are checked to be identical: the same work is timed.
"""

from __future__ import annotations

import os
import statistics
import time

import typer


def _median_us(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1e3


def _loop_vs_pipe(adapter, req: dict, pipe_kwargs: dict, repeats: int, out: str):
    import torch

    def ours():
        return adapter.run(req)

    def theirs():
        r = adapter.pipe(req["prompt"], generator=torch.Generator().manual_seed(req["seed"]), output_type="pt",
                         max_sequence_length=adapter.max_sequence_length, **pipe_kwargs)
        return getattr(r, out)[0]

    same = torch.equal(ours(), theirs())  # also the warm-up
    a, b = [], []
    for i in range(repeats):
        for name in (("ours", "pipe") if i % 2 == 0 else ("pipe", "ours")):
            t = time.perf_counter()
            (ours if name == "ours" else theirs)()
            (a if name == "ours" else b).append(time.perf_counter() - t)
    return a, b, same


def _pause_resume(adapter, req: dict, n: int) -> dict:
    from genserve.models import State

    state = adapter.prepare(req)
    for _ in range(min(2, state.num_steps - 1)):
        adapter.step(state)  # mid-run: the multistep history is populated
    blob = state.to_bytes()
    t = time.perf_counter()
    adapter.step(State.from_bytes(blob, adapter.device))
    step_s = time.perf_counter() - t
    return {
        "pause": _median_us(lambda: adapter.pause(state), n),
        "resume": _median_us(lambda: adapter.resume(state), n),
        "to_bytes": _median_us(state.to_bytes, max(20, n // 50)),
        "from_bytes+resume": _median_us(lambda: adapter.resume(State.from_bytes(blob, adapter.device)),
                                        max(20, n // 50)),
        "bytes": len(blob),
        "step_ms": step_s * 1e3,
    }


def cmd(
    repeats: int = typer.Option(9, help="Interleaved repeats per side (median reported)."),
    steps: int = typer.Option(8, help="Denoising steps per request."),
    threads: int = typer.Option(1, help="torch CPU threads."),
    n: int = typer.Option(2000, help="Iterations for the pause/resume micro-timings."),
) -> None:
    """Step loop vs pipe() on tiny-sd3 and tiny-wan (ratio, target <= 1.05), pause and resume cost in us."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from genserve.models import load_adapter

    torch.set_num_threads(threads)
    cases = [
        ("tiny-sd3", dict(prompt="a red cat on a mat", width=64, height=64, steps=steps, seed=1, guidance_scale=4.5),
         dict(height=64, width=64, num_inference_steps=steps, guidance_scale=4.5), "images"),
        ("tiny-wan", dict(prompt="a dog runs on the beach", width=64, height=32, frames=9, steps=steps, seed=1,
                          guidance_scale=5.0),
         dict(height=32, width=64, num_frames=9, num_inference_steps=steps, guidance_scale=5.0), "frames"),
    ]
    typer.echo(f"torch {torch.__version__}, {threads} thread(s), {steps} steps, {repeats} interleaved repeats")
    typer.echo(f"{'model':9} {'size':12} {'ours s':>8} {'pipe s':>8} {'ratio':>6} {'min ratio':>9}  identical")
    costs = {}
    for name, req, pipe_kwargs, out in cases:
        adapter = load_adapter(name)
        a, b, same = _loop_vs_pipe(adapter, req, pipe_kwargs, repeats, out)
        ours, pipe = statistics.median(a), statistics.median(b)
        size = f"{req['width']}x{req['height']}" + (f"x{req['frames']}" if "frames" in req else "")
        typer.echo(f"{name:9} {size:12} {ours:8.4f} {pipe:8.4f} {ours / pipe:6.3f} {min(a) / min(b):9.3f}  "
                   f"{'yes' if same else 'NO'}")
        costs[name] = _pause_resume(adapter, req, n)
    typer.echo("\npause / resume (median us; state mid-run, after 2 steps)")
    typer.echo(f"{'model':9} {'pause':>7} {'resume':>7} {'to_bytes':>9} {'from_bytes':>11} {'state KB':>9} {'step ms':>8}")
    for name, c in costs.items():
        typer.echo(f"{name:9} {c['pause']:7.2f} {c['resume']:7.2f} {c['to_bytes']:9.1f} "
                   f"{c['from_bytes+resume']:11.1f} {c['bytes'] / 1024:9.1f} {c['step_ms']:8.2f}")
