"""Our step loop reproduces the diffusers pipeline call exactly (same inputs, same generator)."""

import torch

from models_helpers import image_req, video_req


def test_sd3_loop_equals_pipeline(sd3):
    req = image_req()
    ours = sd3.run(req)
    ref = sd3.pipe(req["prompt"], negative_prompt=req["negative_prompt"], height=32, width=32, num_inference_steps=5,
                   guidance_scale=4.5, generator=torch.Generator().manual_seed(3), max_sequence_length=32,
                   output_type="pt").images[0]
    assert ours.shape == (3, 32, 32)
    assert torch.equal(ours, ref)


def test_sd3_without_cfg_equals_pipeline(sd3):
    req = image_req(guidance_scale=1.0, negative_prompt=None, width=48, height=32, seed=11)
    ours = sd3.run(req)
    ref = sd3.pipe(req["prompt"], height=32, width=48, num_inference_steps=5, guidance_scale=1.0,
                   generator=torch.Generator().manual_seed(11), max_sequence_length=32, output_type="pt").images[0]
    assert ours.shape == (3, 32, 48)
    assert torch.equal(ours, ref)


def test_wan_loop_equals_pipeline(wan):
    req = video_req(width=64, height=32, frames=9)
    ours = wan.run(req)
    ref = wan.pipe(req["prompt"], height=32, width=64, num_frames=9, num_inference_steps=5, guidance_scale=5.0,
                   generator=torch.Generator().manual_seed(7), max_sequence_length=32, output_type="pt").frames[0]
    assert ours.shape == (9, 3, 32, 64)
    assert torch.equal(ours, ref)


def test_different_seeds_differ(sd3):
    # The equality tests above would pass vacuously if the output ignored its inputs.
    a = sd3.run(image_req(seed=1))
    b = sd3.run(image_req(seed=2))
    assert not torch.equal(a, b)
