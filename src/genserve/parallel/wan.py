"""Sequence-parallel forward for the diffusers Wan video transformer (`WanTransformer3DModel`, diffusers 0.42).

`sp_forward(transformer, hidden_states, timestep, encoder_hidden_states, group)` is called by every rank of the
group with the same full inputs. Each rank keeps one contiguous shard of the patch tokens (padded to a multiple of
the degree), runs every block on its shard and gathers the output tokens at the end, so every rank returns the
same full noise prediction. Only self-attention talks to the other ranks (Ulysses or ring, see attention.py);
RoPE uses each token's global position (the shard of the full rotary table); cross-attention to the text, the
norms, modulation and the FFN are token-wise and run on the local shard. A degree change between two steps is
just a call with another group: nothing is bound to a group.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn.functional as F

from genserve.parallel.attention import choose_mode, sp_attention
from genserve.parallel.groups import SPGroup

__all__ = ["SPWanAttnProcessor", "install_sp_processors", "sp_forward", "sp_group"]


class _SPContext:
    """What the SP processors of one transformer need during an `sp_forward` call (None group outside it).

    One forward at a time per transformer (a worker runs its steps sequentially). Copies and pickles of a model
    get a fresh, inactive context (process groups cannot be pickled)."""

    def __init__(self) -> None:
        self.group: SPGroup | None = None
        self.valid_len = 0
        self.mode = "auto"

    def __reduce__(self):
        return (_SPContext, ())


class SPWanAttnProcessor:
    """Self-attention processor: the Wan processor's projections, QK-norm and RoPE on the local shard, then
    sequence-parallel attention. Outside `sp_forward` (no active group) it defers to the original processor, so a
    plain `transformer(...)` call is unchanged, bit for bit."""

    def __init__(self, original, ctx: _SPContext) -> None:
        self.original = original
        self.ctx = ctx

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        group = self.ctx.group
        if group is None or group.size == 1 or encoder_hidden_states is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if attention_mask is not None:
            raise NotImplementedError("attention masks are not supported under sequence parallelism")
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)
        out = sp_attention(query, key, value, group, self.ctx.valid_len, self.ctx.mode)
        out = out.flatten(2, 3).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _apply_rotary_emb(hidden_states, freqs_cos, freqs_sin):
    # Same arithmetic as diffusers' WanAttnProcessor (kept identical so SP 1 and SP p round the same way).
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


def install_sp_processors(transformer) -> _SPContext:
    """Wrap every self-attention processor of the transformer once (idempotent); returns the shared context."""
    ctx = getattr(transformer, "_genserve_sp_ctx", None)
    if ctx is not None:
        return ctx
    ctx = _SPContext()
    for block in transformer.blocks:
        block.attn1.set_processor(SPWanAttnProcessor(block.attn1.processor, ctx))
    transformer._genserve_sp_ctx = ctx
    return ctx


def _shard(x: torch.Tensor, dim: int, s: int, s_pad: int, lo: int, hi: int, pad_value: float = 0.0):
    """Rows [lo, hi) along `dim` of x padded from s to s_pad."""
    if s_pad > s:
        pad = [0, 0] * (x.ndim - dim - 1) + [0, s_pad - s]
        x = F.pad(x, pad, value=pad_value)
    return x.narrow(dim, lo, hi - lo)


@torch.no_grad()
def sp_forward(
    transformer,
    hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    group: SPGroup | None,
    *,
    mode: str = "auto",
) -> torch.Tensor:
    """One noise prediction of `transformer` (a diffusers WanTransformer3DModel) over an SP group.

    Call it on every rank of `group` with identical inputs (latents [B, C, F, H, W], timestep [B] or [B, S],
    prompt embeddings [B, L, text_dim]). Returns the full prediction, [B, C_out, F, H, W], identical on every
    rank. `group` None or of size 1 runs the unmodified forward. `mode`: 'auto' (Ulysses when the head count
    divides by the degree, ring otherwise), 'ulysses' or 'ring'. Text-to-video only (no image conditioning).
    """
    if group is None or group.size == 1:
        return transformer(hidden_states, timestep, encoder_hidden_states, return_dict=False)[0]
    if group.pg is None:
        raise RuntimeError(f"rank {group.rank} is not a member of SP group {group.ranks}")
    ctx = install_sp_processors(transformer)
    choose_mode(transformer.config.num_attention_heads, group.size, mode)  # validate early, on every rank
    p, me = group.size, group.local_rank

    b, _, num_frames, height, width = hidden_states.shape
    p_t, p_h, p_w = transformer.config.patch_size
    ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
    s = ppf * pph * ppw
    s_loc = -(-s // p)
    s_pad = s_loc * p
    lo, hi = me * s_loc, (me + 1) * s_loc

    freqs_cos, freqs_sin = transformer.rope(hidden_states)  # [1, S, 1, D], global positions
    rotary_emb = (
        _shard(freqs_cos, 1, s, s_pad, lo, hi, 1.0),
        _shard(freqs_sin, 1, s, s_pad, lo, hi, 0.0),
    )
    x = transformer.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
    x = _shard(x, 1, s, s_pad, lo, hi).contiguous()

    if timestep.ndim == 2:
        ts_seq_len = timestep.shape[1]
        timestep = timestep.flatten()
    else:
        ts_seq_len = None
    temb, timestep_proj, enc, enc_img = transformer.condition_embedder(
        timestep, encoder_hidden_states, None, timestep_seq_len=ts_seq_len
    )
    if ts_seq_len is not None:
        timestep_proj = _shard(timestep_proj.unflatten(2, (6, -1)), 1, s, s_pad, lo, hi)
        temb = _shard(temb, 1, s, s_pad, lo, hi)
    else:
        timestep_proj = timestep_proj.unflatten(1, (6, -1))

    ctx.group, ctx.valid_len, ctx.mode = group, s, mode
    try:
        for block in transformer.blocks:
            x = block(x, enc, timestep_proj, rotary_emb)
    finally:
        ctx.group = None

    if temb.ndim == 3:
        shift, scale = (transformer.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
        shift, scale = shift.squeeze(2), scale.squeeze(2)
    else:
        shift, scale = (transformer.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    x = (transformer.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
    x = transformer.proj_out(x).contiguous()

    parts = [torch.empty_like(x) for _ in range(p)]
    dist.all_gather(parts, x, group=group.pg)
    x = torch.cat(parts, dim=1)[:, :s]

    x = x.reshape(b, ppf, pph, ppw, p_t, p_h, p_w, -1)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


@contextmanager
def sp_group(models, group: SPGroup | None, *, mode: str = "auto"):
    """Within the block, calling the transformer(s) runs `sp_forward` over `group`.

    For code that calls `transformer(hidden_states=..., timestep=..., encoder_hidden_states=..., return_dict=False)`
    itself, such as genserve's WanAdapter.step: wrap the call instead of rewriting it,

        with sp_group([pipe.transformer, pipe.transformer_2], registry.group(gpus)):
            adapter.step(state)

    `models` is one transformer or an iterable (None entries are skipped). A group of size 1 (or None) leaves the
    models untouched. The instance attribute `forward` is set for the block and removed afterwards.
    """
    if isinstance(models, torch.nn.Module):
        models = [models]
    models = [m for m in models if m is not None]
    if group is None or group.size == 1:
        yield
        return
    patched = []
    try:
        for m in models:
            if "forward" in m.__dict__:
                raise RuntimeError("sp_group: the transformer already has an instance-level forward (nested use?)")
            m.forward = _make_forward(m, group, mode)
            patched.append(m)
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


def _make_forward(model, group: SPGroup, mode: str):
    def forward(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image=None, return_dict=True,
                attention_kwargs=None):
        if encoder_hidden_states_image is not None:
            raise NotImplementedError("sequence parallelism covers text-to-video (no image conditioning)")
        out = sp_forward(model, hidden_states, timestep, encoder_hidden_states, group, mode=mode)
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)

    return forward
