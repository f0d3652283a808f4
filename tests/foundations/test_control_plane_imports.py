"""The control plane (core, profiles, workloads, scheduling, engine, simulator, server, experiments) never imports
torch, diffusers or transformers: each group is imported in a fresh interpreter."""

import subprocess
import sys

import pytest

BANNED = ("torch", "diffusers", "transformers")

GROUPS = {
    "foundations": ["genserve.core", "genserve.profiles", "genserve.profiles.profiler", "genserve.profiles.online",
                    "genserve.workloads", "genserve.cli"],
    "scheduling": ["genserve.scheduling", "genserve.scheduling.options", "genserve.scheduling.baselines",
                   "genserve.scheduling.registry", "genserve.scheduling.validate", "genserve.scheduling.dp",
                   "genserve.scheduling.dp.policy", "genserve.scheduling.dp.solver", "genserve.scheduling.dp.images",
                   "genserve.scheduling.dp.greedy"],
    "engine": ["genserve.engine", "genserve.engine.api", "genserve.engine.controller", "genserve.engine.clock",
               "genserve.engine.scope", "genserve.executors", "genserve.executors.base", "genserve.executors.sim",
               "genserve.sim", "genserve.sim.cli", "genserve.sim.run", "genserve.sim.metrics",
               "genserve.bench.simulator"],
    "server": ["genserve.server.app", "genserve.server.cli", "genserve.engine.runtime"],
    "experiments": ["genserve.experiments.bound", "genserve.experiments.runner", "genserve.experiments.report",
                    "genserve.experiments.cli", "genserve.experiments.grid", "genserve.bench.bound"],
}
# a simulation runs too: importing is not the only way to pull torch in
SMOKE = {"engine": "from genserve.sim import run_simulation\nrun_simulation([], 'fcfs', 2, 'paper')\n"}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_control_plane_does_not_import_torch(group):
    code = ("import importlib, sys\n"
            f"for m in {GROUPS[group]!r}: importlib.import_module(m)\n"
            + SMOKE.get(group, "")
            + f"bad = [m for m in {BANNED!r} if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
