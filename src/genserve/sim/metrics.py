"""Simulation results: per-request records, the summary dict, and the JSONL writer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from genserve.engine.controller import RequestRecord

PERCENTILES = (50, 90, 99)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 and mean of `values` (None when empty)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    p = np.percentile(arr, PERCENTILES)
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "mean": float(arr.mean())}


def _share(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


@dataclass
class SimResult:
    """The outcome of one `run_simulation`."""

    policy: str
    records: list[RequestRecord]
    num_gpus: int
    makespan_s: float  # from the first arrival to the last event
    busy_gpu_s: float  # GPU-seconds of work (steps, batches, decodes, pauses)
    rounds: int
    events: int
    preemptions: int
    sp_changes: int
    wall_s: float
    log: list | None = None  # execution intervals when run with log=True
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        recs = self.records
        by = {"image": [r for r in recs if r.modality == "image"], "video": [r for r in recs if r.modality == "video"]}
        met = {m: sum(r.met_slo for r in rs) for m, rs in by.items()}
        finished = sum(r.done for r in recs)
        lat = {m: percentiles([r.latency for r in rs if r.done]) for m, rs in by.items()}
        lat["overall"] = percentiles([r.latency for r in recs if r.done])
        wait = {m: percentiles([r.queue_wait for r in rs if r.start is not None]) for m, rs in by.items()}
        util = self.busy_gpu_s / (self.num_gpus * self.makespan_s) if self.makespan_s > 0 else 0.0
        return {
            "policy": self.policy,
            "requests": len(recs),
            "images": len(by["image"]),
            "videos": len(by["video"]),
            "finished": finished,
            "unfinished": sum(r.status in ("queued", "running", "paused") for r in recs),
            "sar": {"overall": _share(met["image"] + met["video"], len(recs)),
                    "image": _share(met["image"], len(by["image"])),
                    "video": _share(met["video"], len(by["video"]))},
            "latency": lat,
            "queue_wait": wait,
            "gpu_utilisation": util,
            "preemptions": self.preemptions,
            "sp_changes": self.sp_changes,
            "gpus": self.num_gpus,
            "makespan_s": self.makespan_s,
            "rounds": self.rounds,
            "events": self.events,
            "wall_s": self.wall_s,
        }

    def write_records(self, path: str | Path, append: bool = False) -> None:
        write_records(self.records, path, {"policy": self.policy}, append)


def write_records(records: Iterable[RequestRecord], path: str | Path, extra: dict[str, Any] | None = None,
                  append: bool = False) -> None:
    """One JSON object per request per line (fields of RequestRecord plus latency, queue_wait, met_slo)."""
    lines = []
    for r in records:
        d = dict(extra or {})
        d.update(r.to_dict())
        lines.append(json.dumps(d, separators=(",", ":")))
    with open(path, "a" if append else "w") as f:
        f.write("".join(line + "\n" for line in lines))
