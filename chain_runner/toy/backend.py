"""The toy backend: everything the chain loop needs, for the digits model."""

from __future__ import annotations

import io

import numpy as np
import torch

from qtrait.errors import QtraitError

from .. import cache
from ..config import ChainConfig
from . import data, model
from . import features as feat


class ToyBackend:
    """Base model, finetuning, sampling and traits of the CPU miniature chain."""

    name = "toy"
    null_label = data.NULL_LABEL

    def __init__(self, config: ChainConfig, progress: bool = True):
        self.config = config
        self.progress = progress
        self.prepared = False

    def prepare(self) -> "ToyBackend":
        """Load the base model and the feature network, training them once if not cached."""
        if self.prepared:
            return self
        config = self.config
        torch.set_num_threads(config.runtime.threads)
        torch.use_deterministic_algorithms(True)
        directory = cache.cache_dir(config.runtime.cache_dir)
        b = config.base
        base_spec = {"hidden": b.hidden, "steps": b.train_steps, "batch": b.batch_size,
                     "lr": b.learning_rate, "dropout": b.label_dropout, "seed": b.seed,
                     "threads": config.runtime.threads,
                     "v": model.ARCHITECTURE_VERSION}
        self.base_key = cache.key("toy-base", base_spec)
        self.base_state, _ = cache.cached_state(directory, self.base_key, self._train_base)
        cls_spec = {"steps": config.traits.classifier_steps, "seed": b.seed, "v": 1,
                    "threads": config.runtime.threads}
        self.classifier_key = cache.key("toy-cnn", cls_spec)
        cls_state, _ = cache.cached_state(directory, self.classifier_key,
                                          self._train_classifier)
        self.classifier = feat.DigitNet()
        self.classifier.load_state_dict(cls_state)
        self.prepared = True
        return self

    # -- one-time training (cached) ---------------------------------------------------------
    def _train_base(self) -> dict:
        from tqdm.auto import tqdm

        b = self.config.base
        x, y = data.load("pretrain")
        torch.manual_seed(b.seed)
        net = model.Denoiser(b.hidden)
        gen = torch.Generator().manual_seed(b.seed)
        with tqdm(total=b.train_steps, desc="pretraining the toy base model",
                  disable=not self.progress) as bar:
            model.train_steps(net, torch.as_tensor(x), torch.as_tensor(y), steps=b.train_steps,
                              batch_size=b.batch_size, lr=b.learning_rate,
                              label_dropout=b.label_dropout, generator=gen,
                              progress=bar.update)
        return net.state_dict()

    def _train_classifier(self) -> dict:
        x, y = data.load("pretrain")
        return feat.train_classifier(x, y, self.config.traits.classifier_steps,
                                         self.config.base.seed)

    # -- the chain ----------------------------------------------------------------------------
    def describe(self, n: int) -> dict:
        """Design fields of the manifest; ``n`` = images of D_0 used."""
        return {"base_model": f"toy MLP denoiser on digits ({self.base_key})",
                "dataset": f"scikit-learn digits, odd-indexed half ({n} images used)",
                "feature_extractor": f"toy CNN on digits, 64 features ({self.classifier_key})"}

    def real_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = data.load("finetune")
        n = self.config.images or len(x)
        if n > len(x):
            raise QtraitError(f"images = {n}, but the digits' finetuning half has {len(x)}")
        if n < len(x):
            idx = np.sort(np.random.default_rng(self.config.seed).choice(len(x), n, False))
            x, y = x[idx], y[idx]
        return data.quantize(x), y

    def base_model(self):
        net = model.Denoiser(self.config.base.hidden)
        net.load_state_dict(self.base_state)
        return net

    def finetune(self, images: np.ndarray, labels: np.ndarray, seed: int,
                 previous_adapter: dict | None = None):
        from tqdm.auto import tqdm

        f = self.config.finetune
        torch.manual_seed(seed)  # LoRA initialisation
        net = model.with_adapter(self.base_state, self.config.base.hidden, f.lora_rank,
                                 f.lora_alpha, previous_adapter)
        gen = torch.Generator().manual_seed(seed)
        with tqdm(total=f.steps, desc="  finetuning (LoRA)", leave=False,
                  disable=not self.progress) as bar:
            model.train_steps(net, torch.as_tensor(data.dequantize(images)),
                              torch.as_tensor(labels), steps=f.steps, batch_size=f.batch_size,
                              lr=f.learning_rate, label_dropout=self.config.design.p_drop,
                              generator=gen, progress=bar.update)
        return net

    def sample(self, net, labels: np.ndarray, guidance: np.ndarray, seed: int) -> np.ndarray:
        from tqdm.auto import tqdm

        gen = torch.Generator().manual_seed(seed)
        s = self.config.sampler
        batches = -(-len(labels) // 2048)
        with tqdm(total=s.steps * batches, desc=f"  sampling {len(labels)} images",
                  leave=False, disable=not self.progress) as bar:
            x = model.sample(net, labels, guidance, scheduler=s.scheduler, steps=s.steps,
                             generator=gen, progress=bar.update)
        return data.quantize(x)

    def features(self, images: np.ndarray, labels: np.ndarray):
        """(features phi, other traits (N, 7): image traits + label_prob + label_correct)."""
        x = data.dequantize(images)
        phi, probs = feat.embed(self.classifier, x)
        own = np.clip(labels, 0, data.N_CLASSES - 1)
        label_prob = probs[np.arange(len(x)), own]
        correct = (probs.argmax(axis=1) == own).astype(np.float64)
        return phi, np.column_stack([feat.image_traits(x), label_prob, correct])

    other_traits = (*feat.IMAGE_TRAITS, "label_prob", "label_correct")

    @staticmethod
    def adapter_bytes(net) -> bytes:
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in model.adapter_state(net).items()})

    @staticmethod
    def load_adapter(blob: bytes) -> dict:
        from safetensors.torch import load

        return load(blob)

    @staticmethod
    def grid_png(images: np.ndarray, labels: np.ndarray, per_class: int = 10,
                 scale: int = 4) -> bytes:
        """A grid: one row per class, ``per_class`` images each, upscaled."""
        from PIL import Image

        side = data.SIDE
        rows = []
        for c in range(data.N_CLASSES):
            idx = np.flatnonzero(labels == c)[:per_class]
            tiles = [images[i].reshape(side, side) for i in idx]
            tiles += [np.zeros((side, side), np.uint8)] * (per_class - len(tiles))
            rows.append(np.concatenate([np.pad(t, 1) for t in tiles], axis=1))
        grid = np.concatenate(rows, axis=0)
        img = Image.fromarray(grid, mode="L").resize(
            (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        return buf.getvalue()
