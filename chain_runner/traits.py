"""The fixed trait basis (theory.md section 1), shared by every backend.

From generation 0: the top-K principal axes of the features of D_0 (unit vectors) and, per
concept, the axis from the base model's unconditional mean to the concept's mean (when the
unconditional probe exists). Traits are projections in units of their generation-0
standard deviation, so every trait starts with variance ~1.
"""

from __future__ import annotations

import numpy as np


def fit_basis(phi0: np.ndarray, labels0: np.ndarray, phi_uncond: np.ndarray | None,
              k: int) -> dict[str, np.ndarray]:
    center = phi0.mean(axis=0)
    d = phi0 - center
    _, _, vt = np.linalg.svd(d, full_matrices=False)
    axes = vt[:k].T                                      # (F, K), unit columns
    # a deterministic sign: the largest-magnitude loading of each axis is positive
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1, signs)
    pcs = d @ axes
    basis = {"center": center, "axes": axes, "pc_scale": pcs.std(axis=0, ddof=1)}
    if phi_uncond is not None:
        classes = np.unique(labels0)
        u = phi_uncond.mean(axis=0)
        concept_axes = np.stack([phi0[labels0 == c].mean(axis=0) - u for c in classes])
        concept_axes /= np.linalg.norm(concept_axes, axis=1, keepdims=True)
        own = np.einsum("nf,nf->n", d, concept_axes[np.searchsorted(classes, labels0)])
        basis.update(classes=classes, concept_axes=concept_axes,
                     concept_scale=np.array([own.std(ddof=1)]))
    return basis


def trait_names(basis: dict[str, np.ndarray]) -> list[str]:
    names = [f"pc_{i + 1}" for i in range(basis["axes"].shape[1])]
    if "concept_axes" in basis:
        names.append("concept_axis")
    return names


def project(phi: np.ndarray, labels: np.ndarray, basis: dict[str, np.ndarray]) -> np.ndarray:
    """Trait values (N, K [+1]) of features ``phi`` of images labelled ``labels``."""
    d = phi - basis["center"]
    cols = [d @ basis["axes"] / basis["pc_scale"]]
    if "concept_axes" in basis:
        idx = np.searchsorted(basis["classes"], labels)
        own = np.einsum("nf,nf->n", d, basis["concept_axes"][idx])
        cols.append((own / basis["concept_scale"][0])[:, None])
    return np.concatenate(cols, axis=1)
