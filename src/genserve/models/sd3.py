"""Stable Diffusion 3 / 3.5 (StableDiffusion3Pipeline components) driven one step at a time.

step() mirrors the pipeline's loop line for line (CFG as one batch [uncond, cond], the scheduler's own step), so
prepare + step* + decode reproduces pipe(...) exactly. step_batch() runs several same-resolution requests in one
forward pass, each with its own timestep, prompt and guidance scale.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift, retrieve_timesteps

from genserve.core.errors import ValidationError
from genserve.models.base import ImageAdapter
from genserve.models.state import State

DEFAULT_GUIDANCE = 7.0  # the pipeline's default


class SD3Adapter(ImageAdapter):
    default_guidance = DEFAULT_GUIDANCE

    def __init__(self, pipe, name: str, **kw):
        super().__init__(pipe, name, **kw)
        self.patch = pipe.transformer.config.patch_size
        self.size_multiple = pipe.vae_scale_factor * self.patch
        self.max_side = (pipe.transformer.config.pos_embed_max_size or 0) * self.size_multiple  # 0: no limit
        self._seq_len = self.max_sequence_length or 256

    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str | None = None, guidance: float = DEFAULT_GUIDANCE) -> dict:
        p, n, pp, np_ = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, negative_prompt=negative_prompt,
            do_classifier_free_guidance=guidance > 1.0, device=self.device, max_sequence_length=self._seq_len,
        )
        out = {"prompt_embeds": p, "pooled_prompt_embeds": pp}
        if guidance > 1.0:
            out |= {"negative_prompt_embeds": n, "negative_pooled_prompt_embeds": np_}
        return out

    @torch.no_grad()
    def prepare(self, req: Any) -> State:
        spec = self.validate(req)
        pipe = self.pipe
        g = self.guidance_of(spec)
        embeds = self.encode(spec.prompt, spec.negative_prompt, g)
        dtype = embeds["prompt_embeds"].dtype  # the pipeline draws latents in the embeddings' dtype
        latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels, spec.height, spec.width, dtype,
                                       self.device, self.generator(spec.seed))
        scheduler = self.new_scheduler()
        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            seq = (latents.shape[2] // self.patch) * (latents.shape[3] // self.patch)
            cfg = scheduler.config
            kwargs["mu"] = calculate_shift(seq, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                                           cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.16))
        retrieve_timesteps(scheduler, spec.steps, self.device, **kwargs)
        return State(kind="image", model=self.name, latents=latents, embeds=embeds, scheduler=scheduler, step=0,
                     num_steps=len(scheduler.timesteps), seed=spec.seed, width=spec.width, height=spec.height,
                     guidance_scale=g, request_id=spec.id)

    @torch.no_grad()
    def step(self, state: State) -> State:
        """Run denoising step `state.step` and advance (the pipeline's loop body, verbatim in effect)."""
        self._check_runnable(state)
        e = state.embeds
        t = state.scheduler.timesteps[state.step]
        latents = state.latents
        if state.do_cfg:
            model_in = torch.cat([latents] * 2)
            text = torch.cat([e["negative_prompt_embeds"], e["prompt_embeds"]])
            pooled = torch.cat([e["negative_pooled_prompt_embeds"], e["pooled_prompt_embeds"]])
        else:
            model_in, text, pooled = latents, e["prompt_embeds"], e["pooled_prompt_embeds"]
        noise = self.pipe.transformer(hidden_states=model_in, timestep=t.expand(model_in.shape[0]),
                                      encoder_hidden_states=text, pooled_projections=pooled, return_dict=False)[0]
        if state.do_cfg:
            uncond, cond = noise.chunk(2)
            noise = uncond + state.guidance_scale * (cond - uncond)
        state.latents = state.scheduler.step(noise, t, latents, return_dict=False)[0]
        state.step += 1
        return state

    @torch.no_grad()
    def step_batch(self, states: list[State]) -> list[State]:
        """One forward pass for several same-size requests, each at its own step, with its own guidance."""
        if len(states) == 1:
            return [self.step(states[0])]
        shapes = {tuple(s.latents.shape) for s in states}
        if len(shapes) != 1:
            raise ValidationError(f"only same-resolution requests batch, got latent shapes {sorted(shapes)}")
        if any(s.done for s in states):
            raise ValidationError("a finished request cannot take another step")
        ts = torch.stack([s.scheduler.timesteps[s.step] for s in states])
        cfg = [i for i, s in enumerate(states) if s.do_cfg]
        # Rows: the uncond half of the CFG requests first, then every request's cond row.
        lat = torch.cat([s.latents for s in states])
        model_in = torch.cat([lat[cfg], lat])
        text = torch.cat([states[i].embeds["negative_prompt_embeds"] for i in cfg] +
                         [s.embeds["prompt_embeds"] for s in states])
        pooled = torch.cat([states[i].embeds["negative_pooled_prompt_embeds"] for i in cfg] +
                           [s.embeds["pooled_prompt_embeds"] for s in states])
        noise = self.pipe.transformer(hidden_states=model_in, timestep=torch.cat([ts[cfg], ts]),
                                      encoder_hidden_states=text, pooled_projections=pooled, return_dict=False)[0]
        uncond, cond = noise[: len(cfg)], noise[len(cfg):].clone()
        if cfg:
            g = torch.tensor([states[i].guidance_scale for i in cfg], dtype=noise.dtype, device=noise.device)
            g = g.view(-1, *([1] * (noise.dim() - 1)))
            cond[cfg] = uncond + g * (cond[cfg] - uncond)
        for i, s in enumerate(states):
            s.latents = s.scheduler.step(cond[i: i + 1], ts[i], s.latents, return_dict=False)[0]
            s.step += 1
        return states

    @torch.no_grad()
    def decode(self, state: State) -> torch.Tensor:
        """The image as a float tensor (3, H, W) in [0, 1], as pipe(output_type="pt") returns it."""
        vae = self.pipe.vae
        latents = (state.latents / vae.config.scaling_factor) + vae.config.shift_factor
        image = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pt")[0]

    def decode_batch(self, states: list[State]) -> list[torch.Tensor]:
        return [self.decode(s) for s in states]
