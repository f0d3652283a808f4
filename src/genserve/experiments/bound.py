"""An upper bound on SLO attainment: an offline, hindsight relaxation solved with HiGHS.

No schedule, online or offline, can meet more deadlines on a trace than `upper_bound(...)` reports. It is the
yardstick for "how far is a policy from the best possible schedule".

The relaxation (an interval-indexed LP, or the same with integral y: a MILP)
---------------------------------------------------------------------------
Time is cut into intervals I_1..I_m at breakpoints B_0 < B_1 < ... < B_m (by default every release, deadline and
derived event time, so nothing is rounded; on big traces a subset, see "Discretisation"). For each request j,
y_j in [0, 1] says "j finishes by its deadline". Maximise sum_j y_j subject to:

Images (one GPU per batch; a batch of b same-resolution images takes T_img(b) seconds):
  x_ji >= 0         GPU-seconds attributed to j in interval i, only in intervals overlapping [r_j, d_j]
  x_ji <= |I_i| y_j (j's share of one GPU is at most the whole GPU)
  sum_i x_ji >= c_j y_j,  c_j = min over batch sizes b with T_img(b) <= d_j - r_j of T_img(b) / b
                    (the most favourable per-image cost among batches short enough to meet the deadline)
Videos (S_j steps at SP degree p in P, one step takes T_p on p GPUs; then a VAE decode of D_j on one GPU):
  s_jip >= 0        steps done in interval i at degree p, only in intervals overlapping [r_j, d_j - D_j]
  z_ji  in [0, |I_i|] decode seconds in interval i, only in intervals overlapping [r_j + S_j min_p T_p, d_j]
  sum_ip s_jip >= S_j y_j;  sum_i z_ji >= D_j y_j
  sum_p T_p s_jip + z_ji <= |I_i| y_j   (a video runs one step, or its decode, at a time)
Capacity, every interval:  sum_images x_ji + sum_videos (sum_p p T_p s_jip + z_ji) <= N |I_i|
A request whose window d_j - r_j is shorter than its fastest possible latency (image: min_b T_img(b); video:
S_j min_p T_p + D_j) is dropped up front (y_j = 0).

Why it is a valid upper bound
-----------------------------
Take any feasible schedule and the set M of requests it finishes on time. Set y_j = 1 for j in M, 0 otherwise.
For an on-time image in a batch of b that runs on one GPU over [t, t + T_img(b)] within [r_j, d_j], let x_ji =
|[t, t + T_img(b)] n I_i| / b: its sum is T_img(b)/b >= c_j (b qualifies since T_img(b) <= d_j - r_j), and it
is at most |I_i|. For an on-time video let s_jip be the (fractional, split pro rata at interval ends) steps it ran
at degree p inside I_i, and z_ji its decode time inside I_i: steps lie in [r_j, d_j - D_j] because the decode
follows the last step and ends by d_j; the decode cannot start before r_j + S_j min_p T_p. The video is
sequential, so its step and decode time inside I_i is at most |I_i|. The GPU-seconds so attributed never exceed
what the schedule really used (late requests, idle, pause/resume/reconfigure and text-encode costs are dropped),
and a schedule uses at most N |I_i| GPU-seconds in I_i. So (x, s, z, y) is feasible and the objective equals |M|.
Every modelling choice only ever widens the feasible set: any degree, GPU sets need not be aligned, no
one-paused-video-per-GPU limit, images may batch with anything (only the best per-image cost is charged),
free preemption and migration, no text-encode time, fractional steps. Hence LP >= MILP >= |M| for every
schedule, and floor(value + 1e-4) is still a bound (the 1e-4 absorbs solver tolerances). When the MILP stops at
its time limit we report HiGHS's dual bound (>= the MILP optimum), never the incumbent; when an LP stops early we
fall back to the trivial bound (every request that could meet its deadline alone).

Discretisation (always in the bound's favour): windows are widened by `tol` (1e-6 s) on both sides to absorb
float error in a simulator's clock; with fewer breakpoints than events a request may use every interval that
overlaps its window at all (release rounded down, deadline rounded up to the breakpoints), and the per-interval
limits use the whole interval length. Coarsening only enlarges the feasible set, so any breakpoint set is valid.

Degrees that no mix of other degrees beats are kept: per step, (time T_p, GPU-seconds p T_p) points on the
lower-left convex hull. Using a dominated degree can be replaced in the LP by a mix of hull degrees with no more
time and no more GPU-seconds, so dropping them leaves the optimum unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.sparse import coo_matrix

from genserve.core.request import Request
from genserve.core.snapshot import ClusterSpec

TOL = 1e-6  # seconds each window is widened by, so float noise in a simulator never beats the bound
METHODS = ("auto", "lp", "milp")


@dataclass
class BoundResult:
    """Upper bound on the number of requests that any schedule finishes by their deadlines.

    count: the bound (an integer); fraction: count / total; per_modality: {"image": {"count", "total"},
    "video": {...}}: each modality's own bound (its requests alone: a bound on that modality's attainment,
    not jointly achievable with the other's); solve_time: seconds; method: "lp" or "milp" (+ ", time limit"
    when the MILP stopped early and its dual bound was used).
    """

    count: int
    fraction: float
    per_modality: dict[str, dict[str, int]]
    solve_time: float
    method: str
    total: int = 0
    value: float = 0.0  # the relaxation's objective before rounding down
    intervals: int = 0
    dropped: int = 0  # requests that cannot meet their deadline even alone on the cluster
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"count": self.count, "fraction": self.fraction, "total": self.total,
                "per_modality": self.per_modality, "solve_time": self.solve_time, "method": self.method,
                "value": self.value, "intervals": self.intervals, "dropped": self.dropped}


@dataclass
class _Job:
    kind: str  # "image" | "video"
    lo: float  # widened release
    hi: float  # widened deadline
    cost: float = 0.0  # image: per-image GPU-seconds
    steps: int = 0
    times: tuple[float, ...] = ()  # video: per-step time at each kept degree
    degrees: tuple[int, ...] = ()
    decode: float = 0.0
    step_hi: float = 0.0  # video: steps end by this time
    decode_lo: float = 0.0  # video: decode cannot start before this


def _hull_degrees(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Degrees whose (T_p, p*T_p) lies on the lower-left convex hull (Pareto front, then convex)."""
    pts = sorted(points, key=lambda q: (q[1], q[0] * q[1]))  # fastest first
    pareto: list[tuple[int, float]] = []
    best_cost = math.inf
    for p, t in pts:
        c = p * t
        if c < best_cost - 1e-15:
            pareto.append((p, t))
            best_cost = c
    # pareto: time increasing, cost decreasing. Lower convex hull (monotone chain).
    hull: list[tuple[int, float]] = []
    for p, t in pareto:
        while len(hull) >= 2:
            (p1, t1), (p2, t2) = hull[-2], hull[-1]
            c1, c2, c = p1 * t1, p2 * t2, p * t
            # drop hull[-1] if it lies on or above the segment hull[-2] -> (p, t)
            if (c2 - c1) * (t - t1) >= (c - c1) * (t2 - t1) - 1e-18:
                hull.pop()
            else:
                break
        hull.append((p, t))
    return hull


def _jobs(requests: Sequence[Request], profile, cluster: ClusterSpec, tol: float) -> list[_Job | None]:
    degrees = cluster.usable_degrees
    out: list[_Job | None] = []
    for r in requests:
        lo, hi = r.arrival - tol, r.deadline + tol
        window = hi - lo
        if r.is_video:
            pts = [(p, profile.video_step(r.model, r.width, r.height, r.frames, p))
                   for p in degrees if p in profile.degrees(r.model)]
            hull = _hull_degrees(pts)
            t_fast = min(t for _, t in pts)
            decode = profile.video_decode(r.model, r.width, r.height, r.frames)
            if r.steps * t_fast + decode > window:
                out.append(None)
                continue
            out.append(_Job("video", lo, hi, steps=r.steps, times=tuple(t for _, t in hull),
                            degrees=tuple(p for p, _ in hull), decode=decode, step_hi=hi - decode,
                            decode_lo=lo + r.steps * t_fast))
        else:
            lat = [profile.image_latency(r.model, r.width, r.height, b, r.steps)
                   for b in range(1, profile.max_batch(r.model) + 1)]
            ok = [lat[b - 1] / b for b in range(1, len(lat) + 1) if lat[b - 1] <= window]
            if not ok:
                out.append(None)
                continue
            out.append(_Job("image", lo, hi, cost=min(ok)))
    return out


def _breakpoints(jobs: list[_Job], max_intervals: int) -> np.ndarray:
    ev: list[float] = []
    for j in jobs:
        ev += [j.lo, j.hi]
        if j.kind == "video":
            ev += [j.step_hi, j.decode_lo]
    pts = np.unique(np.asarray(ev, dtype=float))
    if len(pts) - 1 > max_intervals:
        # Keep the ends and evenly spaced quantiles of the event times: windows then round outward.
        idx = np.unique(np.round(np.linspace(0, len(pts) - 1, max_intervals + 1)).astype(int))
        pts = pts[idx]
    return pts


def _span(bp: np.ndarray, a: float, e: float) -> range:
    """Indices of intervals [bp[i], bp[i+1]] that overlap (a, e) (outward rounding)."""
    i0 = max(int(np.searchsorted(bp, a, side="right")) - 1, 0)
    i1 = min(int(np.searchsorted(bp, e, side="left")), len(bp) - 1)
    return range(i0, i1)


def _build(jobs: list[_Job], n_gpus: int, max_intervals: int):
    """The relaxation as (c, A, row_lo, row_hi, var_ub, n_y, intervals): minimise c.x (= -sum y)."""
    bp = _breakpoints(jobs, max_intervals)
    m = len(bp) - 1
    length = np.diff(bp)
    n = len(jobs)
    # variable 0..n-1: y_j
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lb_c: list[float] = []
    ub_c: list[float] = []
    ub_v: list[float] = [1.0] * n
    nvar = n
    nrow = 0
    cap_rows = [[] for _ in range(m)]  # (var, coef)

    def new_var(ub: float) -> int:
        nonlocal nvar
        ub_v.append(ub)
        nvar += 1
        return nvar - 1

    def add_row(entries: list[tuple[int, float]], lo: float, hi: float) -> None:
        nonlocal nrow
        for v, c in entries:
            rows.append(nrow)
            cols.append(v)
            vals.append(c)
        lb_c.append(lo)
        ub_c.append(hi)
        nrow += 1

    for j, job in enumerate(jobs):
        if job.kind == "image":
            work = [(j, -job.cost)]
            for i in _span(bp, job.lo, job.hi):
                v = new_var(float(length[i]))
                work.append((v, 1.0))
                cap_rows[i].append((v, 1.0))
                add_row([(v, 1.0), (j, -float(length[i]))], -np.inf, 0.0)
            add_row(work, 0.0, np.inf)
        else:
            steps = [(j, -float(job.steps))]
            dec = [(j, -job.decode)]
            per: dict[int, list[tuple[int, float]]] = {}
            for i in _span(bp, job.lo, job.step_hi):
                for p, t in zip(job.degrees, job.times):
                    v = new_var(np.inf)
                    steps.append((v, 1.0))
                    per.setdefault(i, []).append((v, t))
                    cap_rows[i].append((v, p * t))
            for i in _span(bp, job.decode_lo, job.hi):
                v = new_var(float(length[i]))
                dec.append((v, 1.0))
                per.setdefault(i, []).append((v, 1.0))
                cap_rows[i].append((v, 1.0))
            add_row(steps, 0.0, np.inf)
            add_row(dec, 0.0, np.inf)
            for i, entries in per.items():
                add_row(entries + [(j, -float(length[i]))], -np.inf, 0.0)
    for i in range(m):
        if cap_rows[i]:
            add_row(cap_rows[i], -np.inf, n_gpus * float(length[i]))

    c = np.zeros(nvar)
    c[:n] = -1.0
    A = coo_matrix((vals, (rows, cols)), shape=(nrow, nvar)).tocsr()
    return c, A, np.asarray(lb_c), np.asarray(ub_c), np.asarray(ub_v), n, m


def _solve(jobs: list[_Job], n_gpus: int, method: str, time_limit: float,
           max_intervals: int) -> tuple[float, str, int]:
    """Optimal value (or a dual bound) of the relaxation over `jobs`, the method used, and the interval count."""
    if not jobs:
        return 0.0, method, 0
    c, A, lb_c, ub_c, ub_v, n, m = _build(jobs, n_gpus, max_intervals)
    return _run_highs(c, A, lb_c, ub_c, ub_v, n, m, method, time_limit, jobs)


_BANNER_SHOWN = False


def _new_highs():
    """A silent Highs instance (the first one in a process prints a banner from C++: send it to /dev/null)."""
    import os
    import sys

    import highspy

    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h


def _run_highs(c, A, lb_c, ub_c, ub_v, n, m, method, time_limit, jobs) -> tuple[float, str, int]:
    import highspy

    inf = highspy.kHighsInf
    h = _new_highs()
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", 1)
    use_milp = method == "milp"
    if use_milp:
        h.setOptionValue("mip_rel_gap", 0.0)
    elif len(c) > 20000:
        h.setOptionValue("solver", "ipm")  # big LPs: interior point (with crossover) is several times faster
    lp = highspy.HighsLp()
    lp.num_col_ = len(c)
    lp.num_row_ = A.shape[0]
    lp.col_cost_ = c
    lp.col_lower_ = np.zeros(len(c))
    lp.col_upper_ = np.where(np.isfinite(ub_v), ub_v, inf)
    lp.row_lower_ = np.where(np.isfinite(lb_c), lb_c, -inf)
    lp.row_upper_ = np.where(np.isfinite(ub_c), ub_c, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    if use_milp:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n + [highspy.HighsVarType.kContinuous] * (len(c) - n)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    if status == highspy.HighsModelStatus.kOptimal:
        val = -float(info.objective_function_value)
        if use_milp:
            # Gap 0: the optimum; HiGHS's dual bound is at least as large up to tolerances, so take the max.
            dual = float(info.mip_dual_bound)
            if np.isfinite(dual):
                val = max(val, -dual)
        return val, method, m
    if use_milp and np.isfinite(float(info.mip_dual_bound)):
        return -float(info.mip_dual_bound), "milp, time limit", m
    # No usable bound (time limit in an LP, numerical trouble): every request that fits alone is a bound.
    return float(n), f"trivial ({h.modelStatusToString(status)})", m


def upper_bound(requests: Sequence[Request], profile, cluster: ClusterSpec | int, *, method: str = "auto",
                time_limit: float = 20.0, max_intervals: int = 600, per_modality: bool = True,
                tol: float = TOL) -> BoundResult:
    """An upper bound on how many of `requests` any schedule on `cluster` can finish by their deadlines.

    method: "lp" (the relaxation), "milp" (y integral: tighter, HiGHS dual bound if it hits `time_limit`),
    "auto" (the LP: on the paper's traces its floor matched the MILP). max_intervals caps the time grid (more: tighter, slower).
    per_modality: also solve each modality alone (two more solves).
    """
    if isinstance(cluster, int):
        cluster = ClusterSpec(cluster)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    jobs = _jobs(requests, profile, cluster, tol)
    if method == "auto":
        method = "lp"
    kinds = ["video" if r.is_video else "image" for r in requests]

    def solve(which: str | None) -> tuple[int, float, str, int]:
        sel = [jb for jb, k in zip(jobs, kinds) if jb is not None and (which is None or k == which)]
        val, how, m = _solve(sel, cluster.num_gpus, method, time_limit, max_intervals)
        return min(len(sel), int(math.floor(val + 1e-4))), val, how, m

    count, value, how, m = solve(None)
    per: dict[str, dict[str, int]] = {}
    for k in ("image", "video"):
        total = kinds.count(k)
        if per_modality:
            kc = solve(k)[0] if total else 0
            per[k] = {"count": min(kc, count), "total": total}
        else:
            per[k] = {"count": total, "total": total}
    n = len(requests)
    return BoundResult(count=count, fraction=count / n if n else 1.0, per_modality=per,
                       solve_time=time.perf_counter() - t0, method=how, total=n, value=value, intervals=m,
                       dropped=sum(jb is None for jb in jobs))
