"""Chain configs: backend-specific finetuning defaults (no torch needed)."""

from __future__ import annotations

import pytest

from chain_runner.config import (SD_EPOCHS_DEFAULT, SD_FINETUNE_DEFAULTS, FinetuneConfig,
                                 config_from_dict)
from qtrait.errors import QtraitError

SD = {"backend": "sd", "sd": {"model": "some/model", "data": "/data"}}


def test_sd_configs_get_diffusers_lora_defaults_not_the_miniatures():
    cfg = config_from_dict(SD)
    f = cfg.finetune
    assert (f.lora_rank, f.lora_alpha, f.batch_size, f.learning_rate) == (4, 4.0, 16, 1e-4)
    assert (cfg.sd.epochs, cfg.sd.lr_warmup_steps) == (SD_EPOCHS_DEFAULT, 500) == (100, 500)
    toy = config_from_dict({"backend": "toy"}).finetune
    assert toy == FinetuneConfig()                  # the miniature keeps its own
    assert (toy.lora_rank, toy.batch_size, toy.learning_rate) == (8, 128, 1e-3)
    assert SD_FINETUNE_DEFAULTS["learning_rate"] != toy.learning_rate


def test_sd_config_values_given_win_and_steps_mean_steps():
    cfg = config_from_dict({**SD, "finetune": {"learning_rate": 3e-4, "steps": 250}})
    assert cfg.finetune.learning_rate == 3e-4 and cfg.finetune.batch_size == 16
    assert cfg.finetune.steps == 250 and cfg.sd.epochs == 0    # steps given: no epochs
    cfg = config_from_dict({**SD, "finetune": {"steps": 250},
                            "sd": {**SD["sd"], "epochs": 3}})
    assert cfg.sd.epochs == 3                                   # both given: as written
    with pytest.raises(QtraitError, match="finetune.*must be a table"):
        config_from_dict({**SD, "finetune": 3})


def test_the_shipped_sd_example_parses_with_the_current_hub_id():
    from pathlib import Path

    from chain_runner.config import load_config
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "data" / "chains" / "sd15_example.toml")
    assert cfg.sd.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"  # runwayml's is gone
    assert cfg.finetune.learning_rate == SD_FINETUNE_DEFAULTS["learning_rate"]
    assert cfg.sd.epochs == SD_EPOCHS_DEFAULT
    for path in (root / "docs").glob("*.md"):
        assert "runwayml/" not in path.read_text(), path


def test_image_traits_do_not_depend_on_the_chunk_size():
    """image_traits_rgb streams its images in chunks: the traits are the same whatever
    the chunk (the memory, not the result, depends on it)."""
    import numpy as np

    from chain_runner.features import image_traits_rgb
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 24, 24, 3), dtype=np.uint8)
    whole = image_traits_rgb(images, chunk=10)
    for chunk in (1, 3, 16):
        # equal to rounding: numpy's batched reductions and FFTs may sum in another order
        np.testing.assert_allclose(image_traits_rgb(images, chunk=chunk), whole,
                                   rtol=1e-12, atol=1e-15)
    assert whole.shape == (10, 5) and np.isfinite(whole).all()
