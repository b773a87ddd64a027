"""The toy diffusion model: a residual MLP denoiser, trained and sampled with diffusers'
schedulers, finetuned with LoRA adapters through peft.

v-prediction (``DDPMScheduler.get_velocity``) keeps the few-step DDIM sampler stable on
this small model; epsilon prediction saturated the images at high noise levels.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from .data import N_CLASSES, NULL_LABEL

TARGET_MODULES = ["fc_in", "fc1", "fc2", "fc3", "fc_out"]  # LoRA on the main path
NUM_TRAIN_TIMESTEPS = 1000
#: Bump when the denoiser or its training changes: cached base models are keyed by it.
ARCHITECTURE_VERSION = 2
CLIP_SAMPLE = False


class Denoiser(nn.Module):
    """v-prediction network on the 64 pixels, conditioned on time and class label
    (label ``NULL_LABEL`` = the empty prompt). The time and label embedding is added to
    every residual block, so conditioning reaches all depths."""

    def __init__(self, hidden: int = 256, dim: int = 64, time_dim: int = 32):
        super().__init__()
        self.label = nn.Embedding(N_CLASSES + 1, hidden)
        self.fc_time = nn.Linear(time_dim, hidden)
        self.fc_in = nn.Linear(dim, hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, hidden)
        self.emb1 = nn.Linear(hidden, hidden)
        self.emb2 = nn.Linear(hidden, hidden)
        self.emb3 = nn.Linear(hidden, hidden)
        self.fc_out = nn.Linear(hidden, dim)
        half = time_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(1000.0) * torch.arange(half) / half),
                             persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        a = t.float()[:, None] * self.freqs[None]
        emb = nn.functional.silu(self.fc_time(torch.cat([a.sin(), a.cos()], dim=1))
                                 + self.label(label))
        h = nn.functional.silu(self.fc_in(x) + emb)
        for layer, proj in ((self.fc1, self.emb1), (self.fc2, self.emb2),
                            (self.fc3, self.emb3)):
            h = h + nn.functional.silu(layer(h) + proj(emb))
        return self.fc_out(h)


def noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="v_prediction",
                         clip_sample=False)


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                batch_size: int, lr: float, label_dropout: float, generator: torch.Generator,
                progress: Callable | None = None) -> list[float]:
    """Denoising training of ``model``'s trainable parameters; labels are replaced by the
    null label with probability ``label_dropout`` (condition drop)."""
    sched = noise_scheduler()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
        x0, lab = x[idx], y[idx].clone()
        drop = torch.rand(len(idx), generator=generator) < label_dropout
        lab[drop] = NULL_LABEL
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(idx),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        target = sched.get_velocity(x0, noise, t)
        loss = ((model(sched.add_noise(x0, noise, t), t, lab) - target) ** 2).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
        if progress is not None:
            progress(1)
    model.eval()
    return losses


def make_sampler(scheduler: str, steps: int):
    from diffusers import DDIMScheduler, DDPMScheduler

    common = dict(num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="v_prediction",
                  clip_sample=CLIP_SAMPLE)
    sched = DDIMScheduler(**common) if scheduler == "ddim" else DDPMScheduler(**common)
    sched.set_timesteps(steps)
    return sched


@torch.no_grad()
def sample(model: nn.Module, labels: np.ndarray, guidance: np.ndarray, *, scheduler: str,
           steps: int, generator: torch.Generator, batch: int = 2048,
           progress: Callable | None = None) -> np.ndarray:
    """Classifier-free guided sampling: v = v_u + w_s (v_c - v_u) at step s.

    ``guidance`` holds one scale per sampling step (a constant or decaying schedule).
    Labels equal to ``NULL_LABEL`` sample the unconditional model. Returns (N, 64) in
    [-1, 1].
    """
    model.eval()
    out = []
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    for start in range(0, len(labels_t), batch):
        lab = labels_t[start:start + batch]
        n = len(lab)
        sched = make_sampler(scheduler, steps)
        x = torch.randn((n, 64), generator=generator)
        null = torch.full_like(lab, NULL_LABEL)
        for i, t in enumerate(sched.timesteps):
            tt = torch.full((n,), int(t), dtype=torch.long)
            v = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([lab, null]))
            v_c, v_u = v.chunk(2)
            w = float(guidance[i])
            v = v_u + w * (v_c - v_u)
            kwargs = {"generator": generator} if scheduler == "ddpm" else {}
            x = sched.step(v, t, x, **kwargs).prev_sample
            if progress is not None:
                progress(1)
        out.append(x.clamp(-1.0, 1.0).numpy())
    return np.concatenate(out).astype(np.float32)


def lora_config(rank: int, alpha: float):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGET_MODULES,
                      lora_dropout=0.0, bias="none")


def with_adapter(base_state: dict, hidden: int, rank: int, alpha: float,
                 adapter_state: dict | None = None):
    """A fresh base model with a LoRA adapter (loaded from ``adapter_state`` if given)."""
    from peft import get_peft_model, set_peft_model_state_dict

    base = Denoiser(hidden)
    base.load_state_dict(base_state)
    model = get_peft_model(base, lora_config(rank, alpha))
    if adapter_state is not None:
        set_peft_model_state_dict(model, adapter_state)
    return model


def adapter_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
