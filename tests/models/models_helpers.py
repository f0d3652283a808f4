"""Shared request builders for tests/models (a unique module name: other test folders have their own helpers)."""

def image_req(**kw):
    base = dict(prompt="a red cat on a mat", width=32, height=32, steps=5, seed=3, guidance_scale=4.5,
                negative_prompt="blurry")
    return base | kw


def video_req(**kw):
    base = dict(prompt="a dog runs on the beach", width=32, height=32, frames=5, steps=5, seed=7, guidance_scale=5.0)
    return base | kw


def run_latents(adapter, req, pause_at=()):
    """Denoise to the end (no decode), optionally round-tripping through bytes before the given steps."""
    from genserve.models import State

    state = adapter.prepare(req)
    while not state.done:
        if state.step in pause_at:
            state = State.from_bytes(state.to_bytes(), adapter.device)
        adapter.step(state)
    return state
