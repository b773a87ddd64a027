"""Per-generation sample-quality metrics against generation 0, on image features.

- ``frechet_distance``: ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2}) of the
  Gaussians fitted to the two feature sets (FID when the features are Inception pool3);
- ``precision``, ``recall``, ``density``, ``coverage``: Naeem et al. (2020) with k nearest
  neighbours in Euclidean feature distance, the reference (generation 0) as "real";
- ``vendi``: Vendi score (Friedman & Dieng 2023) of the cosine-similarity kernel,
  exp(-sum lambda_i log lambda_i) over the eigenvalues of K / n (1 = all images alike,
  n = all orthogonal);
- ``clip_score``: mean per-image CLIP score; its variant (formula and backbone) is named.
"""

from __future__ import annotations

import numpy as np


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.maximum(lam, 0.0))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance of the Gaussians fitted to ``a`` and ``b`` (rows = samples).

    tr (S_a S_b)^{1/2} is computed as tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}, a symmetric PSD
    square root: stable when the covariances are singular (fewer images than features).
    """
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    h = _psd_sqrt(s1)
    tr_covmean = np.sqrt(np.maximum(np.linalg.eigvalsh(h @ s2 @ h), 0.0)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    # column 0 of the sorted row is the point itself (distance 0)
    return np.sort(d, axis=1)[:, min(k, len(x) - 1)]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    real_r = _kth_radius(real, k)
    fake_r = _kth_radius(fake, k)
    d = _pairwise(real, fake)                      # (n_real, n_fake)
    inside = d < real_r[:, None]
    return {"precision": float(inside.any(axis=0).mean()),
            "recall": float((d < fake_r[None, :]).any(axis=1).mean()),
            "density": float(inside.sum(axis=0).mean() / k),
            "coverage": float((d.min(axis=1) < real_r).mean())}


def vendi(x: np.ndarray) -> float:
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    lam = np.linalg.eigvalsh(u @ u.T / len(u))
    lam = lam[lam > 1e-12]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def generation_metrics(reference: np.ndarray, features: np.ndarray, *, k: int = 5,
                       extractor: str = "", clip_scores: np.ndarray | None = None,
                       clip_variant: str = "", reference_inception: np.ndarray | None = None,
                       inception: np.ndarray | None = None) -> dict:
    """The metrics of one generation's guided set (``features``) against generation 0."""
    out = {"reference": "generation 0, guided set", "feature_extractor": extractor,
           "n_reference": int(len(reference)), "n": int(len(features)), "prdc_k": k,
           "frechet_distance": frechet_distance(reference, features),
           **prdc(reference, features, k), "vendi": vendi(features)}
    if clip_scores is not None:
        out["clip_score"] = float(np.mean(clip_scores))
        out["clip_score_variant"] = clip_variant
    if inception is not None and reference_inception is not None:
        out["inception_fid"] = frechet_distance(reference_inception, inception)
    return out
