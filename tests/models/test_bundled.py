"""Bundled hub configurations: the registry's facts, and `genserve models verify` on every family at 1 block.

The verify checks run on the real configs (full width, 1 transformer block, 1 text-encoder layer) with random
weights on the CPU, at the smallest size each model allows.
"""

import json
import multiprocessing
import sys

import pytest
import torch

from genserve.models import catalog
from genserve.models.verify import Options, verify

# Published parameter counts (model cards / papers), billions: the meta-device count must land within 3%.
PUBLISHED_B = {
    ("flux.1-dev", "transformer"): 12.0, ("sd3.5-large", "transformer"): 8.1,
    ("sd3.5-medium", "transformer"): 2.5, ("qwen-image", "transformer"): 20.0,
    ("wan2.1-t2v-1.3b", "transformer"): 1.3, ("wan2.1-t2v-14b", "transformer"): 14.0,
    ("wan2.2-ti2v-5b", "transformer"): 5.0, ("qwen-image", "text_encoder"): 8.3,
}


def test_registry_lists_every_issue_model():
    assert catalog.names() == sorted([
        "flux.1-dev", "flux.1-schnell", "qwen-image", "sd3.5-large", "sd3.5-medium", "wan2.1-t2v-1.3b",
        "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "wan2.2-ti2v-5b", "wan2.2-ti2v-5b-i2v"])
    for e in catalog.entries():
        assert e.hub_id.count("/") == 1 and e.sources, e.name


@pytest.mark.parametrize("key,billions", sorted(PUBLISHED_B.items()))
def test_parameter_counts_match_published_sizes(key, billions):
    name, comp = key
    n = catalog.component_params(name)[comp] / 1e9
    tol = 0.12 if billions < 3 else 0.05  # "1.3B" / "2.5B" are rounded names; larger ones are closer
    assert abs(n - billions) / billions < tol, (key, n)


def test_a14b_counts_both_experts():
    mem = catalog.weight_bytes("wan2.2-t2v-a14b")
    assert mem["transformer_2"] == mem["transformer"] > 50e9 / 2
    assert mem["total"] > 2 * mem["transformer"]


def test_sp_modes_follow_head_counts():
    assert catalog.entry("wan2.1-t2v-1.3b").sp_modes() == {1: "ulysses", 2: "ulysses", 4: "ulysses", 8: "ring"}
    assert set(catalog.entry("wan2.1-t2v-14b").sp_modes().values()) == {"ulysses"}  # 40 heads
    assert catalog.entry("sd3.5-large").sp_modes()[4] == "ring"  # 38 heads


def test_reduced_config_keeps_per_layer_lists_consistent():
    spec = catalog.entry("sd3.5-medium").components["transformer"]
    assert catalog.reduced_config(spec, 2)["dual_attention_layers"] == [0, 1]
    te = catalog.entry("qwen-image").components["text_encoder"]
    cfg = catalog.reduced_config(te, 1)
    assert cfg["text_config"]["num_hidden_layers"] == 1 and cfg["vision_config"]["depth"] == 1
    assert cfg["vision_config"]["fullatt_block_indexes"] == []


# CI arguments per model. SD3's __init__ builds its sin-cos position table on the CPU (pos_embed_max_size 384,
# SD3.5 medium: a minute here); it is only cropped to the image's patches, so a 32-wide table keeps the code path.
# The worker-process resume and SP runs fork processes that share the weights: they run where they add a code
# path (Wan 2.1 1.3B: Ulysses and forced ring at SP 4; A14B: both experts under SP and across processes;
# TI2V-5B image-to-video: per-token timesteps and the image's first latent frame under SP).
# `genserve models verify NAME` with no options runs all of them.
CI_ARGS = {
    "sd3.5-medium": ["--no-process", "--set", "transformer.pos_embed_max_size=32"],
    "sd3.5-large": ["--no-process", "--set", "transformer.pos_embed_max_size=32"],
    "flux.1-dev": ["--no-process"], "flux.1-schnell": ["--no-process"], "qwen-image": ["--no-process"],
    "wan2.1-t2v-1.3b": ["--sp", "1,2,4", "--no-process"], "wan2.1-t2v-14b": ["--sp", "1", "--no-process"],
    "wan2.2-ti2v-5b": ["--sp", "1", "--no-process"], "wan2.2-ti2v-5b-i2v": ["--sp", "1,2", "--no-process"],
    "wan2.2-t2v-a14b": ["--sp", "1,2"],
}


def _child(args, queue):
    from typer.testing import CliRunner

    from genserve.models_cli import app

    res = CliRunner().invoke(app, ["verify", *args])
    queue.put((res.exit_code, res.output))


def _cli_verify(*args) -> tuple[int, dict, str]:
    # `genserve models verify` in a forked child: no second start-up of torch and diffusers (seconds), and its
    # memory (1-5 GB at full width) goes back to the box when it exits.
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(list(args), queue))
    proc.start()
    try:
        rc, output = queue.get(timeout=600)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    lines = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    return rc, {v["check"]: v for v in lines}, output[-3000:]


def test_ci_args_cover_every_bundled_model():
    assert sorted(CI_ARGS) == catalog.names()


@pytest.mark.slow
@pytest.mark.parametrize("name", catalog.names())
def test_verify_every_bundled_model(name):
    e = catalog.entry(name)
    rc, v, err = _cli_verify(name, *CI_ARGS[name])
    assert rc == 0 and v and all(x["ok"] for x in v.values()), (rc, json.dumps(v, default=str), err)
    assert v["pipeline_equal"]["equal"] and v["pipeline_equal"]["seed_changes_output"]
    assert v["pause_resume"]["ks"] == [1, 2]
    if "--no-process" not in CI_ARGS[name]:
        assert v["pause_resume"]["process"] is True
    sp = [int(p) for p in (CI_ARGS[name][CI_ARGS[name].index("--sp") + 1] if "--sp" in CI_ARGS[name] else "1,2,4")
          .split(",") if int(p) > 1]
    if e.modality == "video" and sp:
        assert {(r["degree"], r["mode"]) for r in v["sp"]["runs"]} >= {(p, e.sp_modes()[p]) for p in sp}
        assert {r["mode"] for r in v["sp"]["runs"]} == {"ulysses", "ring"}
    if name == "wan2.2-t2v-a14b":
        assert v["pause_resume"]["crosses_switch"] and v["pause_resume"]["experts_per_step"] == [1, 1, 2]
    if e.family in ("sd3", "flux"):
        assert v["batch"]["members_differ"] and v["batch"]["rel_diff"] <= v["batch"]["rtol"]
    assert ("batch" in v) == (e.modality == "image")


def _verdicts(name, **kw):
    return {v["check"]: v for v in verify(Options(name=name, blocks=1, **kw))}


@pytest.mark.slow
def test_verify_detects_a_broken_resume(monkeypatch):
    # Negative control: a State whose UniPC history is zeroed on the way through bytes must fail the check.
    from genserve.models import state as state_mod

    real = state_mod.scheduler_state

    def forgetful(s):
        d = real(s)
        outs = d["attrs"].get("model_outputs", [])
        d["attrs"]["model_outputs"] = [None if t is None else torch.zeros_like(t) for t in outs]
        return d

    monkeypatch.setattr(state_mod, "scheduler_state", forgetful)
    v = _verdicts("wan2.1-t2v-1.3b", sp=(1,), process=False)
    assert v["pipeline_equal"]["ok"]
    # k=1 resumes into a second-order UniPC step that reads the history (the last step is first-order).
    assert not v["pause_resume"]["ok"] and not v["pause_resume"]["per_k"][1]["bytes"]


def test_cli_verify_exit_status_follows_the_verdicts(monkeypatch):
    from typer.testing import CliRunner

    import genserve.models.verify as verify_mod
    from genserve.models_cli import app

    for ok, rc in ((True, 0), (False, 1)):
        monkeypatch.setattr(verify_mod, "verify", lambda o, ok=ok: iter([{"check": "x", "model": o.name, "ok": ok}]))
        res = CliRunner().invoke(app, ["verify", "wan2.1-t2v-1.3b"])
        assert res.exit_code == rc and json.loads(res.output.splitlines()[-1])["ok"] is ok


def test_cli_verify_rejects_bad_input():
    from typer.testing import CliRunner

    from genserve.cli import app

    for args, message in ((["wan2.1-t2v-1.3b", "--steps", "1"], "a pause needs a step on each side"),
                          (["no-such-model"], "unknown bundled model"), (["sd3.5-medium", "--size", "64"], "WxH")):
        res = CliRunner().invoke(app, ["models", "verify", *args])
        assert res.exit_code == 2 and message in res.output, res.output


def test_models_list_json():
    from typer.testing import CliRunner

    from genserve.cli import app

    res = CliRunner().invoke(app, ["models", "list", "--json"])
    rows = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert res.exit_code == 0 and [r["name"] for r in rows] == catalog.names()
    by = {r["name"]: r for r in rows}
    assert by["wan2.1-t2v-1.3b"]["sp"] == {"1": "ulysses", "2": "ulysses", "4": "ulysses", "8": "ring"}
    assert by["wan2.2-t2v-a14b"]["experts"] == 2 and by["wan2.2-t2v-a14b"]["bf16_gib"] > 60


def test_load_adapter_builds_bundled_models_by_name():
    # What workers and `genserve profile` use: NAME (full size, bf16 on CUDA) or NAME@K (K blocks).
    from genserve.core.errors import ValidationError
    from genserve.models import WanAdapter, load_adapter

    a = load_adapter("wan2.1-t2v-1.3b@1")
    assert isinstance(a, WanAdapter) and a.name == "wan2.1-t2v-1.3b@1" and len(a.pipe.transformer.blocks) == 1
    assert a.pipe.transformer.config.num_attention_heads == 12 and a.size_multiple == 16
    for bad in ("wan2.1-t2v-1.3b@0", "wan2.1-t2v-1.3b@x"):
        with pytest.raises(ValidationError):
            load_adapter(bad)
