"""The dispatch cost of a live engine, measured on started workers (`genserve profile --engine-costs` measures the
other engine costs inside the profiling ranks; this one needs the executor, the pipes and the Controller).

torch-free at import: the executor is passed in.
"""

from __future__ import annotations

import json
import statistics

from genserve.profiles.profiler import PROMPT


def measure_dispatch(executor, profile, *, video: tuple[int, int, int] | None = None, steps: int = 12) -> float:
    """Median seconds a live engine adds to every command around the worker's own time (reply through the pipe,
    listener, controller round, next command through the pipe): one video per worker served by FCFS on the real
    Controller, each gap between consecutive StepDones minus the worker-measured duration of the later step.
    Every worker is busy, as in a loaded run. Uses `profile` only for its model names and default video size."""
    from genserve.core.request import Request
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import make_policy
    from genserve.workers.driver import run_live

    model = profile.doc.defaults.video_model
    w, h, f = video or profile.doc.defaults.video_sizes[0]
    reqs = [Request(id=f"dispatch-{i}", modality="video", model=model, prompt=PROMPT, width=w, height=h, frames=f,
                    steps=steps, seed=i, arrival=0.0, deadline=1e6) for i in range(executor.num_workers)]
    n0 = len(executor.step_durations)
    res = run_live(make_policy("fcfs", PolicyOptions(batching=False)), executor, reqs, profile, timeout_s=120,
                   strict=False)
    durs: dict[str, list[float]] = {}
    for rid, _, _, d in executor.step_durations[n0:]:
        durs.setdefault(rid, []).append(d)
    times: dict[str, list[float]] = {}
    for t, kind, text in res.events:
        if kind == "StepDone":
            times.setdefault(text.split(" ")[0], []).append(t)
    gaps = [ts[k] - ts[k - 1] - durs[rid][k] for rid, ts in times.items()
            for k in range(1, min(len(ts), len(durs[rid])))]
    return statistics.median(gaps) if gaps else 0.0


def with_dispatch(doc: dict, dispatch_s: float) -> dict:
    """The profile document with `dispatch_s` (schema.py) set on every image and video model."""
    d = json.loads(json.dumps(doc))
    for section in ("image_models", "video_models"):
        for spec in d[section].values():
            spec["dispatch_s"] = float(f"{max(dispatch_s, 0.0):.4g}")
    return d
