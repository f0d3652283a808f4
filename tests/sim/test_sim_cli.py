"""`genserve simulate` and `genserve bench simulator` from the outside."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from genserve.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["simulate", *args])


def test_json_shape_single_policy():
    r = run("--policy", "fcfs", "--requests", "30", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["policy"] == "fcfs" and out["requests"] == 30
    assert set(out["sar"]) == {"overall", "image", "video"}
    assert all(v is None or 0.0 <= v <= 1.0 for v in out["sar"].values())
    for m in ("image", "video", "overall"):
        assert set(out["latency"][m]) >= {"p50", "p90", "p99"}
    for key in ("queue_wait", "gpu_utilisation", "preemptions", "sp_changes", "unfinished", "setting"):
        assert key in out
    assert out["setting"]["gpus"] == 8 and out["setting"]["sigma"] == 1.0


def test_json_all_policies_side_by_side():
    r = run("--requests", "20", "--json", "--policy", "fcfs,srtf")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["policy"] for x in out["results"]] == ["fcfs", "srtf"]
    assert out["requests"] == 20


def test_default_table_runs_every_available_policy():
    r = run("--requests", "20")
    assert r.exit_code == 0, r.output
    for name in ("fcfs", "sjf", "srtf", "rasp", "dedicated"):
        assert name in r.stdout
    assert "SLO" in r.stdout


def test_records_and_trace_files(tmp_path):
    trace = tmp_path / "t.jsonl"
    assert runner.invoke(app, ["trace", "generate", "-o", str(trace), "--requests", "15"]).exit_code == 0
    recs = tmp_path / "r.jsonl"
    r = run("--trace", str(trace), "--records", str(recs), "--policy", "sjf", "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in recs.read_text().splitlines()]
    assert len(lines) == 15 and {x["policy"] for x in lines} == {"sjf"}
    assert {"id", "arrival", "deadline", "start", "finish", "latency", "queue_wait", "met_slo", "pauses",
            "sp_changes"} <= set(lines[0])


def test_seeds_average():
    r = run("--policy", "fcfs", "--requests", "20", "--seeds", "3", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["setting"]["seeds"] == 3


@pytest.mark.parametrize("args, message", [
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--rate", "0"], "--rate must be a positive number"),
    (["--gpus", "0"], "num_gpus must be positive"),
    (["--sigma", "-1"], "--sigma must be a positive number"),
    (["--mix", "lots"], "unknown mix 'lots'"),
    (["--arrival", "sometimes"], "unknown arrival process"),
    (["--image-gpus", "8"], "--image-gpus must be within 1..7"),
    (["--profile", "nope"], "no profile 'nope'"),
    (["--trace", "/nonexistent.jsonl"], "cannot read trace"),
    (["--requests", "0"], "--requests must be positive"),
])
def test_bad_options_one_line_exit_2(args, message):
    r = run(*args)
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert "Traceback" not in r.output


def test_parse_errors_are_one_line_through_the_entry_point():
    for args in (["--gpus", "abc"], ["--bogus"]):
        p = subprocess.run([sys.executable, "-c", "from genserve.cli import main; main()", "simulate", *args],
                           capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_bench_simulator_small():
    r = runner.invoke(app, ["bench", "simulator", "--requests", "300", "--gpus", "16", "--policies", "fcfs,srtf",
                            "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["policy"] for x in out["results"]] == ["fcfs", "srtf"]
    assert all(x["events"] > 0 and x["completed_trace"] for x in out["results"])


def test_bench_scheduler_small():
    r = runner.invoke(app, ["bench", "scheduler", "--seeds", "1", "--reps", "1", "--large", "16",
                            "--large-samples", "1"])
    assert r.exit_code == 0, r.output
    assert "1-12 video groups" in r.output and "genserve / srtf" in r.output
    row = [line.split() for line in r.output.splitlines() if line.strip().startswith("16 ")]
    assert row and row[0][-1].endswith("x") and float(row[0][-1][:-1]) > 0


def test_flat_switch_needs_more_rounds_than_two_level():
    args = ("--policy", "genserve", "--gpus", "16", "--requests", "120", "--rate", "48", "--json")
    two, flat = (json.loads(run(*args, *extra).stdout) for extra in ((), ("--flat",)))
    assert two["rounds"] * 2 < flat["rounds"]  # two-level: node rounds, far fewer of them
