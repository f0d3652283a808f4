"""One log line per job event on the `genserve.jobs` logger, so an operator can follow a job in the server log.

    event=admitted job=video_... kind=video model=tiny-wan size=64x64x17 steps=40 deadline_s=3.2
    event=started job=video_... gpus=0 sp=1
    event=paused job=video_... step=12/40 gpu=0
    event=resumed job=video_... step=12/40 gpus=1 sp=1
    event=sp_change job=video_... from=1 to=2 step=20/40 gpus=0,1
    event=requeued job=... reason="worker 1 died"        (a retryable failure: it runs again)
    event=finished job=video_... latency_s=2.91 deadline_s=3.2 deadline=met
    event=failed job=... reason="..."
    event=cancelled job=... step=3/40

The Engine calls these from its thread (the executor proxy sees every command, `_publish` every final state);
per step they cost a dict lookup and a comparison, and nothing is formatted unless INFO is enabled.
"""

from __future__ import annotations

import logging

from genserve.core.request import RequestStatus
from genserve.executors.base import StepSetup

log = logging.getLogger("genserve.jobs")

_CONTINUE = StepSetup.CONTINUE


def _v(value) -> str:
    s = str(value)
    return f'"{s}"' if not s or any(c in s for c in ' ="') else s


def _line(event: str, rid: str, **fields) -> None:
    log.info("event=%s job=%s %s", event, rid, " ".join(f"{k}={_v(v)}" for k, v in fields.items()))


class JobLog:
    """Tracks the SP degree of each running video (to log changes) and writes the lines."""

    def __init__(self) -> None:
        self._degree: dict[str, int] = {}

    def admitted(self, req) -> None:
        if log.isEnabledFor(logging.INFO):
            size = f"{req.width}x{req.height}" + (f"x{req.frames}" if req.is_video else "")
            _line("admitted", req.id, kind=req.modality.value, model=req.model, size=size, steps=req.steps,
                  deadline_s=round(req.deadline - req.arrival, 3))

    def step(self, req, step: int, gpus, setup) -> None:
        p = len(gpus)
        prev = self._degree.get(req.id)
        if setup is _CONTINUE and prev == p:
            return  # the common case: nothing to say
        self._degree[req.id] = p
        if not log.isEnabledFor(logging.INFO):
            return
        where = ",".join(map(str, gpus))
        if setup is StepSetup.FRESH:
            _line("started", req.id, gpus=where, sp=p)
        elif setup is StepSetup.RESUME:
            _line("resumed", req.id, step=f"{step}/{req.steps}", gpus=where, sp=p)
        if prev is not None and prev != p:
            _line("sp_change", req.id, **{"from": prev, "to": p}, step=f"{step}/{req.steps}", gpus=where)

    def batch(self, reqs, gpu: int) -> None:
        if log.isEnabledFor(logging.INFO):
            for r in reqs:
                _line("started", r.id, gpus=gpu, batch=len(reqs))

    def paused(self, req, gpu: int, steps_done: int) -> None:
        if log.isEnabledFor(logging.INFO):
            _line("paused", req.id, step=f"{steps_done}/{req.steps}", gpu=gpu)

    def requeued(self, rid: str, reason: str) -> None:
        self._degree.pop(rid, None)
        if log.isEnabledFor(logging.INFO):
            _line("requeued", rid, reason=reason)

    def ended(self, req, status: RequestStatus, steps_done: int, finish: float, met: bool,
              error: str | None) -> None:
        self._degree.pop(req.id, None)
        if not log.isEnabledFor(logging.INFO):
            return
        if status is RequestStatus.DONE:
            _line("finished", req.id, latency_s=round(finish - req.arrival, 3),
                  deadline_s=round(req.deadline - req.arrival, 3), deadline="met" if met else "missed")
        elif status is RequestStatus.CANCELLED:
            _line("cancelled", req.id, step=f"{steps_done}/{req.steps}")
        else:
            _line("failed", req.id, step=f"{steps_done}/{req.steps}", reason=error or "unknown")
