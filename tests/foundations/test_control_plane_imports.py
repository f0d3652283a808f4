import subprocess
import sys

CONTROL_PLANE = [
    "genserve.core", "genserve.profiles", "genserve.workloads", "genserve.scheduling", "genserve.scheduling.options",
    "genserve.engine.api", "genserve.cli", "genserve.profiles.profiler", "genserve.profiles.online",
    "genserve.engine.controller", "genserve.sim.run",
]


def test_control_plane_does_not_import_torch():
    code = (
        "import importlib, sys\n"
        f"for m in {CONTROL_PLANE!r}: importlib.import_module(m)\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
