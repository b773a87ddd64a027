"""Stable Diffusion pipelines built from config, with random weights.

Used by the tests (a tiny pipeline that runs on CPU in seconds) and by
``bench/gpu_chain.py`` (the Stable Diffusion 1.5 architecture: throughput does not depend on
the weights). Nothing is downloaded: the tokenizer is a character-level CLIP BPE vocabulary
written here. Real chains load real weights with ``sd.model`` (a hub id or a local folder).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

#: Architectures: keyword arguments of UNet2DConditionModel, AutoencoderKL, CLIPTextConfig.
PRESETS = {
    "tiny": {
        "unet": dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                     in_channels=4, out_channels=4, cross_attention_dim=32,
                     attention_head_dim=4, norm_num_groups=8,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
        "vae": dict(block_out_channels=(16, 32), in_channels=3, out_channels=3,
                    down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                    norm_num_groups=8, layers_per_block=1, sample_size=32),
        "text": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                     num_hidden_layers=2, max_position_embeddings=77, projection_dim=32),
        "resolution": 32,
    },
    "sd15": {
        "unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                     sample_size=64, in_channels=4, out_channels=4, cross_attention_dim=768,
                     attention_head_dim=8,
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
        "vae": dict(block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3,
                    down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                    layers_per_block=2, sample_size=512),
        "text": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                     num_hidden_layers=12, max_position_embeddings=77, projection_dim=768,
                     hidden_act="quick_gelu"),
        "resolution": 512,
    },
}


def write_char_tokenizer(folder: str | Path) -> Path:
    """A CLIP BPE tokenizer whose vocabulary is the printable characters (no merges):
    every word becomes its letters. Written as ``vocab.json`` and ``merges.txt``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        for tok in (ch, ch + "</w>"):
            vocab.setdefault(tok, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    return folder


def build_pipeline(preset: str = "tiny", *, seed: int = 0, prediction_type: str = "epsilon",
                   vocab_size: int = 49408):
    """A StableDiffusionPipeline with random weights and the preset's architecture."""
    import tempfile

    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    spec = PRESETS[preset]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**spec["unet"])
    vae = AutoencoderKL(**spec["vae"])
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1,
                                        pad_token_id=1, **spec["text"]))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_char_tokenizer(tmp), model_max_length=77)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def save_pipeline(folder: str | Path, preset: str = "tiny", **kwargs) -> Path:
    """Build and save a pipeline folder that ``sd.model`` can point to."""
    folder = Path(folder)
    build_pipeline(preset, **kwargs).save_pretrained(folder)
    return folder
