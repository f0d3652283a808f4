"""Embedded tiny models: real SD3 / Wan pipelines from small configs, random weights, in-memory tokenizers.

Weights are drawn under a fixed seed (the global RNG is restored afterwards), so every build of the same
model is identical, in every process. Nothing touches the network or the disk.
"""

from __future__ import annotations

import string
from contextlib import contextmanager

import torch

TINY_SD3 = "tiny-sd3"
TINY_WAN = "tiny-wan"
TINY_NAMES = (TINY_SD3, TINY_WAN)

# Text lengths the tiny pipelines are built for (pass them as max_sequence_length to pipe() too).
TINY_TEXT_LEN = 32


@contextmanager
def _seeded(seed: int):
    """Run a block under torch.manual_seed(seed) and give the caller its global RNG back afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def _bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (as in GPT-2/CLIP)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_tokenizer(max_length: int = TINY_TEXT_LEN):
    """A CLIP BPE tokenizer over single bytes (no merges): any text tokenizes, one token per byte."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _bytes_to_unicode():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def t5_tokenizer(max_length: int = TINY_TEXT_LEN):
    """A T5 (Unigram) tokenizer over printable ASCII characters; other characters map to <unk>."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.printable.strip()]
    pieces += [("▁" + c, -2.5) for c in string.ascii_lowercase + string.digits]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def qwen_tokenizer(max_length: int = 1024 + 34):
    """A Qwen2 byte-level BPE tokenizer without merges (one token per byte) plus the chat-template specials."""
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode())}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", model_max_length=max_length)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tok


def tiny_sd3_components() -> dict:
    """SD3 pipeline components: MMDiT, KL VAE (x2 downsampling), flow-match Euler, CLIP x2 + T5."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    tok = clip_tokenizer()
    t5_tok = t5_tokenizer()
    with _seeded(0):
        transformer = SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
            num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
            pos_embed_max_size=32,
        )
        clip_cfg = CLIPTextConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=TINY_TEXT_LEN, projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
            hidden_act="gelu",
        )
        text_encoder = CLIPTextModelWithProjection(clip_cfg)
        text_encoder_2 = CLIPTextModelWithProjection(clip_cfg)
        text_encoder_3 = T5EncoderModel(T5Config(
            vocab_size=len(t5_tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        ))
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
            norm_num_groups=4, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            shift_factor=0.0609, scaling_factor=1.5035,
        )
    for m in (transformer, text_encoder, text_encoder_2, text_encoder_3, vae):
        m.eval()
    return dict(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=text_encoder, tokenizer=tok, text_encoder_2=text_encoder_2, tokenizer_2=clip_tokenizer(),
        text_encoder_3=text_encoder_3, tokenizer_3=t5_tok,
    )


def build_tiny_sd3():
    """A real StableDiffusion3Pipeline with tiny random weights (about 0.3 s on CPU)."""
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(**tiny_sd3_components())


def tiny_wan_transformer_config() -> dict:
    """WanTransformer3DModel config of tiny-wan.

    8 heads of dim 12 (rope splits 12 into t/h/w = 4/4/4), so Ulysses works at SP degree 2, 4 and 8.
    Token count = latent_frames * (H/16) * (W/16): 9 frames at 32x64 give 3*2*4 = 24 tokens, divisible by 2, 4, 8.
    """
    return dict(
        patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def build_tiny_wan_transformer():
    """Only the tiny-wan DiT (same weights as inside build_tiny_wan())."""
    from diffusers import WanTransformer3DModel

    with _seeded(1):
        return WanTransformer3DModel(**tiny_wan_transformer_config()).eval()


def wan_scheduler(flow_shift: float = 3.0):
    """UniPC multistep with flow sigmas: the scheduler Wan 2.1/2.2 ship (scheduler_config.json)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift, solver_order=2,
        solver_type="bh2", lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace",
        num_train_timesteps=1000,
    )


def build_tiny_wan():
    """A real WanPipeline: tiny Wan DiT, Wan causal 3D VAE (x8 space, x4 time), UMT5, UniPC."""
    from diffusers import AutoencoderKLWan, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    tok = t5_tokenizer()
    transformer = build_tiny_wan_transformer()
    with _seeded(2):
        vae = AutoencoderKLWan(
            base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        ).eval()
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        )).eval()
    return WanPipeline(tokenizer=tok, text_encoder=text_encoder, vae=vae, scheduler=wan_scheduler(),
                       transformer=transformer)
