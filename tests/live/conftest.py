"""One pool of 4 real worker processes (CPU slots, 1 thread each, gloo world) shared by the live tests.

The pool starts once per module (forkserver with torch/diffusers preloaded, then 4 forks that each build the
tiny SD3 and Wan models); the tests run in file order and the last one closes it and checks that no process is
left. The module fixture closes it again (idempotent) whatever happened.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from genserve.executors.local import LocalExecutor

    out = tmp_path_factory.mktemp("live-out")
    ex = LocalExecutor(4, output_dir=out, save_raw=True, stuck_grace_s=2.0, startup_timeout_s=150)
    ex.start()
    try:
        yield ex
    finally:
        ex.close()
