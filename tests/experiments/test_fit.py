"""The paper-load fit (genserve/experiments/fit.py) and the bundled `paper-fit` profile it produced."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from genserve.experiments import fit
from genserve.experiments.fit import (BASELINES, Cell, Evaluation, FitParams, PAPER_FIT, candidate_profile,
                                      cell_values, fit_cells, held_out_cells, mae, search)
from genserve.profiles import Profile
from genserve.workloads import WorkloadSpec, generate_trace
from genserve.workloads.fitted import load_settings
from genserve.workloads.generate import _fixed_weights
from genserve.workloads.trace import deadline_for, isolated_latency

# The documented single-cell check (paper-fit.md, "Fit error"): E2 light mix, FCFS, 5 seeds.
ONE_CELL = ("e2", "mix=light", "fcfs", "overall")


def _paper_json() -> dict:
    return json.loads(resources.files("genserve.profiles").joinpath("data", "paper.json").read_text())


# ---- arithmetic -------------------------------------------------------------------------------------------------

def test_mae_skips_missing_values_and_averages_absolute_errors():
    assert mae([10.0, 20.0, 30.0], [12.0, 20.0, 25.0]) == pytest.approx((2 + 0 + 5) / 3)
    assert mae([float("nan"), 50.0], [0.0, 40.0]) == pytest.approx(10.0)
    assert mae([], []) != mae([], [])  # NaN: nothing to average


def test_quantile_matches_numpy_linear():
    xs = sorted(np.random.default_rng(3).random(37).tolist())
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert fit._quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))


def test_cell_values_average_seeds_in_percent():
    c = Cell("e2", "mix=light", "fcfs", "video", 50.0, policy="fcfs")
    runs = {fit._run_key(c): [{"sar_video": 0.5}, {"sar_video": 1.0}, {"sar_video": None}]}
    assert cell_values([c], runs) == [pytest.approx(75.0)]


def test_fit_cells_are_the_baselines_only_and_held_out_cells_never_overlap():
    cells = fit_cells()
    assert {c.variant for c in cells} == set(BASELINES)
    assert len(cells) == 64  # E1 24, E2 13 (incl. SRTF heavy video), E3 3, resolution 24
    assert len({c.name for c in cells}) == len(cells)
    held = held_out_cells()
    assert not {c.name for c in cells} & {c.name for c in held}
    assert all(c.variant not in BASELINES or c.exp == "motivation" for c in held)


def test_candidate_profile_defaults_reproduce_paper_and_apply_each_knob():
    paper = _paper_json()
    doc = candidate_profile(FitParams(), name="paper", description=paper["description"])
    assert doc == paper
    p = FitParams(video_steps=120, video_step_scale=1.2, video_step_overhead_s=0.1, video_request_overhead_s=2.0,
                  image_scale=1.5, image_request_overhead_s=0.5)
    doc = candidate_profile(p)
    pv = paper["video_models"]["wan2.2-t2v-5b"]
    dv = doc["video_models"]["wan2.2-t2v-5b"]
    assert dv["default_steps"] == 120
    assert dv["text_encode_s"] == pytest.approx(pv["text_encode_s"] + 2.0)
    for a, b in zip(pv["points"], dv["points"]):
        for d in a["step_s"]:
            assert b["step_s"][d] == pytest.approx(a["step_s"][d] * 1.2 + 0.1, abs=1e-6)
        assert b["decode_s"] == a["decode_s"]
    pi = paper["image_models"]["sd3.5-medium"]
    di = doc["image_models"]["sd3.5-medium"]
    assert di["text_encode_s"] == pytest.approx(pi["text_encode_s"] + 0.5)
    assert di["points"][2]["step_s"]["1"] == pytest.approx(pi["points"][2]["step_s"]["1"] * 1.5)
    assert di["points"][4]["decode_s"]["8"] == pytest.approx(pi["points"][4]["decode_s"]["8"] * 1.5)
    Profile.from_dict(doc)  # still a valid profile
    off = fit.offline_params(p)
    assert (off.video_steps, off.image_scale) == (120, 1.5)
    assert (off.video_step_scale, off.video_step_overhead_s, off.video_request_overhead_s,
            off.image_request_overhead_s) == (1.0, 0.0, 0.0, 0.0)


def test_deadline_bases():
    prof = Profile.load("paper")
    m = "wan2.2-t2v-5b"
    sp1 = isolated_latency(prof, "video", m, 768, 768, 81, 89, "sp1")
    assert sp1 == pytest.approx(prof.isolated_latency("video", m, 768, 768, 81, 89))
    assert isolated_latency(prof, "video", m, 768, 768, 81, 89, "fastest") == pytest.approx(
        0.03 + 89 * prof.video_step(m, 768, 768, 81, 8) + 2.47)
    assert isolated_latency(prof, "video", m, 256, 256, 81, 89, "fastest") == pytest.approx(
        0.03 + 89 * prof.video_step(m, 256, 256, 81, 4) + 0.34)  # 1.7x at SP 4 beats 0.9x at SP 8
    assert isolated_latency(prof, "video", m, 480, 480, 81, 89, "sp2") == pytest.approx(
        0.03 + 89 * prof.video_step(m, 480, 480, 81, 2) + 1.01)
    img = isolated_latency(prof, "image", "sd3.5-medium", 1024, 1024, 1, None, "fastest")
    assert img == pytest.approx(prof.isolated_latency("image", "sd3.5-medium", 1024, 1024))
    assert deadline_for(prof, "video", m, 768, 768, 81, 89, 10.0, 1.2, "sp1") == pytest.approx(10 + 1.8 * sp1)
    with pytest.raises(ValueError):
        isolated_latency(prof, "video", m, 768, 768, 81, 89, "sp3")


def test_shared_skew_weights():
    spec = WorkloadSpec(resolutions="skewed", skew_seed=4)
    wi, wv = _fixed_weights(spec, 3, 3)
    g = np.random.default_rng(4)
    assert np.allclose(wi, g.dirichlet(np.ones(3))) and np.allclose(wv, g.dirichlet(np.ones(3)))
    prof = Profile.load("paper")
    only = generate_trace(WorkloadSpec(resolutions="skewed", video_weights=(0, 0, 1), seed=2), prof)
    assert {r.width for r in only if r.modality == "video"} == {768}
    # without the new fields the per-trace draw is the one it always was (same trace as an explicit None)
    a = generate_trace(WorkloadSpec(resolutions="skewed", seed=1), prof)
    b = generate_trace(WorkloadSpec(resolutions="skewed", seed=1, skew_seed=None), prof)
    assert a == b


def test_default_jobs_keep_their_keys():
    from genserve.experiments.runner import _normalise

    d = _normalise({"requests": 100, "rate": 24, "seed": 0})
    assert not {"skew_seed", "image_weights", "video_weights"} & set(d)


def test_coordinate_search_finds_the_grid_minimum():
    target = {"video_runtime_s": 49.0, "image_scale": 1.5}
    calls = []

    def evaluate(p: FitParams) -> Evaluation:
        calls.append(p)
        err = abs(p.video_runtime_s - target["video_runtime_s"]) / 10 + abs(p.image_scale - target["image_scale"]) * 4
        return Evaluation(p, err, [], 0.0)

    grid = {"video_runtime_s": (37.0, 43.0, 49.0), "image_scale": (0.5, 1.0, 1.5, 2.0)}
    best = search(FitParams(), grid, rounds=3, evaluate=evaluate)
    assert (best.params.video_runtime_s, best.params.image_scale) == (49.0, 1.5)
    assert best.error == 0
    assert len(calls) == len(set(calls))  # every candidate evaluated once


# ---- the shipped profile ------------------------------------------------------------------------------------------

def test_paper_fit_profile_is_valid_and_is_the_documented_fit():
    prof = Profile.load("paper-fit")
    assert prof.name == "paper-fit"
    assert prof.to_dict() == Profile.from_dict(fit.paper_fit_profile()).to_dict()
    st = load_settings("paper-fit")
    assert st["workload"] == fit.workload_overrides(PAPER_FIT)
    assert st["deadline_basis"] == PAPER_FIT.deadline_basis
    assert load_settings("paper") == {}
    md = resources.files("genserve.profiles").joinpath("data", "paper-fit.md").read_text()
    assert f"{fit.steps_for(PAPER_FIT)} steps" in md


def test_paper_fit_reproduces_its_documented_error_on_one_cell():
    cells = [c for c in fit_cells() if (c.exp, c.setting, c.variant, c.metric) == ONE_CELL]
    assert len(cells) == 1
    runs = fit.simulate_cells(PAPER_FIT, cells, seeds=5)
    (ours,) = cell_values(cells, runs)
    md = resources.files("genserve.profiles").joinpath("data", "paper-fit.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| e2 | mix=light | fcfs | overall |"))
    documented = float(line.split("|")[-3])  # "| exp | setting | variant | metric | paper | paper-fit | error |"
    assert ours == pytest.approx(documented, abs=0.05)
    assert abs(ours - cells[0].paper) == pytest.approx(float(line.split("|")[-2]), abs=0.05)


def test_refine_only_accepts_improvements_and_stays_in_range():
    seen = []

    def evaluate(p: FitParams) -> Evaluation:
        seen.append(p)
        return Evaluation(p, abs(p.image_scale - 1.3) + abs(p.video_step_overhead_s - 0.1), [], 0.0)

    start = evaluate(FitParams())
    best = fit.refine(start, 200, seed=1, evaluate=evaluate)
    assert best.error < start.error
    assert best.error == min(e.error for e in map(evaluate, seen[:]))  # the best of everything evaluated
    lo, hi = fit.RANGES["image_scale"]
    assert all(lo <= p.image_scale <= hi for p in seen)
    lo, hi = fit.RANGES["video_step_overhead_s"]
    assert all(lo <= p.video_step_overhead_s <= hi for p in seen)


def test_load_settings_beside_a_profile_path(tmp_path):
    prof = tmp_path / "mine.json"
    prof.write_text(json.dumps(_paper_json()))
    assert load_settings(str(prof)) == {}
    (tmp_path / "mine.load.json").write_text(json.dumps({"workload": {"arrival": "bursty", "cv": 2.0},
                                                         "deadline_basis": "sp2"}))
    assert load_settings(str(prof)) == {"workload": {"arrival": "bursty", "cv": 2.0}, "deadline_basis": "sp2"}
    (tmp_path / "mine.load.json").write_text(json.dumps({"workload": {"rate": 3}}))
    with pytest.raises(ValueError):
        load_settings(str(prof))


def test_plan_jobs_carry_the_deadline_basis_only_when_set():
    from genserve.experiments.grid import build
    from genserve.experiments.runner import _requests, plan_jobs

    exp = build("e4", requests=10)
    plain, _ = plan_jobs([exp], 1, "paper")
    assert not any("deadline_basis" in j for j in plain.values())
    fast, _ = plan_jobs([exp], 1, "paper", deadline_basis="fastest")
    assert all(j["deadline_basis"] == "fastest" for j in fast.values())
    job = next(iter(fast.values()))
    prof, reqs = _requests(job)
    _, base = _requests(next(iter(plain.values())))
    for a, b in zip(reqs, base):
        assert (a.deadline <= b.deadline) and (a.modality.value == "video" or a.deadline == b.deadline)


def test_profile_show_uses_the_fitted_deadline_basis():
    # paper-fit's deadlines are based on SP 2 (paper-fit.load.json): profile-show must print those, not SP 1's
    from typer.testing import CliRunner

    from genserve.cli import app
    from genserve.workloads.trace import isolated_latency

    prof = Profile.load("paper-fit")
    d = prof.doc.defaults
    w, h, f = d.video_sizes[-1]
    want = 1.5 * isolated_latency(prof, "video", d.video_model, w, h, f, None, "sp2")
    assert abs(want - 1.5 * prof.isolated_latency("video", d.video_model, w, h, f)) > 1.0  # the bases differ here
    r = CliRunner().invoke(app, ["profile-show", "paper-fit"])
    assert r.exit_code == 0, r.output
    row = [ln for ln in r.output.splitlines() if f"{w}x{h}x{f}" in ln][0]
    assert f"{want:.3f}" in row and "basis sp2" in " ".join(r.output.split())
