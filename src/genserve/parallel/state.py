"""Moving a video's state (latents, prompt embeddings, scheduler copy, step index: any picklable object) between
ranks when its SP group changes, and packing it to bytes when it is paused.

A running video keeps a full, identical copy of its state on every rank of its group (every rank gets the same
gathered noise prediction and steps the same scheduler). When the group changes, the ranks that join need the
state: `move_state` sends it from the current holder (the old leader, or the rank where it was paused) to every
rank of the new group. Every rank named in the call (`src` and all of `dst`) must call it, at the same step
boundary; the state travels as one byte buffer (length first, then payload).
"""

from __future__ import annotations

import io
import pickle
from typing import Any, Callable

import torch
import torch.distributed as dist

from genserve.parallel.groups import GroupRegistry

__all__ = ["pack_state", "unpack_state", "move_bytes", "move_state"]


def pack_state(obj: Any) -> bytes:
    """Serialize a state object (tensors, a diffusers scheduler, ints...) to bytes; tensors are stored exactly."""
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return buf.getvalue()


def unpack_state(data: bytes | bytearray | memoryview, map_location=None) -> Any:
    """Inverse of `pack_state` (only for data this cluster wrote itself: it unpickles full objects)."""
    return torch.load(io.BytesIO(bytes(data)), map_location=map_location, weights_only=False)


def _to_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def move_bytes(data: bytes | None, src: int, dst, registry: GroupRegistry, *,
               device: torch.device | str = "cpu") -> bytes:
    """Give the bytes held on global rank `src` to every rank of the group `dst` (a GPU tuple of the registry).

    Call on `src` (with `data`) and on every rank of `dst` (with None). Returns the bytes on every caller. If
    `src` is in `dst` it is one broadcast inside the pre-created group; otherwise `src` sends to the new leader
    point to point (default world group) and the leader broadcasts. Length first, then the payload. `device` is
    where the buffers live: "cpu" for gloo, the rank's cuda device for nccl.
    """
    group = registry.group(dst)
    me = registry.rank
    if me != src and me not in group.ranks:
        raise RuntimeError(f"rank {me} takes no part in moving state from {src} to {group.ranks}")
    if me == src and data is None:
        raise ValueError("the source rank must pass the data")
    device = torch.device(device)
    payload = bytes(data) if me == src else None

    holder = src
    if src not in group.ranks:
        leader = group.leader
        if me == src:
            t = _to_tensor(payload).to(device)
            dist.send(torch.tensor([t.numel()], dtype=torch.int64, device=device), dst=leader)
            dist.send(t, dst=leader)
            return payload
        if me == leader:
            n = torch.empty(1, dtype=torch.int64, device=device)
            dist.recv(n, src=src)
            t = torch.empty(int(n.item()), dtype=torch.uint8, device=device)
            dist.recv(t, src=src)
            payload = t.cpu().numpy().tobytes()
        holder = leader

    if group.size > 1:
        if me == holder:
            t = _to_tensor(payload).to(device)
            n = torch.tensor([t.numel()], dtype=torch.int64, device=device)
        else:
            n = torch.empty(1, dtype=torch.int64, device=device)
        dist.broadcast(n, src=holder, group=group.pg)
        if me != holder:
            t = torch.empty(int(n.item()), dtype=torch.uint8, device=device)
        dist.broadcast(t, src=holder, group=group.pg)
        if me != holder:
            payload = t.cpu().numpy().tobytes()
    return payload


def move_state(
    obj: Any,
    src: int,
    dst,
    registry: GroupRegistry,
    *,
    device: torch.device | str = "cpu",
    encode: Callable[[Any], bytes] = pack_state,
    decode: Callable[[bytes], Any] = unpack_state,
) -> Any:
    """Give the state object held on global rank `src` to every rank of the group `dst` (see `move_bytes`).

    Call on `src` (with `obj`) and on every rank of `dst` (with None). Returns the state on every rank of `dst`;
    `src` keeps (and gets back) its own object. `encode` / `decode` default to pack_state / unpack_state; for
    genserve's model State use `encode=State.to_bytes, decode=lambda b: State.from_bytes(b, device)`.
    """
    me = registry.rank
    data = move_bytes(encode(obj) if me == src else None, src, dst, registry, device=device)
    if me == src:
        return obj
    return decode(data)
