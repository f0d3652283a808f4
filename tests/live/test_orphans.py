"""A process that owns workers is SIGKILLed (no atexit, no handler runs): its workers and its forkserver still
exit by themselves (each worker's command pipe closes, which it takes as "stop"), so nothing is orphaned."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from live_helpers import alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SCRIPT = r"""
import sys, time
from genserve.executors.local import LocalExecutor

if __name__ == "__main__":
    ex = LocalExecutor(2, output_dir=sys.argv[1], startup_timeout_s=120)
    ex.start()
    print("PIDS", *ex.worker_pids(), ex.forkserver_pid, flush=True)
    time.sleep(600)
"""


def test_workers_exit_when_their_owner_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if line.startswith("PIDS"):
                    break
        assert line.startswith("PIDS"), f"the owner did not start its workers (exit code {proc.poll()})"
        pids = [int(p) for p in line.split()[1:] if p != "None"]
        assert len(pids) == 3 and all(alive(p) for p in pids)  # two workers and the forkserver
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if alive(p)], "a worker or the forkserver outlived its owner"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for p in pids:  # never leave anything behind, even when the test fails
            if alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
