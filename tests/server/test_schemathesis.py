"""Schemathesis against a live server (real uvicorn, simulated engine): the OpenAPI document must describe what the
server does, and nothing schemathesis generates may get a 5xx.

Runs the schemathesis CLI in its own process (the server keeps this one), all four phases (examples, coverage,
fuzzing, stateful via the document's links), bounded examples and a fixed seed so a failure reproduces. Every check
runs except `positive_data_acceptance`, which expects every schema-valid request to succeed: some validity depends
on data no schema can state (a size and frame count the profile can estimate; `after` naming an existing video),
so those schema-valid requests rightly get a 400.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from server_helpers import API_KEY, live_server, make_settings, sim_engine

EXAMPLES = 40
SEED = int(os.environ.get("GENSERVE_SCHEMATHESIS_SEED", "20261208"))  # another seed explores further
BUDGET_S = 85


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("schemathesis")
    settings = make_settings(d, api_key=API_KEY, engine_kind="sim")
    # 8 simulated GPUs: the hundreds of videos schemathesis creates must not queue its images past the timeout
    with live_server(sim_engine(d, gpus=8), settings) as s:
        yield s


def _server_errors(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20).text
    return {m.group(0): float(m.group(1)) for m in
            re.finditer(r'genserve_api_requests_total\{[^}]*code="5\d\d"[^}]*\} (\S+)', text)}


def test_schemathesis_all_checks(srv, tmp_path):
    cmd = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
           "run", f"{srv.url}/openapi.json", "-H", f"Authorization: Bearer {API_KEY}",
           "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "--phases", "examples,coverage,fuzzing,stateful", "-n", str(EXAMPLES), "--seed", str(SEED),
           "--generation-database", "none", "--request-timeout", "60", "--workers", "1", "--no-color"]
    t0 = time.monotonic()
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=BUDGET_S)
    took = time.monotonic() - t0
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    generated = re.search(r"(\d+) generated", out)
    operations = re.search(r"Tested: (\d+)", out)
    assert generated and int(generated.group(1)) >= 500, out[-3000:]  # not vacuous
    assert operations and int(operations.group(1)) >= 10, out[-3000:]
    assert _server_errors(srv.url) == {}  # no 5xx at all, whether or not a check looked at it
    print(f"schemathesis: {generated.group(1)} test cases over {operations.group(1)} operations in {took:.1f} s")
