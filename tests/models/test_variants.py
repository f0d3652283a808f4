"""Pipeline variants the adapters mirror: Wan 2.2 TI2V (per-token timesteps), Wan 2.2 A14B (two experts), bf16."""

import pytest
import torch
from diffusers import WanPipeline

from genserve.models import adapter_for, build_tiny_wan, load_adapter
from genserve.models.tiny import _seeded, build_tiny_wan_transformer
from models_helpers import image_req, run_latents, video_req


def _wan_variant(**config):
    base = build_tiny_wan()
    extra = {}
    if config.get("boundary_ratio") is not None:
        with _seeded(5):
            second = build_tiny_wan_transformer()
            for p in second.parameters():  # a different expert: perturb the weights deterministically
                p.data.add_(torch.randn_like(p) * 0.05)
        extra["transformer_2"] = second
    return WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                       scheduler=base.scheduler, transformer=base.transformer, **extra, **config)


@pytest.mark.parametrize("config", [{"expand_timesteps": True}, {"boundary_ratio": 0.9}],
                         ids=["wan22-ti2v", "wan22-two-experts"])
def test_wan22_variants_equal_pipeline_and_resume(config):
    adapter = adapter_for(_wan_variant(**config), "tiny-wan", max_sequence_length=32)
    req = video_req(steps=4)
    ours = adapter.run(req)
    ref = adapter.pipe(req["prompt"], height=32, width=32, num_frames=5, num_inference_steps=4, guidance_scale=5.0,
                       generator=torch.Generator().manual_seed(7), max_sequence_length=32, output_type="pt").frames[0]
    assert torch.equal(ours, ref)
    assert torch.equal(adapter.run(req, pause_at=(1, 2, 3)), ours)
    # The variant really changes the computation (else this test could not fail).
    plain = adapter_for(build_tiny_wan(), "tiny-wan", max_sequence_length=32)
    assert not torch.equal(plain.run(req), ours)


@pytest.mark.parametrize("name,make", [("tiny-sd3", image_req), ("tiny-wan", video_req)])
def test_bf16_loop_equals_pipeline_and_resumes(name, make):
    adapter = load_adapter(name, dtype=torch.bfloat16)
    req = make(steps=3)
    state = run_latents(adapter, req)
    assert state.embeds["prompt_embeds"].dtype == torch.bfloat16
    kw = dict(height=32, width=32, num_inference_steps=3, generator=torch.Generator().manual_seed(req["seed"]),
              max_sequence_length=32, output_type="latent", guidance_scale=req["guidance_scale"])
    if name == "tiny-sd3":
        ref = adapter.pipe(req["prompt"], negative_prompt=req["negative_prompt"], **kw).images
    else:
        ref = adapter.pipe(req["prompt"], num_frames=5, **kw).frames
    assert torch.equal(state.latents, ref)
    assert torch.equal(run_latents(adapter, req, pause_at=(1, 2)).latents, ref)
