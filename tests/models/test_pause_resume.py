"""Pause/resume at step boundaries is bit-exact, in memory, through bytes, and in a fresh adapter instance."""

import copy
import io

import pytest
import torch

from genserve.core.errors import ValidationError
from genserve.models import State, load_adapter
from models_helpers import image_req, run_latents, video_req

STEPS = 5


@pytest.fixture(scope="module")
def sd3_ref(sd3):
    return run_latents(sd3, image_req(steps=STEPS)).latents


@pytest.fixture(scope="module")
def wan_ref(wan):
    return run_latents(wan, video_req(steps=STEPS)).latents


@pytest.mark.parametrize("k", range(STEPS))  # before step k (k = STEPS would never pause)
def test_sd3_single_pause_through_bytes(sd3, sd3_ref, k):
    assert torch.equal(run_latents(sd3, image_req(steps=STEPS), pause_at=(k,)).latents, sd3_ref)


@pytest.mark.parametrize("k", range(STEPS))
def test_wan_single_pause_through_bytes(wan, wan_ref, k):
    assert torch.equal(run_latents(wan, video_req(steps=STEPS), pause_at=(k,)).latents, wan_ref)


def test_repeated_pauses_both_families(sd3, wan, sd3_ref, wan_ref):
    every = tuple(range(STEPS))
    assert torch.equal(run_latents(sd3, image_req(steps=STEPS), pause_at=every).latents, sd3_ref)
    assert torch.equal(run_latents(wan, video_req(steps=STEPS), pause_at=every).latents, wan_ref)
    assert torch.equal(run_latents(wan, video_req(steps=STEPS), pause_at=(1, 3)).latents, wan_ref)


def test_paused_in_memory_while_others_run(wan, wan_ref):
    """The serving pattern: pause A, run B on the same adapter, resume A."""
    a = wan.prepare(video_req(steps=STEPS))
    wan.step(a)
    wan.step(a)
    paused = wan.pause(a)
    run_latents(wan, video_req(steps=3, seed=99, prompt="another video"))
    a = wan.resume(paused)
    while not a.done:
        wan.step(a)
    assert torch.equal(a.latents, wan_ref)


@pytest.mark.parametrize("family", ["sd3", "wan"])
def test_state_moves_to_fresh_adapter_instance(request, family):
    """Bytes from one adapter resume in another instance (fresh pipeline, fresh scheduler) bit for bit."""
    first = request.getfixturevalue(family)
    req = image_req(steps=STEPS) if family == "sd3" else video_req(steps=STEPS)
    ref = first.run(req)
    state = first.prepare(req)
    for _ in range(2):
        first.step(state)
    blob = state.to_bytes()
    fresh = load_adapter(first.name)
    assert fresh.pipe is not first.pipe
    moved = fresh.resume(State.from_bytes(blob, "cpu"))
    while not moved.done:
        fresh.step(moved)
    assert torch.equal(fresh.decode(moved), ref)


def test_unipc_history_travels_with_the_state(wan):
    state = wan.prepare(video_req(steps=STEPS))
    for _ in range(3):
        wan.step(state)
    s = state.scheduler
    assert s.lower_order_nums >= 1 and s.last_sample is not None and s.model_outputs[-1] is not None
    r = State.from_bytes(state.to_bytes()).scheduler
    assert type(r) is type(s)
    for key in ("lower_order_nums", "this_order", "_step_index", "_begin_index", "num_inference_steps"):
        assert getattr(r, key) == getattr(s, key), key
    for key in ("last_sample", "timesteps", "sigmas"):
        assert torch.equal(getattr(r, key), getattr(s, key)), key
    assert len(r.model_outputs) == len(s.model_outputs)
    for x, y in zip(r.model_outputs, s.model_outputs):
        assert (x is None and y is None) or torch.equal(x, y)
    assert [int(t) for t in r.timestep_list if t is not None] == [int(t) for t in s.timestep_list if t is not None]


def test_dropping_unipc_history_changes_the_result(wan, wan_ref):
    """Negative control: resuming with a history-free scheduler must NOT match, so the tests above can fail."""
    state = wan.prepare(video_req(steps=STEPS))
    for _ in range(2):
        wan.step(state)
    fresh = wan.new_scheduler()
    fresh.set_timesteps(STEPS, device=wan.device)
    fresh.set_begin_index(0)
    fresh._step_index = state.scheduler._step_index
    state.scheduler = fresh
    while not state.done:
        wan.step(state)
    assert not torch.equal(state.latents, wan_ref)


def test_state_bytes_hold_no_modules(wan):
    state = wan.prepare(video_req(steps=STEPS))
    wan.step(state)
    blob = state.to_bytes()
    # the blob loads under weights_only=True (no pickled classes or modules), which is what from_bytes relies on
    torch.load(io.BytesIO(blob), weights_only=True)
    assert len(blob) < 200_000 and state.nbytes() > 0
    copy_ = State.from_bytes(blob)
    assert copy_.step == 1 and copy_.num_steps == STEPS and copy_.seed == 7 and copy_.frames == 5
    assert copy_.scheduler is not state.scheduler


def test_resume_rejects_a_foreign_state(sd3, wan):
    state = wan.prepare(video_req(steps=2))
    with pytest.raises(ValidationError, match="tiny-wan"):
        sd3.resume(state)


def test_prepare_deep_copies_the_scheduler(sd3):
    a = sd3.prepare(image_req(steps=3))
    b = sd3.prepare(image_req(steps=7))
    assert a.scheduler is not b.scheduler and a.scheduler is not sd3.pipe.scheduler
    assert len(a.scheduler.timesteps) == 3 and len(b.scheduler.timesteps) == 7
    before = copy.deepcopy(vars(sd3.pipe.scheduler))
    sd3.step(a)
    assert _same_vars(vars(sd3.pipe.scheduler), before)  # the adapter's own scheduler is never stepped
    sd3.pipe.scheduler._step_index = 1  # the check sees a change (then put it back)
    assert not _same_vars(vars(sd3.pipe.scheduler), before)
    sd3.pipe.scheduler._step_index = before["_step_index"]


def _same_vars(a: dict, b: dict) -> bool:
    import numpy as np

    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            same = isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            same = np.array_equal(x, y)
        else:
            same = x == y
        if not same:
            return False
    return True


@pytest.mark.parametrize("family", ["sd3", "wan"])
def test_from_bytes_places_scheduler_tensors_like_the_scheduler_does(request, family):
    """On another device (meta stands in for a GPU here) history follows the latents; UniPC keeps sigmas on CPU."""
    adapter = request.getfixturevalue(family)
    state = adapter.prepare(image_req(steps=4) if family == "sd3" else video_req(steps=4))
    adapter.step(state)
    moved = State.from_bytes(state.to_bytes(), "meta")
    assert moved.latents.is_meta and all(t.is_meta for t in moved.embeds.values())
    s = moved.scheduler
    assert s.timesteps.is_meta
    if family == "wan":
        assert s.sigmas.device.type == "cpu"  # UniPC keeps sigmas on the CPU by design
        assert s.last_sample.is_meta and s.model_outputs[-1].is_meta


def test_step_after_the_last_step_is_an_error(sd3, wan):
    s = sd3.prepare(image_req(steps=1))
    sd3.step(s)
    with pytest.raises(ValidationError, match="all 1 steps"):
        sd3.step(s)
    v = wan.prepare(video_req(steps=1))
    wan.step(v)
    with pytest.raises(ValidationError, match="all 1 steps"):
        wan.step(v)
    with pytest.raises(ValidationError, match="tiny-wan"):
        sd3.step(wan.prepare(video_req(steps=1)))
