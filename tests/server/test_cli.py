"""`genserve serve` refuses unsafe binds; `genserve demo --engine sim` runs end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from genserve.cli import app


def test_serve_refuses_public_bind_without_key(monkeypatch):
    monkeypatch.delenv("GENSERVE_API_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "sim"])
    assert r.exit_code == 2 and "without an API key" in r.output


def test_serve_rejects_bad_options():
    r = CliRunner().invoke(app, ["serve", "--engine", "bogus"])
    assert r.exit_code == 2 and "--engine" in r.output


def test_demo_sim(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--engine", "sim", "-o", str(out), "--images", "3", "--videos", "1"])
    assert r.exit_code == 0, r.output
    assert "SLO attainment" in r.output and "wrote 4 files" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "sim" and len(summary["requests"]) == 4
    assert all(q["status"] == "done" for q in summary["requests"])
    assert sorted(p.suffix for p in out.iterdir() if p.suffix != ".json") == [".mp4", ".png", ".png", ".png"]


def test_serve_refuses_blank_api_key_on_public_bind(monkeypatch):
    # a whitespace key used to pass the bind check and then be stripped to "no key": auth silently off
    monkeypatch.delenv("GENSERVE_API_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "sim", "--api-key", " "])
    assert r.exit_code == 2 and "API key is blank" in r.output
    monkeypatch.setenv("GENSERVE_API_KEY", "   ")
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "sim"])
    assert r.exit_code == 2 and "API key is blank" in r.output
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "sim", "--api-key", "ab cd"])
    assert r.exit_code == 2 and "whitespace" in r.output
