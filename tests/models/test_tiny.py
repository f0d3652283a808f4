"""The embedded tiny models: deterministic, offline, fast to load, shaped for sequence parallel."""

import time

import torch

from genserve.models import (build_tiny_sd3, build_tiny_wan, build_tiny_wan_transformer, load_adapter,
                             tiny_wan_transformer_config)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_builds_are_deterministic_and_keep_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    p1, p2 = build_tiny_wan(), build_tiny_wan()
    assert torch.equal(torch.rand(3), expected)  # the builder restored the caller's RNG
    for name in ("transformer", "vae", "text_encoder"):
        assert _same_weights(getattr(p1, name), getattr(p2, name)), name
    assert _same_weights(p1.transformer, build_tiny_wan_transformer())
    s1, s2 = build_tiny_sd3(), build_tiny_sd3()
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        assert _same_weights(getattr(s1, name), getattr(s2, name)), name


def test_real_pipeline_structure(sd3, wan):
    from diffusers import (AutoencoderKL, AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel)
    from transformers import CLIPTextModelWithProjection, T5EncoderModel, UMT5EncoderModel

    p = sd3.pipe
    assert isinstance(p, StableDiffusion3Pipeline) and isinstance(p.transformer, SD3Transformer2DModel)
    assert isinstance(p.vae, AutoencoderKL) and isinstance(p.scheduler, FlowMatchEulerDiscreteScheduler)
    assert isinstance(p.text_encoder, CLIPTextModelWithProjection)
    assert isinstance(p.text_encoder_2, CLIPTextModelWithProjection) and isinstance(p.text_encoder_3, T5EncoderModel)
    w = wan.pipe
    assert isinstance(w, WanPipeline) and isinstance(w.transformer, WanTransformer3DModel)
    assert isinstance(w.vae, AutoencoderKLWan) and isinstance(w.scheduler, UniPCMultistepScheduler)
    assert isinstance(w.text_encoder, UMT5EncoderModel)
    assert w.scheduler.config.prediction_type == "flow_prediction" and w.scheduler.config.use_flow_sigmas


def test_loading_takes_about_a_second():
    load_adapter("tiny-sd3"), load_adapter("tiny-wan")  # imports done
    for name in ("tiny-sd3", "tiny-wan"):
        t = time.perf_counter()
        load_adapter(name)
        assert time.perf_counter() - t < 3.0, name  # ~0.1 s measured; slack for a loaded box


def test_tiny_wan_splits_for_sequence_parallel(wan):
    cfg = tiny_wan_transformer_config()
    assert cfg["num_attention_heads"] >= 4 and cfg["num_attention_heads"] % 4 == 0
    assert cfg["attention_head_dim"] <= 16
    # The documented SP size: 9 frames at 32x64 -> latent (3, 4, 8) -> tokens 3 * 2 * 4 = 24.
    state = wan.prepare(dict(prompt="a cat", width=64, height=32, frames=9, steps=1))
    _, _, f, h, w = state.latents.shape
    p = cfg["patch_size"]
    tokens = (f // p[0]) * (h // p[1]) * (w // p[2])
    assert tokens == 24 and all(tokens % d == 0 for d in (2, 4, 8))


def test_tokenizers_are_in_memory_and_take_any_text(sd3, wan):
    for tok in (sd3.pipe.tokenizer, sd3.pipe.tokenizer_3, wan.pipe.tokenizer):
        ids = tok(["a cat, 3 dogs & ünïcode ✓"], padding="max_length", max_length=32, truncation=True).input_ids[0]
        assert len(ids) == 32
    a = sd3.encode("a cat")["prompt_embeds"]
    b = sd3.encode("a dog")["prompt_embeds"]
    assert not torch.equal(a, b)  # the text reaches the embeddings
