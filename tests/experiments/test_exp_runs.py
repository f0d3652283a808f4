"""`genserve experiment ...` end to end on reduced grids, job dedup and aggregation (the torch-free rule:
tests/foundations/test_control_plane_imports.py)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from genserve.cli import app
from genserve.experiments.grid import ALL, EXPERIMENTS, build
from genserve.experiments.report import _stats
from genserve.experiments.runner import plan_jobs

runner = CliRunner()


@pytest.fixture(scope="module")
def all_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    res = runner.invoke(app, ["experiment", "all", "--seeds", "1", "--requests", "20", "--scale", "16",
                              "--scale-requests", "20", "--out", str(out), "--workers", "2", "--no-progress"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return out, res.output


@pytest.mark.parametrize("name", ALL)
def test_each_experiment_writes_its_files(all_out, name):
    out, _ = all_out
    d = out / name
    for f in ("runs.csv", "summary.csv", "results.json", "table.md"):
        assert (d / f).is_file(), f
    assert list(d.glob("*.png")), "no plot"
    exp = build(name, requests=20, scale_gpus=(16,), scale_requests=20)
    with (d / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(exp.settings) * len(exp.variants)
    for r in rows:
        assert 0.0 <= float(r["sar"]) <= 1.0
        # the bound is never below what a policy achieved on the same trace
        assert int(r["met"]) <= int(r["bound_count"])
        assert float(r["ratio_to_bound"]) <= 1.0 + 1e-9
    table = (d / "table.md").read_text()
    assert "LP bound" in table and "ratio to bound" in table
    data = json.loads((d / "results.json").read_text())
    assert data["experiment"] == name and data["summary"]


def test_tables_show_the_paper_beside_ours(all_out):
    out, output = all_out
    assert "(78)" in (out / "e1" / "table.md").read_text()  # genserve at sigma 1 in the paper
    assert "(63)" in (out / "ablation" / "table.md").read_text()
    assert "(5.8)" in (out / "e4" / "table.md").read_text()
    report = (out / "report.md").read_text()
    assert "Headline" in report and "ratio to bound" in report
    for name in ALL:
        assert (out / name / "table.md").read_text().splitlines()[0] in report
    assert "report:" in output


def test_json_output_and_single_experiment(tmp_path):
    res = runner.invoke(app, ["experiment", "e2", "--seeds", "2", "--requests", "12", "--out", str(tmp_path),
                              "--workers", "1", "--json", "--no-plots"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output.strip().splitlines()[-1])
    summ = obj["experiments"]["e2"]["summary"]
    assert {c["setting"] for c in summ} == {"mix=heavy", "mix=balanced", "mix=light"}
    assert all(c["seeds"] == 2 for c in summ)
    assert not list((tmp_path / "e2").glob("*.png"))


def test_bad_arguments():
    assert runner.invoke(app, ["experiment", "e9"]).exit_code == 2
    assert runner.invoke(app, ["experiment", "e1", "--seeds", "0"]).exit_code == 2
    assert runner.invoke(app, ["experiment", "scale", "--scale", "x"]).exit_code == 2


def test_default_setting_runs_are_shared():
    exps = [build(n, requests=100) for n in ("e1", "e2", "e3", "e4", "resolution")]
    jobs, index = plan_jobs(exps, 2)
    sims = [k for k, j in jobs.items() if j["kind"] == "sim"]
    # 5 policies x (6 + 3 + 5 + 1 + 2 settings), minus the default setting counted 5 times -> 4 duplicates
    assert len(sims) == 5 * 2 * (6 + 3 + 5 + 1 + 2 - 4)
    default = [j for j in jobs.values() if j["kind"] == "sim" and j["keep_latencies"]]
    assert len(default) == 5 * 2  # e4's runs keep latencies, whoever planned them first
    assert len(index) == sum(len(e.settings) * 2 * (len(e.variants) + 1) for e in exps)


def test_stats():
    s = _stats([0.5, 0.7, None])
    assert s["mean"] == pytest.approx(0.6) and s["min"] == 0.5 and s["max"] == 0.7 and s["n"] == 2
    assert _stats([])["mean"] is None
    assert set(EXPERIMENTS) == set(ALL)


def test_reuse_cached_results(tmp_path):
    args = ["experiment", "ablation", "--seeds", "1", "--requests", "10", "--out", str(tmp_path), "--workers", "1",
            "--no-plots", "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = (tmp_path / "ablation" / "table.md").read_text()
    again = runner.invoke(app, args + ["--reuse"])
    assert again.exit_code == 0 and "reusing 5 cached" in again.output
    assert (tmp_path / "ablation" / "table.md").read_text() == table
