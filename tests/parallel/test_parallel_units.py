"""Single-process pieces of genserve.parallel: mode choice, state packing, the SP-1 path of sp_forward."""

from __future__ import annotations

import copy

import pytest
import torch

from genserve.parallel import SPGroup, choose_mode, install_sp_processors, pack_state, sp_forward, unpack_state
from genserve.parallel import checks


def test_choose_mode():
    assert choose_mode(8, 2) == "ulysses"
    assert choose_mode(8, 4) == "ulysses"
    assert choose_mode(6, 4) == "ring"
    assert choose_mode(3, 2) == "ring"
    assert choose_mode(8, 2, "ring") == "ring"
    with pytest.raises(ValueError):
        choose_mode(6, 4, "ulysses")
    with pytest.raises(ValueError):
        choose_mode(8, 2, "bogus")


def test_spgroup_properties():
    g = SPGroup((2, 3), None, 3)
    assert g.size == 2 and g.leader == 2 and g.is_member and g.local_rank == 1
    outsider = SPGroup((0, 1), None, 3)
    assert not outsider.is_member
    with pytest.raises(RuntimeError):
        outsider.local_rank


def test_state_pack_roundtrip_resumes_identically():
    """A state packed mid-run (latents + UniPC history) resumes to the same result as the uninterrupted run."""
    model = checks.tiny_wan(heads=4, layers=1)
    a = checks.init_video_state(model, 4, 2, 8, 8)
    for _ in range(2):
        a = checks.denoise_step(model, a, None)
    b = unpack_state(pack_state(a))
    assert b is not a and b["scheduler"] is not a["scheduler"]
    for _ in range(2):
        a = checks.denoise_step(model, a, None)
        b = checks.denoise_step(model, b, None)
    assert torch.equal(a["latents"], b["latents"])


def test_sp_forward_degree_one_is_the_plain_forward():
    model = checks.tiny_wan(heads=4, layers=1)
    lat, ts, text = checks.make_inputs(model, 2, 8, 8)
    with torch.no_grad():
        ref = model(lat, ts, text, return_dict=False)[0]
    install_sp_processors(model)
    assert install_sp_processors(model) is install_sp_processors(model)  # idempotent
    assert torch.equal(sp_forward(model, lat, ts, text, None), ref)
    assert torch.equal(sp_forward(model, lat, ts, text, SPGroup((0,), None, 0)), ref)
    copy.deepcopy(model)  # processors stay deep-copyable


def test_sp_forward_refuses_non_member():
    model = checks.tiny_wan(heads=4, layers=1)
    lat, ts, text = checks.make_inputs(model, 2, 8, 8)
    with pytest.raises(RuntimeError):
        sp_forward(model, lat, ts, text, SPGroup((0, 1), None, 3))
