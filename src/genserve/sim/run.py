"""`run_simulation`: the controller and a policy on a virtual clock with the simulated executor.

The event loop keeps a heap of (time, seq, event); arrivals come from the sorted request list (merged with the
heap, so a 100,000-request trace does not sit in the heap). All events of one instant are handed to the
controller, then one `flush` (a round when due). No sleeps: the clock jumps from event to event.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import time
from contextlib import contextmanager
from typing import Sequence

from genserve.core.errors import ValidationError
from genserve.core.request import Request, RequestStatus
from genserve.core.snapshot import ClusterSpec
from genserve.engine.clock import VirtualClock
from genserve.engine.controller import Controller
from genserve.executors.sim import SimExecutor
from genserve.sim.metrics import SimResult

_INF = float("inf")


class _Wake:
    __slots__ = ()


_WAKE = _Wake()


@contextmanager
def _cyclic_gc_off():
    """The cyclic garbage collector off inside, restored after. The simulation creates no reference cycles (nor
    do the bundled policies: what the collector finds after a run is the simulation's own structure), so its
    passes over the growing heap of requests, records and views are pure overhead: 10-15 % of the event loop's
    time at 30,000 requests. (GenServePolicy.plan does the same for a round.)"""
    on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if on:
            gc.enable()


def _fresh(r: Request) -> Request:
    """A queued copy (already validated: skip __post_init__, which dataclasses.replace would rerun)."""
    c = object.__new__(Request)
    c.__dict__.update(r.__dict__)
    c.status = RequestStatus.QUEUED
    c.history = []
    return c


def run_simulation(requests: Sequence[Request], policy, cluster: ClusterSpec | int, profile, *, options=None,
                   strict: bool = False, log: bool = False, until: float | None = None,
                   coalesce_steps: bool = True, wall_budget_s: float | None = None, executor_profile=None,
                   online_correction=False, scoped_rounds: bool | None = None,
                   dispatch: bool | None = None, commands: list | None = None) -> SimResult:
    """Simulate `requests` under `policy` and return a SimResult (records, counters, `summary()`).

    policy: a Policy object, or a registry name (`make_policy(name, options)`).
    cluster: a ClusterSpec, or a GPU count (8 GPUs per node).
    profile: a Profile, or a bundled name / JSON path.
    strict: check every plan with `plan_violations` (tests); log: keep the execution log (GPU intervals).
    until: stop at this simulated time; requests still live then are reported unfinished.
    coalesce_steps: issue a video's remaining steps as one run for policies that need no round at every step
    boundary (same results, far fewer events; False replays the live engine's step-by-step protocol).
    wall_budget_s: stop after this much wall time (benchmarks); `info["stopped"]` says so.
    executor_profile: the profile the simulated GPUs follow, when it differs from the one the controller and the
    policy trust (`profile`): a drift the policy does not know about. Default: `profile`.
    online_correction: correct the controller's profile online from the measured durations (profiles/online.py;
    True or an OnlineCorrection); a no-op when the executor follows `profile`. `info["correction"]` has the factors.
    scoped_rounds: plan only the touched nodes while nothing waits (engine/scope.py); None: as the policy says.
    dispatch: two-level scheduling (engine/dispatch.py); None: as the policy says (genserve opts in). It needs
    node-scoped rounds (not scoped_rounds=False) and a cluster of several whole nodes; otherwise it is off.
    commands: a list the simulated executor appends every step and batch command to (bench fidelity's counts).
    The input requests are not modified (each run works on fresh copies). The cyclic garbage collector is off
    during the event loop (none of the bundled policies creates reference cycles): garbage cycles a custom policy
    makes are collected only after the run.
    """
    t0 = time.perf_counter()
    if isinstance(cluster, int):
        cluster = ClusterSpec(cluster)
    if isinstance(profile, str):
        from genserve.profiles import Profile

        profile = Profile.load(profile)
    if isinstance(executor_profile, str):
        from genserve.profiles import Profile

        executor_profile = Profile.load(executor_profile)
    if isinstance(policy, str):
        from genserve.scheduling.registry import make_policy

        policy = make_policy(policy, options)
    with _cyclic_gc_off():
        reqs = sorted((_fresh(r) for r in requests), key=lambda r: (r.arrival, r.id))
    seen: set[str] = set()
    for r in reqs:
        if r.id in seen:
            raise ValidationError(f"duplicate request id {r.id!r}")
        seen.add(r.id)

    clock = VirtualClock()
    heap: list = []
    counter = itertools.count()
    push = heapq.heappush
    pop = heapq.heappop

    def schedule(t: float, ev) -> list:
        entry = [t, next(counter), ev]  # a handle: the executor cancels by setting entry[2] = None
        push(heap, entry)
        return entry

    executor = SimExecutor(executor_profile or profile, cluster, clock, schedule, log=log, commands=commands)
    ctl = Controller(policy, cluster, profile, executor, clock, strict=strict, coalesce_steps=coalesce_steps,
                     online_correction=online_correction, scoped_rounds=scoped_rounds, dispatch=dispatch)
    # validate every distinct request shape once, up front: a bad trace fails before simulating anything
    shapes = {}
    for r in reqs:
        key = (r.modality, r.model, r.width, r.height, r.frames, r.steps)
        if key not in shapes:
            shapes[key] = r
            ctl.validate(r)

    n = len(reqs)
    i = 0
    wake_scheduled: float | None = None
    on_event = ctl.on_event
    submit = ctl.submit
    flush = ctl.flush
    last = reqs[0].arrival if reqs else 0.0
    first = last
    stopped = False
    loops = 0
    with _cyclic_gc_off():
        while True:
            loops += 1
            if wall_budget_s is not None and not loops & 1023 and time.perf_counter() - t0 > wall_budget_s:
                stopped = True
                break
            t_heap = heap[0][0] if heap else _INF
            t_arr = reqs[i].arrival if i < n else _INF
            t = t_heap if t_heap < t_arr else t_arr
            if t == _INF or (until is not None and t > until):
                break
            clock._t = t  # the loop is the clock's only writer; times never go back (heap order)
            while i < n and reqs[i].arrival == t:
                submit(reqs[i])
                i += 1
            while heap and heap[0][0] == t:
                ev = pop(heap)[2]
                if ev is None:  # cancelled
                    continue
                if ev is _WAKE:
                    if ctl.wake_at is not None and ctl.wake_at <= t:
                        ctl.wake()
                    wake_scheduled = None
                else:
                    on_event(ev)
            flush()
            last = t
            w = ctl.wake_at
            if w is not None and w > t and (wake_scheduled is None or w < wake_scheduled):
                schedule(w, _WAKE)
                wake_scheduled = w
    executor.close()
    name = getattr(policy, "name", type(policy).__name__)
    return SimResult(
        policy=name, records=list(ctl.records.values()) + [_unsubmitted(r) for r in reqs[i:]],
        num_gpus=cluster.num_gpus, makespan_s=max(last - first, 0.0), busy_gpu_s=sum(executor.busy_s),
        rounds=ctl.rounds, events=ctl.events + i, preemptions=ctl.preemptions, sp_changes=ctl.sp_changes,
        wall_s=time.perf_counter() - t0, log=executor.log,
        info={"profile": profile.name, "gpus_per_node": cluster.gpus_per_node, "stopped": stopped, "submitted": i,
              "scoped_rounds": ctl.scoped_rounds,
              "dispatch_pulls": ctl.dispatcher.pulls if ctl.dispatcher is not None else 0,
              **({"correction": ctl.correction.factors()} if ctl.correction is not None else {})},
    )


def _unsubmitted(r: Request):
    from genserve.engine.controller import RequestRecord

    return RequestRecord(r.id, r.modality.value, r.model, r.width, r.height, r.frames, r.steps, r.arrival, r.deadline)
