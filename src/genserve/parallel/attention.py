"""Sequence-parallel attention: Ulysses (all-to-all over heads) and ring attention (K/V blocks passed around).

Both take this rank's shard of the (padded) token sequence, `q, k, v` of shape [B, S_local, H, D], and return
this rank's shard of the attention output, [B, S_local, H, D], as if attention had run over the whole sequence.
`valid_len` is the true (unpadded) global sequence length: keys at global positions >= valid_len are masked out.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from genserve.parallel.groups import SPGroup

__all__ = ["ulysses_attention", "ring_attention", "sp_attention", "choose_mode"]


def choose_mode(heads: int, degree: int, mode: str = "auto") -> str:
    """'ulysses' when the head count divides by the degree (or is forced), 'ring' otherwise."""
    if mode not in ("auto", "ulysses", "ring"):
        raise ValueError(f"unknown SP attention mode {mode!r}")
    if mode == "ulysses" and heads % degree:
        raise ValueError(f"Ulysses needs heads ({heads}) divisible by the SP degree ({degree})")
    if mode == "auto":
        return "ulysses" if heads % degree == 0 else "ring"
    return mode


def _key_mask(total: int, valid_len: int, device) -> torch.Tensor | None:
    if valid_len >= total:
        return None
    return (torch.arange(total, device=device) < valid_len).view(1, 1, 1, total)


def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: SPGroup, valid_len: int) -> torch.Tensor:
    """All-to-all: sequence shards x all heads -> full sequence x H/p heads; SDPA; all-to-all back.

    Q, K and V travel in one all-to-all (one collective instead of three)."""
    p = group.size
    b, s_loc, h, d = q.shape
    hp = h // p
    # [3, B, S_loc, p, H/p, D] -> [p (dest: head chunk), 3, S_loc, B, H/p, D]
    x = torch.stack([q, k, v]).reshape(3, b, s_loc, p, hp, d).permute(3, 0, 2, 1, 4, 5).contiguous()
    y = torch.empty_like(x)
    dist.all_to_all_single(y, x, group=group.pg)
    # y[src] = src's sequence chunk of our heads -> [3, B, H/p, S, D]
    y = y.permute(1, 3, 4, 0, 2, 5).reshape(3, b, hp, p * s_loc, d)
    mask = _key_mask(p * s_loc, valid_len, q.device)
    o = F.scaled_dot_product_attention(y[0], y[1], y[2], attn_mask=mask)  # [B, H/p, S, D]
    # [B, H/p, p (dest: seq chunk), S_loc, D] -> [p, S_loc, B, H/p, D]
    o = o.reshape(b, hp, p, s_loc, d).permute(2, 3, 0, 1, 4).contiguous()
    out = torch.empty_like(o)
    dist.all_to_all_single(out, o, group=group.pg)
    # out[src] = our sequence chunk of src's heads -> [B, S_loc, p, H/p, D] -> [B, S_loc, H, D]
    return out.permute(2, 1, 0, 3, 4).reshape(b, s_loc, h, d)


def _block_attention(q, k, v, scale, key_valid):
    """Exact attention of q against one K/V block; returns (out [B,H,Sq,D], lse [B,H,Sq,1]), fp32."""
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if key_valid is not None:
        s = s.masked_fill(~key_valid.view(1, 1, 1, -1), float("-inf"))
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    finite = torch.isfinite(lse)
    w = torch.exp(s - torch.where(finite, lse, torch.zeros_like(lse)))
    w = torch.where(finite, w, torch.zeros_like(w))
    return torch.matmul(w, v), lse


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: SPGroup, valid_len: int) -> torch.Tensor:
    """Ring attention: K/V blocks travel around the group (isend to next, irecv from previous), overlapped with the
    block computation; partial results merge with the online-softmax (log-sum-exp) rule. Computed in fp32."""
    p = group.size
    me = group.local_rank
    b, s_loc, h, d = q.shape
    dtype = q.dtype
    scale = 1.0 / math.sqrt(d)
    qf = q.permute(0, 2, 1, 3).float()
    kv = torch.stack([k, v]).permute(0, 1, 3, 2, 4).float().contiguous()  # [2, B, H, S_loc, D]
    nxt = group.ranks[(me + 1) % p]
    prv = group.ranks[(me - 1) % p]
    out = torch.zeros(b, h, s_loc, d, dtype=torch.float32, device=q.device)
    lse = torch.full((b, h, s_loc, 1), float("-inf"), dtype=torch.float32, device=q.device)
    pos = torch.arange(s_loc, device=q.device)
    for step in range(p):
        reqs = []
        if step < p - 1:
            recv_buf = torch.empty_like(kv)
            reqs = dist.batch_isend_irecv(
                [
                    dist.P2POp(dist.isend, kv, nxt, group=group.pg),
                    dist.P2POp(dist.irecv, recv_buf, prv, group=group.pg),
                ]
            )
        src = (me - step) % p  # whose block we hold now
        key_valid = None
        if (src + 1) * s_loc > valid_len:
            key_valid = (src * s_loc + pos) < valid_len
        o_blk, lse_blk = _block_attention(qf, kv[0], kv[1], scale, key_valid)
        new_lse = torch.logaddexp(lse, lse_blk)
        safe = torch.where(torch.isfinite(new_lse), new_lse, torch.zeros_like(new_lse))
        out = out * torch.exp(lse - safe) + o_blk * torch.exp(lse_blk - safe)
        lse = new_lse
        for r in reqs:
            r.wait()
        if step < p - 1:
            kv = recv_buf
    return out.permute(0, 2, 1, 3).to(dtype)


def sp_attention(q, k, v, group: SPGroup, valid_len: int, mode: str = "auto") -> torch.Tensor:
    """Dispatch to Ulysses or ring attention for this group."""
    m = choose_mode(q.shape[2], group.size, mode)
    if m == "ulysses":
        return ulysses_attention(q, k, v, group, valid_len)
    return ring_attention(q, k, v, group, valid_len)
