"""The Stable Diffusion backend on a tiny pipeline built from config (CPU, seconds)."""

from __future__ import annotations

import json
import signal

import numpy as np
import pandas as pd
import pytest

from chain_runner.chain import run_chain
from chain_runner.config import config_from_dict
from qtrait.errors import QtraitError
from qtrait.rundir import open_run
from tests.helpers import run_chain_killed_mid_generation_2
from tests.sd.conftest import sd_raw_config


@pytest.fixture(scope="module")
def sd_run(sd_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("sd-chains") / "tiny"
    run_chain(config_from_dict(sd_raw_config(sd_assets)), out, progress=False)
    return out


def test_three_generation_chain_with_probes_drop_and_decaying_schedule(sd_run, cli):
    assert cli("validate", sd_run).code == 0
    run = open_run(sd_run)
    assert run.generations == [0, 1, 2]
    assert run.traits == ["pc_1", "pc_2", "pc_3", "concept_axis", "saturation",
                          "colourfulness", "contrast", "hf_energy", "sharpness", "clip_score"]
    d = run.design
    assert (d["cfg_schedule"], d["p_drop"], d["sampler"]["prediction_type"]) == (
        "linear", 0.2, "epsilon")
    for g in run.generations:
        assert run.sets(g) == ["guided", "probe_w1", "probe_uncond"]
        guided = run.table(g, "guided")
        assert len(guided) == 12 and len(run.table(g, "probe_w1")) == 4
        # the guided set keeps D_0's prompts, so its concepts, in every generation
        assert sorted(guided["concept"].value_counts().tolist()) == [6, 6]
        assert sorted(run.table(g, "probe_uncond")["concept"]) == ["blue disc"] * 2 + [
            "red square"] * 2
    g0 = run.table(0, "guided")
    np.testing.assert_allclose(g0[["pc_1", "pc_2", "pc_3"]].var(), 1.0, rtol=1e-4)
    # generated images differ from the real ones: their traits moved
    assert not np.allclose(run.table(1, "guided")["saturation"], g0["saturation"])
    arts = sd_run / "generations"
    assert not (arts / "gen_0000" / "artifacts" / "pytorch_lora_weights.safetensors").exists()
    m0 = json.loads((arts / "gen_0000" / "artifacts" / "metrics.json").read_text())
    m2 = json.loads((arts / "gen_0002" / "artifacts" / "metrics.json").read_text())
    assert m0["frechet_distance"] < 1e-8 and m0["precision"] == m0["coverage"] == 1.0
    assert m2["frechet_distance"] > 1e-4
    assert m2["clip_score_variant"].startswith("100*max(cos(image, text), 0), open_clip tiny")
    assert set(m2) >= {"precision", "recall", "density", "coverage", "vendi", "clip_score"}
    # each finetuned generation records its training: 3 steps, finite losses, the learning
    # rate of each step, the LoRA's rank and alpha, and its time
    assert not (arts / "gen_0000" / "artifacts" / "training.json").exists()
    for g in (1, 2):
        tr = json.loads((arts / f"gen_{g:04d}" / "artifacts" / "training.json").read_text())
        assert tr["steps"] == len(tr["loss"]) == len(tr["learning_rate"]) == 3
        assert all(np.isfinite(tr["loss"])) and min(tr["loss"]) > 0
        assert tr["learning_rate"] == [1e-3] * 3            # constant, no warmup (conftest)
        assert (tr["lora_rank"], tr["lora_alpha"], tr["images"]) == (4, 8.0, 12)
        assert tr["seconds"] > 0


def test_lora_reloads_through_load_lora_weights(sd_run, sd_assets):
    """The saved LoRA is what the chain sampled with: the pipeline's load_lora_weights
    reproduces the finetuned UNet's prediction exactly."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from chain_runner.sd.backend import SDBackend

    lora = sd_run / "generations" / "gen_0002" / "artifacts" / "pytorch_lora_weights.safetensors"
    pipe = StableDiffusionPipeline.from_pretrained(sd_assets["pipeline"], safety_checker=None,
                                                   requires_safety_checker=False)
    x = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    emb = torch.randn((1, 77, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = pipe.unet(x, 500, emb).sample
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
        loaded = pipe.unet(x, 500, emb).sample
    backend = SDBackend(config_from_dict(sd_raw_config(sd_assets)), progress=False).prepare()
    state = load_file(sd_run / "chain_state" / "gen_0002" / "adapter.safetensors")
    backend._add_adapter()
    set_peft_model_state_dict(backend.unet, state, adapter_name="default")
    with torch.no_grad():
        ours = backend.unet(x, 500, emb).sample
    assert (loaded - base).abs().max() > 1e-4   # the adapter changes the UNet
    torch.testing.assert_close(loaded, ours, rtol=1e-5, atol=1e-6)




def test_killed_sd_chain_resumes_identically(sd_assets, sd_run, tmp_path, cli):
    """Killed in generation 2 and resumed with a smaller sampling batch (a run-time
    setting: each image has its own noise generator), the chain is the uninterrupted one,
    and the manifest records the override.

    Identical noise, not identical arithmetic: a batch of 3 and a batch of 8 run the
    UNet's convolutions on different shapes, and on some CPUs that moves the last bits
    (a fresh 2-core machine, 2026-12-06: 1 to 2 of 60 values of a trait differed, by up
    to 5e-4, after the next generation's finetune; another machine gave identical
    tables). So the tables agree to 1e-3 (absolute and relative), far below the traits'
    spread of order 1."""
    out = tmp_path / "killed"
    proc = run_chain_killed_mid_generation_2(sd_raw_config(sd_assets), out)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    res = cli("validate", out)
    assert res.code == 0 and "generation 2: incomplete" in res.out
    res = cli("chain", "resume", out, "--set", "sd.sample_batch_size=3", "--quiet")
    assert res.code == 0, res.err
    a, b = open_run(out).long_table(), open_run(sd_run).long_table()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-3, atol=1e-3)
    extra = open_run(out).manifest["extra"]
    [rec] = extra["resume_overrides"]
    assert rec["from_generation"] == 2 and rec["changes"] == {"sd.sample_batch_size": [8, 3]}
    assert extra["chain_config"]["sd"]["sample_batch_size"] == 3
    # the resume state keeps generation 0 and the last generation's images only
    state = out / "chain_state"
    assert (state / "gen_0000" / "guided_images.npz").exists()
    assert not (state / "gen_0001" / "guided_images.npz").exists()
    assert (state / "gen_0001" / "adapter.safetensors").exists()
    assert (state / "gen_0002" / "guided_images.npz").exists()
    # the design cannot change on resume
    res = cli("chain", "resume", out, "--set", "design.cfg_scale=2")
    assert res.code == 2 and "cannot change design.cfg_scale on resume" in res.err
    res = cli("chain", "resume", out, "--set", "nonsense")
    assert res.code == 2 and "--set takes SECTION.KEY=VALUE" in res.err


def test_nan_loss_is_reported_and_leaves_the_run_valid(sd_assets, tmp_path, cli):
    raw = sd_raw_config(sd_assets, generations=2,
                        finetune={"learning_rate": 1e30, "steps": 3},
                        design={"probe_fraction": 0.0})
    with pytest.raises(QtraitError, match=r"generation 1 failed: numerical failure .*"
                       r"generations 0..0 are complete"):
        run_chain(config_from_dict(raw), tmp_path / "nan", progress=False)
    res = cli("validate", tmp_path / "nan")
    assert res.code == 0 and open_run(tmp_path / "nan").generations == [0]


def test_anchor_previous_and_v_prediction(sd_assets, sd_run, tmp_path):
    """anchor = previous continues from the last LoRA; a v-prediction model trains on the
    velocity target (SD 2.x)."""
    import torch
    from safetensors.torch import load_file

    from chain_runner.sd.build import save_pipeline

    vpipe = save_pipeline(tmp_path / "tiny-v", "tiny", seed=1, prediction_type="v_prediction")
    raw = sd_raw_config(sd_assets, generations=3, design={"anchor": "previous",
                                                          "probe_fraction": 0.0},
                        sd={"model": str(vpipe)}, finetune={"steps": 2})
    out = run_chain(config_from_dict(raw), tmp_path / "prev", progress=False)
    assert open_run(out).design["sampler"]["prediction_type"] == "v_prediction"
    a1 = load_file(out / "chain_state" / "gen_0001" / "adapter.safetensors")
    a2 = load_file(out / "chain_state" / "gen_0002" / "adapter.safetensors")
    # lora_A starts random (gaussian init): a fresh adapter (anchor = base, sd_run) starts
    # elsewhere each generation; anchor = previous continues from generation 1's, moved by
    # at most ~lr per Adam step (2 steps of 1e-3)
    key = next(k for k in a1 if "lora_A" in k)
    step = (a2[key] - a1[key]).abs().max()
    assert 0 < step < 3e-3 and a1[key].abs().max() > 0.1
    b1 = load_file(sd_run / "chain_state" / "gen_0001" / "adapter.safetensors")[key]
    b2 = load_file(sd_run / "chain_state" / "gen_0002" / "adapter.safetensors")[key]
    assert (b2 - b1).abs().max() > 0.1
    assert not torch.equal(a1[key], b1)


def test_sd_config_errors_are_clear(sd_assets, tmp_path, cli):
    with pytest.raises(QtraitError, match="sd.model is required"):
        config_from_dict({"backend": "sd", "sd": {"data": "x"}})
    with pytest.raises(QtraitError, match=r"unknown key\(s\) \['rank'\] in \[sd\]"):
        config_from_dict({"backend": "sd", "sd": {"rank": 4}})
    raw = sd_raw_config(sd_assets, sd={"data": str(tmp_path / "nowhere")})
    with pytest.raises(QtraitError, match="no such image folder"):
        run_chain(config_from_dict(raw), tmp_path / "a", progress=False)
    raw = sd_raw_config(sd_assets, sd={"model": str(tmp_path / "no-model")})
    with pytest.raises(QtraitError, match="not a diffusers pipeline folder"):
        run_chain(config_from_dict(raw), tmp_path / "b", progress=False)
    raw = sd_raw_config(sd_assets, features={"clip_pretrained": str(tmp_path / "w.pt")})
    with pytest.raises(QtraitError, match="no such open_clip checkpoint"):
        run_chain(config_from_dict(raw), tmp_path / "c", progress=False)
    raw = sd_raw_config(sd_assets, sd={"target_modules": "nope"})
    with pytest.raises(QtraitError, match="cannot put LoRA on the UNet"):
        run_chain(config_from_dict(raw), tmp_path / "d", progress=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text('backend = "sd"\n[sd]\nmodel = "x/y"\ndata = "/nonexistent"\n')
    res = cli("chain", "run", cfg, "--out", tmp_path / "e", "--quiet")
    assert res.code == 2 and res.err.startswith("error: no such image folder")


def test_nan_in_sampling_stops_the_generation_and_keeps_the_ones_before(sd_assets, tmp_path,
                                                                         monkeypatch, cli):
    """A NaN injected into the sampler's latents at generation 2 stops the chain with one
    clear line; generations 0 and 1 stay complete and valid, and nothing of 2 is kept."""
    from chain_runner.sd import backend as B

    orig_sample, orig_sampler = B.SDBackend.sample, B.SDBackend._sampler
    calls = []

    def nan_sampler(self):
        sched = orig_sampler(self)
        step = sched.step

        def nan_step(*a, **k):
            out = step(*a, **k)
            out.prev_sample[0, 0, 0, 0] = float("nan")
            return out
        sched.step = nan_step
        return sched

    def sample(self, net, labels, guidance, seed):
        calls.append(1)           # no probes: one call per generation, from generation 1
        if len(calls) == 2:
            monkeypatch.setattr(B.SDBackend, "_sampler", nan_sampler)
        return orig_sample(self, net, labels, guidance, seed)

    monkeypatch.setattr(B.SDBackend, "sample", sample)
    raw = sd_raw_config(sd_assets, generations=3, design={"probe_fraction": 0.0})
    with pytest.raises(QtraitError, match=r"generation 2 failed: numerical failure \(non-"
                       r"finite latents of images 0\.\.7 after sampling: .*NaN or inf\); "
                       r"generations 0\.\.1 are complete and valid"):
        run_chain(config_from_dict(raw), tmp_path / "nan", progress=False)
    res = cli("validate", tmp_path / "nan")
    assert res.code == 0 and open_run(tmp_path / "nan").generations == [0, 1]


def test_precision_choices():
    import torch

    from chain_runner.sd.backend import resolve_precision, set_deterministic
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "no"           # CPU: float32
    assert resolve_precision("no", cpu) == "no"
    with pytest.raises(QtraitError, match="needs a CUDA device"):
        resolve_precision("fp16", cpu)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before)
        torch.backends.cudnn.deterministic = False


def test_exported_imagefolder_reads_back_with_the_chains_traits(sd_assets, tmp_path, cli):
    """sd.export_images writes each generation's images as an imagefolder
    (artifacts/images/: metadata.jsonl with file_name, prompt, concept, set, generation,
    seed); `qtrait traits extract` on the run directory reads it back, and its traits and
    Frechet distances are the chain's own (the PNGs are lossless)."""
    from PIL import Image

    from chain_runner.sd.backend import per_image_seeds
    out = run_chain(config_from_dict(sd_raw_config(sd_assets, sd={"export_images": True})),
                    tmp_path / "exp", progress=False)
    folder = out / "generations" / "gen_0002" / "artifacts" / "images"
    rows = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [r["set"] for r in rows].count("guided") == 12 and len(rows) == 12 + 4 + 4
    assert {"file_name", "text", "concept", "set", "generation", "seed"} <= set(rows[0])
    guided = [r for r in rows if r["set"] == "guided"]
    assert all(r["generation"] == 2 and (folder / r["file_name"]).is_file() for r in rows)
    assert guided[0]["text"].startswith("a ") and all(
        r["text"] == "" for r in rows if r["set"] == "probe_uncond")
    # the recorded seeds are the per-image noise seeds of the generation's sampling
    from chain_runner.chain import generation_seed
    assert [r["seed"] for r in guided] == per_image_seeds(generation_seed(3, 2, 1), 12)
    with Image.open(folder / guided[0]["file_name"]) as im:
        assert im.size == (32, 32)
    g0 = [json.loads(x) for x in (out / "generations" / "gen_0000" / "artifacts" / "images"
                                  / "metadata.jsonl").read_text().splitlines()]
    assert all(r["seed"] is None for r in g0 if r["set"] == "guided")   # the real images
    cfg = tmp_path / "features.toml"
    cfg.write_text(f'[features]\nclip_config = "{sd_assets["clip_config"]}"\n'
                   f'clip_pretrained = "{sd_assets["clip_ckpt"]}"\ndevice = "cpu"\n')
    res = cli("traits", "extract", out, "--out", tmp_path / "back", "--config", cfg,
              "--pca-axes", "3", "--quiet")
    assert res.code == 0, res.err
    a, b = open_run(out), open_run(tmp_path / "back")
    assert b.traits == a.traits, (a.traits, b.traits)
    for g in a.generations:
        for s in ("guided", "probe_w1"):
            x, y = a.table(g, s), b.table(g, s)
            # same rows in the same order; traits equal to the chain's 7 kept digits
            np.testing.assert_allclose(y[a.traits].to_numpy(), x[a.traits].to_numpy(),
                                       rtol=1e-5, atol=1e-5)
    fd = [json.loads((r.root / "generations" / "gen_0002" / "artifacts" / "metrics.json")
                     .read_text())["frechet_distance"] for r in (a, b)]
    assert fd[0] == pytest.approx(fd[1], rel=1e-6)
