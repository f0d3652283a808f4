"""Simulator vs live engine, request by request: the arithmetic of `genserve bench fidelity` (no torch, no I/O).

An outcome is (latency in seconds or None when the request did not finish, met its deadline). The simulated
latency of a request is compared with the mean of its live latencies over the runs; the noise floor compares
each live run with the mean of the other runs (leave one out), so both sides compare one sample with a mean.
Outcome agreement: the share of requests whose met/missed is the same, averaged over the live runs (sim vs each
run) or over the pairs of runs (live vs live).
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

Outcome = tuple[float | None, bool]  # (latency s or None, met deadline)


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default); nan when empty."""
    if not xs:
        return math.nan
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def rel_errors(pred: Mapping[str, float | None], ref: Mapping[str, float | None]) -> dict[str, float]:
    """abs(pred - ref) / ref per request both sides finished (ref > 0)."""
    out = {}
    for rid, r in ref.items():
        p = pred.get(rid)
        if p is None or r is None or r <= 0:
            continue
        out[rid] = abs(p - r) / r
    return out


def agreement(a: Mapping[str, bool], b: Mapping[str, bool]) -> float:
    """Share of the requests of `a` whose met/missed outcome is the same in `b` (missing in b: disagrees)."""
    if not a:
        return math.nan
    return sum(b.get(rid) == met for rid, met in a.items()) / len(a)


def sar(outcomes: Mapping[str, Outcome]) -> float:
    """SLO attainment rate: the share of requests that met their deadline."""
    if not outcomes:
        return math.nan
    return sum(bool(met) for _, met in outcomes.values()) / len(outcomes)


def rank_correlation(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> float:
    """Spearman's rank correlation of two latency maps over the requests both finished (ties: mean rank); nan when
    fewer than 3 or a side is constant. Insensitive to a machine that is uniformly faster or slower than profiled."""
    ids = [rid for rid in a if a[rid] is not None and b.get(rid) is not None]
    if len(ids) < 3:
        return math.nan

    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        r = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks([a[i] for i in ids]), ranks([b[i] for i in ids])
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else math.nan


def mean_latency(runs: Sequence[Mapping[str, Outcome]]) -> dict[str, float | None]:
    """Per request, the mean latency over the runs in which it finished (None if in none)."""
    out: dict[str, float | None] = {}
    for rid in runs[0]:
        xs = [run[rid][0] for run in runs if rid in run and run[rid][0] is not None]
        out[rid] = sum(xs) / len(xs) if xs else None
    return out


def _met(run: Mapping[str, Outcome]) -> dict[str, bool]:
    return {rid: bool(met) for rid, (_, met) in run.items()}


def _lat(run: Mapping[str, Outcome]) -> dict[str, float | None]:
    return {rid: lat for rid, (lat, _) in run.items()}


def compare(live: Sequence[Mapping[str, Outcome]], sim: Mapping[str, Outcome]) -> dict:
    """The summary figures of a fidelity run: simulated vs the live runs, and live vs live (the noise floor).

    Keys (fractions): median_rel_error, p90_rel_error, sar_live (mean over runs), sar_sim, outcome_agreement,
    live_median_rel_error, live_p90_rel_error, live_outcome_agreement (nan with a single live run), plus
    sar_live_runs and per_request (id -> live mean latency, simulated latency, relative error)."""
    if not live:
        raise ValueError("need at least one live run")
    ref = mean_latency(live)
    errs = rel_errors(_lat(sim), ref)
    sim_met = _met(sim)
    out = {
        "requests": len(live[0]),
        "median_rel_error": quantile(list(errs.values()), 0.5),
        "p90_rel_error": quantile(list(errs.values()), 0.9),
        "sar_live": sum(sar(run) for run in live) / len(live),
        "sar_live_runs": [sar(run) for run in live],
        "sar_sim": sar(sim),
        "outcome_agreement": sum(agreement(_met(run), sim_met) for run in live) / len(live),
        "rank_correlation": rank_correlation(_lat(sim), ref),
        "sim_over_live_median": quantile([_lat(sim)[rid] / ref[rid] for rid in errs], 0.5),
    }
    floor: list[float] = []
    for i, run in enumerate(live):  # each run against the mean of the others
        others = [r for j, r in enumerate(live) if j != i]
        if others:
            floor += list(rel_errors(_lat(run), mean_latency(others)).values())
    pairs = [agreement(_met(a), _met(b)) for a, b in itertools.combinations(live, 2)]
    out["live_median_rel_error"] = quantile(floor, 0.5)
    out["live_p90_rel_error"] = quantile(floor, 0.9)
    out["live_outcome_agreement"] = sum(pairs) / len(pairs) if pairs else math.nan
    out["per_request"] = {rid: {"live_mean_s": ref[rid], "sim_s": sim.get(rid, (None, False))[0],
                                "rel_error": errs.get(rid)} for rid in ref}
    return out


def goals(summary: Mapping, *, policy: str) -> dict[str, bool]:
    """The issue's goals for one cell: SAR within 3 points; median error <= 5 % and p90 <= 15 % (or no worse than
    live vs live where that floor is higher); agreement >= 95 % (fcfs) or >= live vs live (other policies)."""
    s = summary
    lf_med = s.get("live_median_rel_error", math.nan)
    lf_p90 = s.get("live_p90_rel_error", math.nan)
    floor_med = max(0.05, lf_med) if not math.isnan(lf_med) else 0.05
    floor_p90 = max(0.15, lf_p90) if not math.isnan(lf_p90) else 0.15
    want_agree = 0.95 if policy == "fcfs" else s.get("live_outcome_agreement", 0.95)
    if math.isnan(want_agree):
        want_agree = 0.95
    return {
        "sar_within_3_points": abs(s["sar_sim"] - s["sar_live"]) <= 0.03 + 1e-9,
        "median_error": s["median_rel_error"] <= floor_med + 1e-9,
        "p90_error": s["p90_rel_error"] <= floor_p90 + 1e-9,
        "outcome_agreement": s["outcome_agreement"] >= want_agree - 1e-9,
    }
