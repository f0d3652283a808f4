"""genserve's round skipping (`step_rounds = "events_or_waiting"`): same outcome as a round at every step boundary
on sample traces, with fewer rounds (docs/scheduler.md, "Rounds: when genserve asks for one")."""

import pytest

from genserve.profiles import Profile
from genserve.scheduling.dp import GenServePolicy
from genserve.scheduling.dp.compare import requests_for
from genserve.sim import run_simulation


@pytest.mark.parametrize("setting,seed", [("default", 0), ("sigma0.8", 1), ("gpus16", 0)])
def test_events_or_waiting_matches_always(setting, seed):
    prof = Profile.load("paper")
    reqs, gpus = requests_for(setting, seed, prof)
    assert GenServePolicy.step_rounds == "events_or_waiting"
    skip = run_simulation(reqs, GenServePolicy(), gpus, prof, strict=True).summary()
    always = GenServePolicy()
    always.step_rounds = "always"
    full = run_simulation(reqs, always, gpus, prof, strict=True).summary()
    assert skip["sar"] == full["sar"]
    assert skip["finished"] == full["finished"] == len(reqs)
    assert skip["rounds"] < full["rounds"]
