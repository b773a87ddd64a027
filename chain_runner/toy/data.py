"""The real data: scikit-learn's 1,797 handwritten 8x8 digits (ships offline).

Even-indexed images "pretrain" the base model and the feature network; odd-indexed images
are the finetuning set D_0 of generation 0. Pixels are scaled from 0..16 to [-1, 1].
"""

from __future__ import annotations

import numpy as np

N_CLASSES = 10
NULL_LABEL = N_CLASSES      # the empty prompt (unconditional branch)
SIDE = 8


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` = ``pretrain`` (even indices) or ``finetune`` (odd): (images (N, 64) in
    [-1, 1] float32, labels (N,) int64)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.reshape(-1, SIDE * SIDE) / 8.0 - 1.0).astype(np.float32)
    y = d.target.astype(np.int64)
    sl = slice(0, None, 2) if split == "pretrain" else slice(1, None, 2)
    if split not in ("pretrain", "finetune"):
        raise ValueError(f"split must be pretrain or finetune, got {split!r}")
    return x[sl], y[sl]


def quantize(x: np.ndarray) -> np.ndarray:
    """Images as a real pipeline saves them: clipped to [-1, 1] and stored in 8 bits."""
    return np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
