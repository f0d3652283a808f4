"""FLUX.1 (FluxPipeline components) driven one step at a time.

Mirrors FluxPipeline's loop: latents packed 2x2 into tokens with their image ids, the resolution-dependent shift
`mu` of the flow-match schedule (dynamic shifting, FLUX.1-dev) computed from the token count, the distilled
guidance passed as an embedding (guidance_embeds; FLUX.1-schnell has none) and timestep / 1000. True CFG
(negative prompt with true_cfg_scale) is not mirrored: FLUX.1 is guidance-distilled and the pipeline's default
runs without it.
"""

from __future__ import annotations

from typing import Any

import torch

from genserve.core.errors import ValidationError
from genserve.models.base import ImageAdapter, shifted_flow_timesteps
from genserve.models.state import State

DEFAULT_GUIDANCE = 3.5  # the pipeline's default (embedded guidance)


class FluxAdapter(ImageAdapter):
    default_guidance = DEFAULT_GUIDANCE

    def __init__(self, pipe, name: str, **kw):
        super().__init__(pipe, name, **kw)
        self.patch = 2  # 2x2 latent patches per token (the transformer's own patch_size is 1)
        self.size_multiple = pipe.vae_scale_factor * self.patch
        self._seq_len = self.max_sequence_length or 512

    @torch.no_grad()
    def encode(self, prompt: str) -> dict:
        p, pooled, text_ids = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, device=self.device,
                                                      max_sequence_length=self._seq_len)
        return {"prompt_embeds": p, "pooled_prompt_embeds": pooled, "text_ids": text_ids}

    @torch.no_grad()
    def prepare(self, req: Any) -> State:
        spec = self.validate(req)
        pipe = self.pipe
        g = self.guidance_of(spec)
        embeds = self.encode(spec.prompt)
        latents, image_ids = pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, spec.height,
                                                  spec.width, embeds["prompt_embeds"].dtype, self.device,
                                                  self.generator(spec.seed))
        embeds["image_ids"] = image_ids
        scheduler = self.new_scheduler()
        shifted_flow_timesteps(scheduler, spec.steps, latents.shape[1], self.device)
        # guidance_scale here is FLUX's embedded guidance, not classifier-free guidance: keep do_cfg False.
        return State(kind="image", model=self.name, latents=latents, embeds=embeds, scheduler=scheduler, step=0,
                     num_steps=len(scheduler.timesteps), seed=spec.seed, width=spec.width, height=spec.height,
                     guidance_scale=1.0, request_id=spec.id, extra={"guidance": g})

    def _guidance(self, states: list[State], dtype=torch.float32):
        if not self.pipe.transformer.config.guidance_embeds:
            return None
        return torch.tensor([s.extra["guidance"] for s in states], dtype=dtype, device=self.device)

    @torch.no_grad()
    def step(self, state: State) -> State:
        return self.step_batch([state])[0]

    @torch.no_grad()
    def step_batch(self, states: list[State]) -> list[State]:
        """One forward pass for several same-size requests, each at its own step and guidance."""
        shapes = {tuple(s.latents.shape) for s in states}
        if len(shapes) != 1:
            raise ValidationError(f"only same-resolution requests batch, got latent shapes {sorted(shapes)}")
        for s in states:
            self._check_runnable(s)
        lens = {s.embeds["prompt_embeds"].shape[1] for s in states}
        if len(lens) != 1:
            raise ValidationError(f"requests with different text lengths do not batch: {sorted(lens)}")
        ts = torch.stack([s.scheduler.timesteps[s.step] for s in states])
        lat = torch.cat([s.latents for s in states])
        e0 = states[0].embeds
        noise = self.pipe.transformer(
            hidden_states=lat, timestep=ts.to(lat.dtype) / 1000, guidance=self._guidance(states),
            pooled_projections=torch.cat([s.embeds["pooled_prompt_embeds"] for s in states]),
            encoder_hidden_states=torch.cat([s.embeds["prompt_embeds"] for s in states]),
            txt_ids=e0["text_ids"], img_ids=e0["image_ids"], joint_attention_kwargs={}, return_dict=False)[0]
        for i, s in enumerate(states):
            s.latents = s.scheduler.step(noise[i: i + 1], ts[i], s.latents, return_dict=False)[0]
            s.step += 1
        return states

    @torch.no_grad()
    def decode(self, state: State) -> torch.Tensor:
        """The image as a float tensor (3, H, W) in [0, 1], as pipe(output_type="pt") returns it."""
        pipe, vae = self.pipe, self.pipe.vae
        latents = pipe._unpack_latents(state.latents, state.height, state.width, pipe.vae_scale_factor)
        latents = (latents / vae.config.scaling_factor) + vae.config.shift_factor
        image = vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pt")[0]

    def decode_batch(self, states: list[State]) -> list[torch.Tensor]:
        return [self.decode(s) for s in states]
