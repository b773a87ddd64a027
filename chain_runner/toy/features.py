"""Traits of digit images: a small CNN's features (the role CLIP plays on GPU runs), its
class probabilities, and image statistics."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import N_CLASSES, SIDE

#: Image traits, in the order of :func:`image_traits`.
IMAGE_TRAITS = ("mean_intensity", "contrast", "saturation", "hf_energy", "sharpness")


class DigitNet(nn.Module):
    """conv16 -> conv32 -> pool -> fc64 (the features) -> fc10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 64)
        self.head = nn.Linear(64, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x.view(-1, 1, SIDE, SIDE)
        h = nn.functional.relu(self.conv1(h))
        h = nn.functional.max_pool2d(nn.functional.relu(self.conv2(h)), 2)
        return nn.functional.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(x: np.ndarray, y: np.ndarray, steps: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (128,), generator=gen)
        # light noise augmentation: generated images are not perfectly clean
        xb = (xt[idx] + 0.1 * torch.randn(xt[idx].shape, generator=gen)).clamp(-1, 1)
        loss = nn.functional.cross_entropy(net(xb), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.state_dict()


@torch.no_grad()
def embed(net: DigitNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 64), class probabilities (N, 10))."""
    net.eval()
    xt = torch.as_tensor(x)
    f = net.features(xt)
    return f.numpy().astype(np.float64), torch.softmax(net.head(f), 1).numpy()


def image_traits(x: np.ndarray) -> np.ndarray:
    """Per-image statistics of (N, 64) images in [-1, 1]:

    - mean_intensity: mean pixel value, rescaled to [0, 1];
    - contrast: standard deviation of the pixels (in [0, 1] units);
    - saturation: fraction of pixels at the extremes (|x| > 0.9);
    - hf_energy: fraction of the (mean-removed) spectral energy at spatial frequencies of
      radius > 2 cycles per image (of at most 4 sqrt 2);
    - sharpness: variance of the discrete Laplacian over the interior pixels.
    """
    img = ((x.reshape(-1, SIDE, SIDE) + 1.0) / 2.0).astype(np.float64)
    mean = img.mean(axis=(1, 2))
    contrast = img.std(axis=(1, 2))
    saturation = (np.abs(x) > 0.9).mean(axis=1)
    centred = img - mean[:, None, None]
    power = np.abs(np.fft.fft2(centred)) ** 2
    f = np.fft.fftfreq(SIDE) * SIDE
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    total = power.sum(axis=(1, 2))
    hf = np.where(total > 0, power[:, radius > 2].sum(axis=1) / np.where(total > 0, total, 1),
                  0.0)
    lap = (img[:, :-2, 1:-1] + img[:, 2:, 1:-1] + img[:, 1:-1, :-2] + img[:, 1:-1, 2:]
           - 4 * img[:, 1:-1, 1:-1])
    sharpness = lap.reshape(len(img), -1).var(axis=1)
    return np.column_stack([mean, contrast, saturation, hf, sharpness])
