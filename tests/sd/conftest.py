"""Tiny Stable Diffusion pipeline, tiny open_clip model and a small captioned image folder,
all built in code (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("open_clip")

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                            "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4,
                          "layers": 1}}


def make_image_folder(folder: Path, n_per: int = 6, size: int = 32, seed: int = 0) -> Path:
    """Two concepts of coloured shapes on noisy backgrounds, imagefolder convention."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for concept, colour in (("red square", (220, 40, 40)), ("blue disc", (40, 60, 220))):
        for i in range(n_per):
            img = rng.integers(90, 160, (size, size, 3)).astype(np.uint8)
            cx, cy, r = rng.integers(10, size - 10, 2).tolist() + [int(rng.integers(4, 9))]
            mask = ((np.abs(xx - cx) < r) & (np.abs(yy - cy) < r) if "square" in concept
                    else (xx - cx) ** 2 + (yy - cy) ** 2 < r * r)
            img[mask] = colour
            name = f"{concept.split()[1]}_{i:02d}.png"
            Image.fromarray(img).save(folder / name)
            rows.append({"file_name": name, "text": f"a {concept}, photo {i}",
                         "concept": concept})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="session")
def sd_assets(tmp_path_factory):
    """(pipeline folder, image folder, open_clip config JSON, open_clip checkpoint)."""
    import open_clip
    import torch

    from chain_runner.sd.build import save_pipeline

    root = tmp_path_factory.mktemp("sd-assets")
    pipe = save_pipeline(root / "tiny-sd", "tiny", seed=0)
    data = make_image_folder(root / "data")
    cfg = root / "tiny-clip.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    ckpt = root / "tiny-clip.pt"
    torch.save(model.state_dict(), ckpt)
    return {"pipeline": pipe, "data": data, "clip_config": cfg, "clip_ckpt": ckpt}


def sd_raw_config(assets, **over) -> dict:
    # one thread: on a shared 2-core machine two threads wait on each other's time slices
    raw = {"backend": "sd", "name": "tiny-sd", "seed": 3, "generations": 3,
           "runtime": {"threads": 1},
           "design": {"cfg_scale": 4.0, "cfg_schedule": "linear", "cfg_end": 1.0,
                      "p_drop": 0.2, "probe_fraction": 0.67},
           "sampler": {"scheduler": "ddim", "steps": 4},
           # alpha != rank: the LoRA scale alpha/rank = 2 must survive saving and reloading
           "finetune": {"lora_rank": 4, "lora_alpha": 8.0, "steps": 3, "batch_size": 4,
                        "learning_rate": 1e-3},
           "traits": {"pca_axes": 3},
           "sd": {"model": str(assets["pipeline"]), "data": str(assets["data"]),
                  "resolution": 32, "device": "cpu", "sample_batch_size": 8,
                  "lr_warmup_steps": 0},
           "features": {"extractor": "open_clip", "clip_config": str(assets["clip_config"]),
                        "clip_pretrained": str(assets["clip_ckpt"]), "device": "cpu"}}
    for key, value in over.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """On a shared 2-core machine two intra-op threads wait on each other's time slices
    (tiny ops get 10x slower); the tests here use one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
