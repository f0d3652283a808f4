"""Wan 2.1 / 2.2 text-to-video (WanPipeline components) driven one step at a time.

step() mirrors WanPipeline's loop: cond and uncond as two forward passes (as Wan does), the two-expert switch of
Wan 2.2 A14B (transformer_2 below boundary_ratio) and per-token timesteps of Wan 2.2 TI2V (expand_timesteps).
The UniPC multistep history lives in the request's own scheduler, inside the State.
"""

from __future__ import annotations

from typing import Any

import torch

from genserve.core.errors import ValidationError
from genserve.models.base import Adapter, Spec
from genserve.models.state import State

DEFAULT_GUIDANCE = 5.0  # the pipeline's default


class WanAdapter(Adapter):
    kind = "video"
    default_guidance = DEFAULT_GUIDANCE
    default_guidance_2: float | None = None  # Wan 2.2 A14B: the low-noise expert's own default scale

    def __init__(self, pipe, name: str, **kw):
        super().__init__(pipe, name, **kw)
        model = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        self.patch = model.config.patch_size[1]
        self.size_multiple = pipe.vae_scale_factor_spatial * self.patch
        self.temporal = pipe.vae_scale_factor_temporal
        self._seq_len = self.max_sequence_length or 512
        self._model = model

    def _validate_frames(self, spec: Spec) -> None:
        k = self.temporal
        if spec.frames < 1 or (spec.frames - 1) % k:
            raise ValidationError(f"frames must be {k}k+1 (1, {k + 1}, {2 * k + 1}, ...) for the Wan VAE, "
                                  f"got {spec.frames}")

    @property
    def dtype(self) -> torch.dtype:
        return self._model.dtype

    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str | None = None, guidance: float = DEFAULT_GUIDANCE) -> dict:
        p, n = self.pipe.encode_prompt(prompt=prompt, negative_prompt=negative_prompt,
                                       do_classifier_free_guidance=guidance > 1.0,
                                       max_sequence_length=self._seq_len, device=self.device)
        out = {"prompt_embeds": p.to(self.dtype)}
        if n is not None:
            out["negative_prompt_embeds"] = n.to(self.dtype)
        return out

    @torch.no_grad()
    def prepare(self, req: Any) -> State:
        spec = self.validate(req)
        pipe = self.pipe
        g = self.guidance_of(spec)
        extra = {}
        if spec.guidance_scale is None and self.default_guidance_2 is not None:
            extra["guidance_scale_2"] = self.default_guidance_2
        embeds = self.encode(spec.prompt, spec.negative_prompt, g)
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(spec.steps, device=self.device)
        latents = pipe.prepare_latents(1, self._model.config.in_channels, spec.height, spec.width, spec.frames,
                                       torch.float32, self.device, self.generator(spec.seed))
        scheduler.set_begin_index(0)
        return State(kind="video", model=self.name, latents=latents, embeds=embeds, scheduler=scheduler, step=0,
                     num_steps=len(scheduler.timesteps), seed=spec.seed, width=spec.width, height=spec.height,
                     frames=spec.frames, guidance_scale=g, request_id=spec.id, extra=extra)

    @torch.no_grad()
    def step(self, state: State) -> State:
        self._check_runnable(state)
        pipe, i = self.pipe, state.step
        sched = state.scheduler
        t = sched.timesteps[i]
        model, g = pipe.transformer, state.guidance_scale
        ratio = pipe.config.boundary_ratio
        if ratio is not None and t < ratio * sched.config.num_train_timesteps:
            model, g = pipe.transformer_2, state.extra.get("guidance_scale_2", g)  # Wan 2.2 low-noise expert
        latents = state.latents
        model_in = latents.to(self.dtype)
        cond = state.embeds.get("condition")
        if cond is not None:  # image-to-video (TI2V): the first latent frame is the image's, at timestep 0
            mask = state.embeds["first_frame_mask"]
            model_in = ((1 - mask) * cond + mask * latents).to(self.dtype)
            timestep = (mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0).expand(latents.shape[0], -1)
        elif pipe.config.expand_timesteps:
            mask = torch.ones(latents.shape[2:], dtype=torch.float32, device=latents.device)
            timestep = (mask[:, ::2, ::2] * t).flatten().unsqueeze(0).expand(latents.shape[0], -1)
        else:
            timestep = t.expand(latents.shape[0])
        ctx = {"step_index": i, "sigma": float(sched.sigmas[i]), "num_inference_steps": len(sched.timesteps)}
        with model.cache_context("cond", **ctx):
            noise = model(hidden_states=model_in, timestep=timestep,
                          encoder_hidden_states=state.embeds["prompt_embeds"], return_dict=False)[0]
        if state.do_cfg:
            with model.cache_context("uncond", **ctx):
                uncond = model(hidden_states=model_in, timestep=timestep,
                               encoder_hidden_states=state.embeds["negative_prompt_embeds"], return_dict=False)[0]
            noise = uncond + g * (noise - uncond)
        state.latents = sched.step(noise, t, latents, return_dict=False)[0]
        state.step += 1
        return state

    @torch.no_grad()
    def decode(self, state: State) -> torch.Tensor:
        """The video as a float tensor (frames, 3, H, W) in [0, 1], as pipe(output_type="pt") returns it."""
        vae = self.pipe.vae
        latents = state.latents
        if "condition" in state.embeds:
            mask = state.embeds["first_frame_mask"]
            latents = (1 - mask) * state.embeds["condition"] + mask * latents
        latents = latents.to(vae.device, dtype=vae.dtype)
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
        return self.pipe.video_processor.postprocess_video(video, output_type="pt")[0]


class WanI2VAdapter(WanAdapter):
    """Wan 2.2 TI2V image-to-video (WanImageToVideoPipeline with expand_timesteps, no image encoder): the
    request's `image` is VAE-encoded into the first latent frame, which every step keeps and runs at timestep 0."""

    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str | None = None, guidance: float = DEFAULT_GUIDANCE) -> dict:
        # WanPipeline's text encoding (the same code): diffusers 0.42's I2V copy calls ftfy without checking that
        # it is installed (NameError without the optional ftfy package).
        from diffusers import WanPipeline

        def t5(text: str):
            return WanPipeline._get_t5_prompt_embeds(self.pipe, prompt=text, max_sequence_length=self._seq_len,
                                                     device=self.device).to(self.dtype)

        out = {"prompt_embeds": t5(prompt)}
        if guidance > 1.0:
            out["negative_prompt_embeds"] = t5(negative_prompt or "")
        return out

    def _validate_frames(self, spec: Spec) -> None:
        super()._validate_frames(spec)
        if spec.image is None:
            raise ValidationError(f"{self.name} is image-to-video: the request needs an image")
        if not self.pipe.config.expand_timesteps or getattr(self.pipe, "image_encoder", None) is not None:
            raise ValidationError(f"{self.name}: only expand_timesteps image-to-video (Wan 2.2 TI2V) is supported")

    @torch.no_grad()
    def prepare(self, req: Any) -> State:
        spec = self.validate(req)
        pipe = self.pipe
        g = self.guidance_of(spec)
        embeds = self.encode(spec.prompt, spec.negative_prompt, g)
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(spec.steps, device=self.device)
        image = pipe.video_processor.preprocess(spec.image, height=spec.height, width=spec.width)
        latents, cond, mask = pipe.prepare_latents(image.to(self.device, dtype=torch.float32), 1,
                                                   pipe.vae.config.z_dim, spec.height, spec.width, spec.frames,
                                                   torch.float32, self.device, self.generator(spec.seed))
        embeds |= {"condition": cond, "first_frame_mask": mask}
        scheduler.set_begin_index(0)
        return State(kind="video", model=self.name, latents=latents, embeds=embeds, scheduler=scheduler, step=0,
                     num_steps=len(scheduler.timesteps), seed=spec.seed, width=spec.width, height=spec.height,
                     frames=spec.frames, guidance_scale=g, request_id=spec.id)
