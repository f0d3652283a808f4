import json

from typer.testing import CliRunner

from genserve.cli import app

runner = CliRunner()


def test_trace_generate_and_check(tmp_path):
    out = tmp_path / "t.jsonl"
    res = runner.invoke(app, ["trace", "generate", "-o", str(out), "--requests", "20", "--mix", "heavy", "--seed", "3"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert len(lines) == 20 and all(json.loads(x)["id"] for x in lines)
    res = runner.invoke(app, ["trace", "check", str(out)])
    assert res.exit_code == 0 and "ok: 20 requests" in res.output


def test_bad_options_one_line_error(tmp_path):
    res = runner.invoke(app, ["trace", "generate", "-o", str(tmp_path / "x"), "--arrival", "weird"])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: unknown arrival process 'weird'")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    res = runner.invoke(app, ["trace", "check", str(bad)])
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output and "Traceback" not in res.output
