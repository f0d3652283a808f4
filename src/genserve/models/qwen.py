"""Qwen-Image (QwenImagePipeline components) driven one step at a time.

Mirrors QwenImagePipeline's loop: packed 2x2 latents, dynamic shift from the token count, timestep / 1000, the
text mask, and true CFG as two forward passes whose combination is rescaled to the norm of the conditional
prediction. CFG runs when guidance > 1, with the request's negative prompt or " " (the model card's default;
the pipeline itself only runs CFG when it is given a negative prompt).
"""

from __future__ import annotations

from typing import Any

import torch

from genserve.models.base import ImageAdapter, shifted_flow_timesteps
from genserve.models.state import State

DEFAULT_GUIDANCE = 4.0  # true_cfg_scale of the pipeline
DEFAULT_NEGATIVE = " "


class QwenImageAdapter(ImageAdapter):
    default_guidance = DEFAULT_GUIDANCE

    def __init__(self, pipe, name: str, **kw):
        super().__init__(pipe, name, **kw)
        self.patch = pipe.transformer.config.patch_size
        self.size_multiple = pipe.vae_scale_factor * self.patch
        self._seq_len = self.max_sequence_length or 512

    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str | None = None, guidance: float = DEFAULT_GUIDANCE) -> dict:
        out = {}
        texts = {"": prompt}
        if guidance > 1.0:
            texts["negative_"] = negative_prompt or DEFAULT_NEGATIVE
        for prefix, text in texts.items():
            p, mask = self.pipe.encode_prompt(prompt=text, device=self.device, max_sequence_length=self._seq_len)
            out[prefix + "prompt_embeds"] = p
            if mask is not None:  # the pipeline drops an all-ones mask
                out[prefix + "prompt_embeds_mask"] = mask
        return out

    @torch.no_grad()
    def prepare(self, req: Any) -> State:
        spec = self.validate(req)
        pipe = self.pipe
        g = self.guidance_of(spec)
        embeds = self.encode(spec.prompt, spec.negative_prompt, g)
        latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, spec.height, spec.width,
                                       embeds["prompt_embeds"].dtype, self.device, self.generator(spec.seed))
        scheduler = self.new_scheduler()
        shifted_flow_timesteps(scheduler, spec.steps, latents.shape[1], self.device)
        return State(kind="image", model=self.name, latents=latents, embeds=embeds, scheduler=scheduler, step=0,
                     num_steps=len(scheduler.timesteps), seed=spec.seed, width=spec.width, height=spec.height,
                     guidance_scale=g, request_id=spec.id)

    def _img_shapes(self, state: State, n: int = 1):
        f = self.pipe.vae_scale_factor * 2
        return [[(1, state.height // f, state.width // f)]] * n

    @torch.no_grad()
    def step(self, state: State) -> State:
        self._check_runnable(state)
        e = state.embeds
        t = state.scheduler.timesteps[state.step]
        latents = state.latents
        timestep = t.expand(latents.shape[0]).to(latents.dtype) / 1000
        shapes = self._img_shapes(state)

        def predict(prefix: str):
            name = "cond" if not prefix else "uncond"
            with self.pipe.transformer.cache_context(name):
                return self.pipe.transformer(
                    hidden_states=latents, timestep=timestep, guidance=None,
                    encoder_hidden_states_mask=e.get(prefix + "prompt_embeds_mask"),
                    encoder_hidden_states=e[prefix + "prompt_embeds"], img_shapes=shapes, attention_kwargs={},
                    return_dict=False)[0]

        noise = predict("")
        if state.do_cfg:
            neg = predict("negative_")
            comb = neg + state.guidance_scale * (noise - neg)
            noise = comb * (torch.norm(noise, dim=-1, keepdim=True) / torch.norm(comb, dim=-1, keepdim=True))
        state.latents = state.scheduler.step(noise, t, latents, return_dict=False)[0]
        state.step += 1
        return state

    @torch.no_grad()
    def decode(self, state: State) -> torch.Tensor:
        """The image as a float tensor (3, H, W) in [0, 1], as pipe(output_type="pt") returns it."""
        pipe, vae = self.pipe, self.pipe.vae
        latents = pipe._unpack_latents(state.latents, state.height, state.width, pipe.vae_scale_factor).to(vae.dtype)
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        image = vae.decode(latents / inv_std + mean, return_dict=False)[0][:, :, 0]
        return pipe.image_processor.postprocess(image, output_type="pt")[0]

    def step_batch(self, states: list[State]) -> list[State]:
        """Not batched: each request takes its own step (text masks differ in length per prompt)."""
        return [self.step(s) for s in states]

    def decode_batch(self, states: list[State]) -> list[torch.Tensor]:
        return [self.decode(s) for s in states]
