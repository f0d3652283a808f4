"""`genserve bench fidelity` in small: a measured profile (engine costs included), a short mixed trace run live on
2 real worker processes and in the simulator on that profile; the prediction must agree within loose bounds (a
2-core box shared with other jobs: live runs of the same trace disagree with each other too, see docs/fidelity.md)."""

import math

import pytest

from genserve.bench.fidelity import fidelity, measure_profile
from genserve.executors.local import LocalExecutor


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    ex = LocalExecutor(2, sp_degrees=(1, 2), output_dir=tmp_path_factory.mktemp("fid-out"), startup_timeout_s=150)
    ex.start()
    try:
        yield ex
    finally:
        ex.close()


def test_simulator_predicts_a_short_live_run(two_workers):
    ex = two_workers
    prof = measure_profile(2, executor=ex, repeats=1, min_timed_s=0.05, log=lambda s: None)
    vm = prof.doc.video_models["tiny-wan"]
    assert vm.handover_s and vm.dispatch_s is not None and all(p.write_s for p in vm.points)
    assert vm.busy_factor >= 1.0 and prof.doc.image_models["tiny-sd3"].prepare_s > 0
    rep = fidelity(ex, prof, policy="fcfs", sigma=2.0, requests=12, seed=1, live_runs=2, log=lambda s: None)
    assert rep["requests"] == 12 and len(rep["per_request"]) == 12
    assert all(x is not None for r in rep["per_request"] for x in r["live_s"]), "every request finished live"
    assert all(r["sim_s"] is not None for r in rep["per_request"])
    # the same commands on both sides under FCFS: every image alone, no pause
    assert rep["counts_sim"]["image_batches"] == rep["counts_live"]["image_batches"]
    assert rep["counts_sim"]["pauses"] == rep["counts_live"]["pauses"] == 0
    # loose agreement: the box is shared, its speed drifts 2-3x within a minute (docs/fidelity.md), so the bounds
    # allow that; the rank correlation is blind to a uniform drift (fcfs cells measured 0.71-0.98)
    assert rep["rank_correlation"] >= 0.5, rep
    assert rep["median_rel_error"] < 0.8, rep
    assert abs(rep["sar_sim"] - rep["sar_live"]) <= 0.35, rep
    assert rep["outcome_agreement"] >= 0.5, rep
    assert not math.isnan(rep["live_outcome_agreement"])
