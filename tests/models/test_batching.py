"""Same-resolution images share one forward pass; each keeps its seed, prompt and guidance."""

import pytest
import torch

from genserve.core.errors import ValidationError
from models_helpers import image_req, run_latents

# Measured on CPU fp32: max |batched - unbatched| is 3.8e-6 on latents (|latents| ~4) and 1.0e-6 on pixels.
LATENT_ATOL = 1e-4
PIXEL_ATOL = 1e-4

REQS = [
    image_req(prompt="a red cat", seed=1, guidance_scale=7.0),
    image_req(prompt="a blue dog on green grass", seed=2, guidance_scale=3.5, negative_prompt=None),
    image_req(prompt="sunset", seed=3, guidance_scale=1.0, negative_prompt=None),  # no CFG
    image_req(prompt="x", seed=4, guidance_scale=12.0),
]


def test_batched_matches_unbatched(sd3):
    solo = [run_latents(sd3, r) for r in REQS]
    states = [sd3.prepare(r) for r in REQS]
    while not states[0].done:
        sd3.step_batch(states)
    for a, b in zip(solo, states):
        assert b.done and b.step == a.step
        torch.testing.assert_close(b.latents, a.latents, atol=LATENT_ATOL, rtol=0)
        torch.testing.assert_close(sd3.decode(b), sd3.decode(a), atol=PIXEL_ATOL, rtol=0)
    # Each request kept its own inputs: the outputs differ from one another.
    assert all(not torch.allclose(states[0].latents, s.latents, atol=1e-2) for s in states[1:])


def test_batch_members_may_be_at_different_steps(sd3):
    """A late joiner shares the forward pass with a request already half way (per-sample timesteps)."""
    early, late = REQS[0] | {"steps": 6}, REQS[1] | {"steps": 4}
    ref_early, ref_late = run_latents(sd3, early), run_latents(sd3, late)
    a = sd3.prepare(early)
    sd3.step(a)
    sd3.step(a)
    b = sd3.prepare(late)
    while not a.done:
        sd3.step_batch([a, b])
    torch.testing.assert_close(a.latents, ref_early.latents, atol=LATENT_ATOL, rtol=0)
    torch.testing.assert_close(b.latents, ref_late.latents, atol=LATENT_ATOL, rtol=0)


def test_batch_of_one_is_exact(sd3):
    ref = run_latents(sd3, REQS[0])
    s = sd3.prepare(REQS[0])
    while not s.done:
        sd3.step_batch([s])
    assert torch.equal(s.latents, ref.latents)


def test_different_resolutions_do_not_batch(sd3):
    a, b = sd3.prepare(image_req()), sd3.prepare(image_req(width=48))
    with pytest.raises(ValidationError, match="same-resolution"):
        sd3.step_batch([a, b])


def test_finished_request_cannot_step_in_a_batch(sd3):
    a, b = sd3.prepare(image_req(steps=1)), sd3.prepare(image_req(steps=2))
    sd3.step(a)
    with pytest.raises(ValidationError, match="finished"):
        sd3.step_batch([a, b])
