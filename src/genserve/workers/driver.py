"""A minimal real-clock driver: the Controller over a live executor, replaying requests at their arrival times.

The engine runtime (`genserve.engine.runtime`) is the serving path; this is the batch path used by the live tests
and `genserve bench engine`: it submits each request when the wall clock reaches its arrival, hands every event
from the executor's threads to the controller on this thread (`on_event`, then `flush`), honours `wake_at`, and
returns when every request has finished. It drives the Controller exactly as the simulator does.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Iterable

from genserve.core.events import BatchDone, Event, Failed, StepDone, VideoDone
from genserve.core.request import Request


@dataclass
class LiveResult:
    records: dict  # request id -> RequestRecord
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, kind, detail)
    wall_s: float = 0.0
    rounds: int = 0
    preemptions: int = 0
    sp_changes: int = 0
    flush_s: list[float] = field(default_factory=list)  # duration of every Controller.flush that ran a round


def run_live(policy, executor, requests: Iterable[Request], profile, *, timeout_s: float = 120.0,
             strict: bool = True, time_origin: float | None = None, idle_round_s: float | None = 1.0) -> LiveResult:
    """Serve `requests` (arrival times in seconds from now) on a started executor with `policy`; return records.

    The executor's clock is the engine clock: request arrivals and deadlines are shifted by the clock's reading
    when the run starts, so a trace written from t=0 can be replayed on an executor that has been up for a while.
    Raises TimeoutError if the requests are not all finished after `timeout_s`. `idle_round_s`: the controller's
    `idle_retry_s` (a round that long after a plan left work waiting on an idle cluster without asking for a
    wake-up); None turns it off.
    """
    from genserve.engine.controller import Controller

    clock = executor.clock
    ctl = Controller(policy, executor.cluster, profile, executor, clock, strict=strict, idle_retry_s=idle_round_s)
    q: "queue.Queue[Event]" = queue.Queue()
    executor.attach(q.put)  # events arrive on the executor's listener thread; the controller runs on this one
    t0 = clock.now() if time_origin is None else time_origin
    pending = sorted(requests, key=lambda r: r.arrival)
    for r in pending:  # shift to the engine clock
        r.arrival += t0
        r.deadline += t0
    log: list[tuple[float, str, str]] = []
    flush_s: list[float] = []
    total = len(pending)
    started = time.monotonic()
    i = 0
    while True:
        now = clock.now()
        while i < total and pending[i].arrival <= now:
            ctl.submit(pending[i])
            log.append((now - t0, "arrival", pending[i].id))
            i += 1
        if ctl.wake_at is not None and ctl.wake_at <= now:
            ctl.wake()
        while True:
            try:
                ev = q.get_nowait()
            except queue.Empty:
                break
            ctl.on_event(ev)
            log.append((ev.time - t0, type(ev).__name__, _describe(ev)))
        before = (ctl.preemptions, ctl.sp_changes)
        due = ctl.round_due()
        tf = time.perf_counter()
        ctl.flush()
        if due:
            flush_s.append(time.perf_counter() - tf)
        if (ctl.preemptions, ctl.sp_changes) != before:
            log.append((clock.now() - t0, "round", f"preemptions {ctl.preemptions}, sp changes {ctl.sp_changes}"))
        if i >= total and ctl.idle:
            break
        if time.monotonic() - started > timeout_s:
            live = []
            for rid, rec in ctl.records.items():
                if rec.status in ("done", "failed", "cancelled"):
                    continue
                vp = getattr(ctl, "_videos", {}).get(rid)
                extra = "" if vp is None else (f" steps {vp.steps_done}/{vp.request.steps} gpus {vp.gpus} "
                                               f"in_flight={vp.in_flight} decoding={vp.decoding}")
                live.append(f"{rid} ({ctl.requests[rid].status.value}{extra})")
            raise TimeoutError(f"live run not finished after {timeout_s:.0f}s; still live: {', '.join(live)}; "
                               f"wake_at={ctl.wake_at}, executor log: {getattr(executor, 'log', [])[-5:]}")
        nxt = [t for t in (pending[i].arrival if i < total else None, ctl.wake_at) if t is not None]
        wait = 0.05 if not nxt else max(0.0, min(nxt) - clock.now())
        try:
            ev = q.get(timeout=min(wait, 0.05))
        except queue.Empty:
            continue
        ctl.on_event(ev)
        log.append((ev.time - t0, type(ev).__name__, _describe(ev)))
    return LiveResult(records=dict(ctl.records), events=log, wall_s=time.monotonic() - started, rounds=ctl.rounds,
                      preemptions=ctl.preemptions, sp_changes=ctl.sp_changes, flush_s=flush_s)


def _describe(ev: Event) -> str:
    if isinstance(ev, StepDone):
        return f"{ev.request_id} step {ev.step} on {ev.gpus} ({ev.duration * 1e3:.1f} ms)"
    if isinstance(ev, BatchDone):
        return f"{','.join(ev.request_ids)} on {ev.gpu} ({ev.duration * 1e3:.1f} ms)"
    if isinstance(ev, VideoDone):
        return f"{ev.request_id} on {ev.gpu}"
    if isinstance(ev, Failed):
        return f"{','.join(ev.request_ids)} on {ev.gpus}: {ev.reason} (retryable={ev.retryable})"
    return repr(ev)
