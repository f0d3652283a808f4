"""Bundled model configurations (families/*.json): public hub configs, built with random weights, offline.

Each JSON file names a hub repository and gives the config of every component (transformer, VAE, scheduler, text
encoders) with the URLs it was copied from. `build_pipeline(name, blocks=K)` builds the real diffusers pipeline
at reduced depth (K transformer blocks, K text-encoder layers) with random weights drawn under a fixed seed;
`weight_bytes(name)` counts the full model's parameters on the meta device (nothing is allocated).

Tokenizers are not bundled (no hub access): the pipelines get the in-memory tokenizers of tiny.py, and the text
encoders' vocabulary size and special-token ids follow those tokenizers. Everything else is the public config.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from genserve.core.errors import ValidationError

DATA = Path(__file__).with_name("families")
SP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Entry:
    name: str
    hub_id: str
    family: str  # sd3 | flux | qwen-image | wan
    modality: str  # image | video (text-to-video, or image-to-video when pipeline is WanImageToVideoPipeline)
    pipeline: str
    default_steps: int
    default_guidance: float
    default_size: tuple[int, int]
    default_frames: int
    max_sequence_length: int
    components: dict
    pipeline_config: dict = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    default_guidance_2: float | None = None

    @property
    def transformer(self) -> dict:
        return self.components["transformer"]["config"]

    @property
    def heads(self) -> int:
        return int(self.transformer["num_attention_heads"])

    @property
    def experts(self) -> int:
        return 2 if "transformer_2" in self.components else 1

    def sp_modes(self, degrees=SP_DEGREES) -> dict[int, str]:
        """Attention mode per SP degree: Ulysses where the heads split evenly, ring attention otherwise."""
        return {p: ("ulysses" if self.heads % p == 0 else "ring") for p in degrees}

    def latent_factors(self) -> dict:
        """Pixels per latent (space, time), patch, latent channels: what sizes and token counts derive from."""
        comps = self.components
        t = self.transformer
        vae = comps["vae"]["config"]
        if self.family == "wan":
            space = vae.get("scale_factor_spatial", 2 ** len(vae["temperal_downsample"]))
            return {"spatial": space, "temporal": vae.get("scale_factor_temporal", 4),
                    "patch": t["patch_size"][1], "channels": vae["z_dim"]}
        if self.family == "qwen-image":
            return {"spatial": 2 ** len(vae["temperal_downsample"]), "temporal": 1, "patch": t["patch_size"],
                    "channels": vae["z_dim"]}
        space = 2 ** (len(vae["block_out_channels"]) - 1)
        patch = t["patch_size"] if self.family == "sd3" else 2  # FLUX packs 2x2 latents into one token
        return {"spatial": space, "temporal": 1, "patch": patch, "channels": vae["latent_channels"]}


@lru_cache(maxsize=1)
def _shared() -> dict:
    return json.loads((DATA / "_components.json").read_text())


def _resolve(spec: dict, comps: dict) -> dict:
    """A component spec with its shared `ref` and `same_as` expanded (a fresh copy)."""
    if "same_as" in spec:
        return _resolve(comps[spec["same_as"]], comps)
    out = copy.deepcopy(spec)
    if "ref" in spec:
        base = copy.deepcopy(_shared()[spec["ref"]])
        base.update({k: v for k, v in out.items() if k not in ("ref", "override")})
        base["config"] = {**base["config"], **out.get("override", {})}
        out = base
    return out


@lru_cache(maxsize=None)
def _load(path: str) -> Entry:
    d = json.loads(Path(path).read_text())
    if "extends" in d:  # another mode of the same weights (Wan2.2-TI2V-5B image-to-video)
        d = json.loads((DATA / f"{d['extends']}.json").read_text()) | d
    comps = {k: _resolve(v, d["components"]) for k, v in d["components"].items()}
    return Entry(name=d["name"], hub_id=d["hub_id"], family=d["family"], modality=d["modality"],
                 pipeline=d["pipeline"], default_steps=d["default_steps"], default_guidance=d["default_guidance"],
                 default_size=tuple(d["default_size"]), default_frames=d.get("default_frames", 1),
                 max_sequence_length=d["max_sequence_length"], components=comps,
                 pipeline_config=d.get("pipeline_config", {}), sources=tuple(d.get("sources", ())),
                 default_guidance_2=d.get("default_guidance_2"))


def names() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.json") if not p.stem.startswith("_"))


def entry(name: str) -> Entry:
    path = DATA / f"{name}.json"
    if name.startswith("_") or not path.is_file():
        raise ValidationError(f"unknown bundled model {name!r}: use one of {', '.join(names())}")
    return _load(str(path))


def entries() -> list[Entry]:
    return [entry(n) for n in names()]


# -- building ---------------------------------------------------------------------------------------------------------

def _set_path(cfg: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for k in head:
        cfg = cfg[k]
    cfg[last] = value


def _layer_keys(spec: dict) -> list[str]:
    keys = spec.get("layers_key", [])
    return [keys] if isinstance(keys, str) else list(keys)


def reduced_config(spec: dict, blocks: int | None) -> dict:
    """The component's config with every depth key set to `blocks` (None: full depth). Per-layer index lists
    (SD3.5's dual-attention layers, Qwen2.5-VL's full-attention vision blocks) keep the indices that remain."""
    cfg = copy.deepcopy(spec["config"])
    if blocks is None:
        return cfg
    for key in _layer_keys(spec):
        _set_path(cfg, key, blocks)
    if "dual_attention_layers" in cfg:
        cfg["dual_attention_layers"] = [i for i in cfg["dual_attention_layers"] if i < blocks]
    vision = cfg.get("vision_config")
    if isinstance(vision, dict) and "fullatt_block_indexes" in vision:
        vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < blocks]
    return cfg


def _text_model(spec: dict, cfg: dict, tokenizer=None):
    import transformers

    if tokenizer is not None:  # vocabulary and special ids follow the in-memory tokenizer
        ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
               "eos_token_id": tokenizer.eos_token_id}
        if spec["config_class"] == "CLIPTextConfig":
            ids["bos_token_id"] = tokenizer.bos_token_id
            ids["max_position_embeddings"] = tokenizer.model_max_length
        target = cfg.get("text_config", cfg)
        target.update(ids)
    config = getattr(transformers, spec["config_class"])(**cfg)
    return getattr(transformers, spec["class"])(config)


def _diffusers_model(spec: dict, cfg: dict):
    import diffusers

    cls = getattr(diffusers, spec["class"])
    return cls(**cfg)


def component_params(name: str) -> dict[str, int]:
    """Parameter count per component of the full model, built on the meta device (no memory allocated)."""
    e = entry(name)
    out = {}
    for key, spec in e.components.items():
        if spec["class"].endswith("Scheduler"):
            continue
        cfg = reduced_config(spec, None)
        with torch.device("meta"):
            model = _text_model(spec, cfg) if "config_class" in spec else _diffusers_model(spec, cfg)
        out[key] = sum(p.numel() for p in model.parameters())
        del model
    return out


def weight_bytes(name: str, bytes_per_param: int = 2) -> dict[str, int]:
    """Weight bytes per component in bf16 (2 bytes a parameter), plus 'total'."""
    out = {k: v * bytes_per_param for k, v in component_params(name).items()}
    out["total"] = sum(out.values())
    return out


def _tokenizers(e: Entry, text_len: int) -> dict:
    from genserve.models.tiny import clip_tokenizer, qwen_tokenizer, t5_tokenizer

    out = {}
    for key, spec in e.components.items():
        if not key.startswith("text_encoder"):
            continue
        tok_key = key.replace("text_encoder", "tokenizer")
        cc = spec["config_class"]
        out[tok_key] = (clip_tokenizer(77) if cc == "CLIPTextConfig" else
                        qwen_tokenizer() if cc.startswith("Qwen") else t5_tokenizer(text_len))
    return out


@contextmanager
def _default_dtype(dtype: torch.dtype | None):
    old = torch.get_default_dtype()
    if dtype is not None and dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


_BASE_LEN = 1_000_003  # prime: the tiled pattern never lines up with head or channel boundaries


@torch.no_grad()
def fast_fill(model: torch.nn.Module, seed: int) -> None:
    """Seeded pseudo-random weights at a fraction of the cost of drawing every value: one random vector of prime
    length, tiled over each parameter from a per-parameter offset, scaled like the default init (std
    0.58/sqrt(fan_in), i.e. kaiming-uniform); 1-D norm scales around 1, other 1-D parameters around 0."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(_BASE_LEN, generator=g)
    for i, (n, p) in enumerate(model.named_parameters()):
        off = (i * 104729 + 7919) % _BASE_LEN
        flat = p.data.view(-1)
        pat = torch.roll(base, -off).to(flat.device, flat.dtype)
        for start in range(0, flat.numel(), _BASE_LEN):
            m = min(_BASE_LEN, flat.numel() - start)
            flat[start: start + m].copy_(pat[:m])
        if p.ndim >= 2:
            p.mul_(0.58 / max(p[0].numel(), 1) ** 0.5)
        elif "norm" in n.lower() or n.endswith(("gamma", "ln.weight")) or (n.endswith("weight") and "embed" not in n):
            p.mul_(0.02).add_(1.0)
        else:
            p.mul_(0.02)


@contextmanager
def _init_mode(init: str):
    if init == "fast":  # skip torch's and transformers' initialisers: fast_fill draws the weights afterwards
        from transformers.initialization import no_init_weights

        with no_init_weights():
            yield
    else:
        yield


def build_pipeline(name: str, *, blocks: int | None = 1, seed: int = 0, dtype: torch.dtype | None = None,
                   text_len: int = 32, device: str | torch.device = "cpu", init: str = "torch",
                   overrides: dict | None = None):
    """The real pipeline of `name` with random weights: `blocks` transformer blocks and text-encoder layers
    (None: full depth). `overrides` ({component: {key: value}}) changes config values, e.g. a smaller SD3
    `pos_embed_max_size` (its sin-cos table is built on the CPU in __init__: a minute at 384).

    Weights are drawn under torch.manual_seed(seed) per component (the caller's RNG is restored), so every build
    is identical in every process; two experts (Wan 2.2 A14B) differ (seed + component index). `init`: "torch"
    (the libraries' own initialisers) or "fast" (fast_fill: several times quicker on the CPU). Parameters are
    created directly on `device` in `dtype`: a full-size model never exists in float32 on the host."""
    import diffusers

    from genserve.models.tiny import _seeded

    if init not in ("torch", "fast"):
        raise ValidationError(f"init must be 'torch' or 'fast', got {init!r}")
    e = entry(name)
    unknown = set(overrides or {}) - set(e.components)
    if unknown:
        raise ValidationError(f"{name} has no component {sorted(unknown)}; components: {sorted(e.components)}")
    toks = _tokenizers(e, text_len)
    parts: dict = dict(toks)
    for i, (key, spec) in enumerate(e.components.items()):
        cfg = reduced_config(spec, blocks)
        cfg.update((overrides or {}).get(key, {}))
        if spec["class"].endswith("Scheduler"):
            parts[key] = getattr(diffusers, spec["class"])(**cfg)
            continue
        with _seeded(seed * 1000 + i), torch.device(device), _default_dtype(dtype), _init_mode(init):
            if "config_class" in spec:
                model = _text_model(spec, cfg, toks[key.replace("text_encoder", "tokenizer")])
            else:
                model = _diffusers_model(spec, cfg)
        if init == "fast":
            fast_fill(model, seed * 1000 + i)
        model.eval()
        parts[key] = model.to(dtype) if dtype not in (None, torch.float32) else model
    pipe = getattr(diffusers, e.pipeline)(**parts, **e.pipeline_config)
    return pipe


def bundled_adapter(name: str, *, blocks: int | None = 1, seed: int = 0, dtype: torch.dtype | None = None,
                    text_len: int = 32, device: str | torch.device = "cpu", pipe=None, init: str = "torch",
                    overrides: dict | None = None, adapter_name: str | None = None, **kw):
    """build_pipeline (or `pipe`, already built) + the family's adapter with the model card's default guidance."""
    from genserve.models.registry import adapter_for

    e = entry(name)
    if pipe is None:
        pipe = build_pipeline(name, blocks=blocks, seed=seed, dtype=dtype, text_len=text_len, device=device,
                              init=init, overrides=overrides)
        pipe.to(device)
    kw.setdefault("max_sequence_length", text_len)
    adapter = adapter_for(pipe, adapter_name or name, **kw)
    adapter.default_guidance = e.default_guidance
    if e.default_guidance_2 is not None:
        adapter.default_guidance_2 = e.default_guidance_2
    return adapter
