"""The hindsight upper bound: valid (>= every schedule found by exhaustive search) and not trivial."""

from __future__ import annotations

import random
import time

import pytest

from genserve.core import ClusterSpec, Modality, Request
from genserve.experiments import bound as bound_mod
from genserve.experiments.bound import upper_bound
from genserve.profiles import Profile
from genserve.workloads import WorkloadSpec, generate_trace, to_requests

from _bruteforce import brute_force_best

PROFILE = Profile.load("paper")
IMG = PROFILE.doc.defaults.image_model
VID = PROFILE.doc.defaults.video_model


def _req(i, kind, size, steps, arrival, slack):
    if kind == "image":
        w, h = size
        iso = PROFILE.image_latency(IMG, w, h, 1, steps)
        return Request(id=f"r{i}", modality=Modality.IMAGE, model=IMG, prompt="p", width=w, height=h, steps=steps,
                       seed=0, arrival=arrival, deadline=arrival + slack * iso)
    w, h, f = size
    iso = steps * PROFILE.video_step(VID, w, h, f, 1) + PROFILE.video_decode(VID, w, h, f)
    return Request(id=f"r{i}", modality=Modality.VIDEO, model=VID, prompt="p", width=w, height=h, frames=f,
                   steps=steps, seed=0, arrival=arrival, deadline=arrival + slack * iso)


def _tiny(rng: random.Random, gpus: int):
    n = rng.randint(2, {1: 5, 2: 4, 4: 3}[gpus])
    out = []
    for i in range(n):
        if rng.random() < 0.5:
            size = rng.choice([(768, 768), (1024, 1024)])
            out.append(_req(i, "image", size, rng.randint(2, 5), round(rng.uniform(0, 1.5), 2),
                            rng.uniform(0.6, 3.0)))
        else:
            size = rng.choice([(256, 256, 81), (480, 480, 81), (768, 768, 81)])
            out.append(_req(i, "video", size, rng.randint(1, 3), round(rng.uniform(0, 1.5), 2),
                            rng.uniform(0.3, 2.5)))
    out.sort(key=lambda r: r.arrival)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_bound_at_least_brute_force(seed):
    rng = random.Random(seed)
    gpus = rng.choice([1, 2, 4])
    reqs = _tiny(rng, gpus)
    cluster = ClusterSpec(gpus, gpus_per_node=max(gpus, 1))
    best = brute_force_best(reqs, PROFILE, cluster)
    for method in ("lp", "milp"):
        b = upper_bound(reqs, PROFILE, cluster, method=method)
        assert b.count >= best, (method, b, best, reqs)
        assert b.value + 1e-6 >= best
        for k in ("image", "video"):
            assert b.per_modality[k]["count"] <= b.per_modality[k]["total"]


def test_bound_is_not_trivial():
    # Two 720p videos on one GPU, each with room for exactly itself: only one can make it.
    reqs = [_req(0, "video", (768, 768, 81), 3, 0.0, 1.2), _req(1, "video", (768, 768, 81), 3, 0.0, 1.2)]
    cluster = ClusterSpec(1, gpus_per_node=1)
    assert brute_force_best(reqs, PROFILE, cluster) == 1
    assert upper_bound(reqs, PROFILE, cluster).count == 1
    # An image whose deadline is shorter than its latency can never make it.
    img = _req(2, "image", (1024, 1024), 4, 0.0, 0.5)
    b = upper_bound([img], PROFILE, cluster)
    assert b.count == 0 and b.dropped == 1


def test_hull_pruning_keeps_the_optimum(monkeypatch):
    reqs = to_requests(generate_trace(WorkloadSpec(requests=40, rate=120, mix="heavy", seed=3), PROFILE), PROFILE,
                       0.8)
    cluster = ClusterSpec(8)
    pruned = upper_bound(reqs, PROFILE, cluster, per_modality=False).value
    monkeypatch.setattr(bound_mod, "_hull_degrees", lambda pts: sorted(pts, key=lambda q: q[1]))
    full = upper_bound(reqs, PROFILE, cluster, per_modality=False).value
    assert pruned == pytest.approx(full, abs=1e-5)
    assert pruned < 40  # overloaded: the bound binds


def test_coarse_grid_only_loosens():
    reqs = to_requests(generate_trace(WorkloadSpec(requests=60, rate=60, mix="heavy", seed=5), PROFILE), PROFILE,
                       0.8)
    exact = upper_bound(reqs, PROFILE, ClusterSpec(8), per_modality=False)
    coarse = upper_bound(reqs, PROFILE, ClusterSpec(8), per_modality=False, max_intervals=20)
    assert coarse.intervals <= 20 < exact.intervals
    assert coarse.value >= exact.value - 1e-6


def test_bound_fast_on_paper_trace():
    reqs = to_requests(generate_trace(WorkloadSpec(requests=100, rate=24, seed=0), PROFILE), PROFILE, 1.0)
    t = time.perf_counter()
    b = upper_bound(reqs, PROFILE, ClusterSpec(8))
    assert time.perf_counter() - t < 10
    assert 0 < b.count <= 100 and b.fraction == b.count / 100


@pytest.mark.parametrize("seed", range(6))
def test_bound_never_below_any_policy(seed):
    from genserve.scheduling.options import PolicyOptions
    from genserve.scheduling.registry import available_policies, make_policy
    from genserve.sim.run import run_simulation

    rng = random.Random(100 + seed)
    spec = WorkloadSpec(requests=rng.randint(10, 25), rate=rng.choice([24, 60, 120]),
                        mix=rng.choice(["light", "balanced", "heavy"]), resolutions=rng.choice(["uniform", "skewed"]),
                        arrival=rng.choice(["poisson", "bursty"]), seed=seed)
    reqs = to_requests(generate_trace(spec, PROFILE), PROFILE, rng.choice([0.8, 1.0, 1.3]))
    gpus = rng.choice([2, 4, 8])
    cluster = ClusterSpec(gpus, gpus_per_node=min(gpus, 8))
    b = upper_bound(reqs, PROFILE, cluster)
    option_sets = [PolicyOptions(), PolicyOptions(batching=True), PolicyOptions(elastic_sp=False),
                   PolicyOptions(preemption=False, dp=False, elastic_sp=False)]
    names = available_policies()
    assert {"fcfs", "srtf"} <= set(names)
    for name in names:
        for opts in option_sets:
            if name == "dedicated" and gpus < 2:
                continue
            s = run_simulation(reqs, make_policy(name, opts), cluster, PROFILE).summary()
            met_i = round((s["sar"]["image"] or 0) * s["images"])
            met_v = round((s["sar"]["video"] or 0) * s["videos"])
            assert met_i + met_v <= b.count, (name, opts, met_i + met_v, b)
            assert met_i <= b.per_modality["image"]["count"]
            assert met_v <= b.per_modality["video"]["count"]


def test_bench_bound_cli(tmp_path):
    import json

    from typer.testing import CliRunner

    from genserve.cli import app

    runner = CliRunner()
    trace = tmp_path / "t.jsonl"
    assert runner.invoke(app, ["trace", "generate", "-o", str(trace), "--requests", "15", "--rate", "60",
                               "--mix", "heavy", "--seed", "2"]).exit_code == 0
    res = runner.invoke(app, ["bench", "bound", "--trace", str(trace), "--gpus", "4", "--sigma", "0.9",
                              "--policies", "fcfs,genserve", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    b = out["bound"]
    assert 0 <= b["count"] <= 15 and b["method"] == "lp"
    assert [p["policy"] for p in out["policies"]] == ["fcfs", "genserve"]
    for p in out["policies"]:
        assert p["met"] <= b["count"]
    table = runner.invoke(app, ["bench", "bound", "--trace", str(trace), "--policies", "none"])
    assert table.exit_code == 0 and "upper bound" in table.output
    assert runner.invoke(app, ["bench", "bound", "--trace", str(tmp_path / "missing.jsonl")]).exit_code == 2
