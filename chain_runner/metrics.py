"""Per-generation sample-quality metrics against generation 0, on image features.

- ``frechet_distance``: ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2}) of the
  Gaussians fitted to the two feature sets (FID when the features are Inception pool3);
- ``precision``, ``recall``, ``density``, ``coverage``: Naeem et al. (2020) with k nearest
  neighbours in Euclidean feature distance, the reference (generation 0) as "real";
- ``vendi``: Vendi score (Friedman & Dieng 2023) of the cosine-similarity kernel,
  exp(-sum lambda_i log lambda_i) over the eigenvalues of K / n (1 = all images alike,
  n = all orthogonal);
- ``kid_mean``, ``kid_std``: kernel inception distance (Binkowski et al. 2018), the
  unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over random
  subsets of at most 1,000 images of each set (torch-fidelity's and clean-fid's
  convention: 100 subsets; unbiased at small N, unlike FID);
- ``clip_score``: mean per-image CLIP score; its variant (formula and backbone) is named.

Every function is checked against its reference implementation on shared features
(tests/chain/test_metrics_reference.py: pytorch-fid, prdc, vendi-score, torchmetrics).
Computed on the feature extractor's embeddings (``frechet_distance``, ``kid_*``) they are
*not* comparable with published FID/KID, which use the FID Inception's pool3 features
(``inception_fid``, ``inception_kid_*``: clean-fid's resizing, see features.py).
"""

from __future__ import annotations

import numpy as np

#: how the Inception features are made (features.InceptionExtractor)
INCEPTION_CONVENTION = ("clean-fid resizing (cleanfid.resize: PIL bicubic on float32 "
                        "channels to 299 x 299) and pytorch-fid's Inception pool3 "
                        "(pt_inception-2015-12-05 weights)")


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


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, sd) over ``subsets`` random subsets of the unbiased MMD^2 estimate with the
    kernel (x.y / d + 1)^3; each subset draws min(subset_size, len(a), len(b)) rows of
    each set without replacement."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return float("nan"), float("nan")
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                    + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def generation_metrics(reference: np.ndarray, features: np.ndarray, *, k: int = 5,
                       extractor: str = "", clip_scores: np.ndarray | None = None,
                       clip_variant: str = "", reference_inception: np.ndarray | None = None,
                       inception: np.ndarray | None = None) -> dict:
    """The metrics of one generation's guided set (``features``) against generation 0."""
    out = {"reference": "generation 0, guided set", "feature_extractor": extractor,
           "n_reference": int(len(reference)), "n": int(len(features)), "prdc_k": k,
           "frechet_distance": frechet_distance(reference, features),
           **dict(zip(("kid_mean", "kid_std"), kid(reference, features))),
           **prdc(reference, features, k), "vendi": vendi(features),
           "comparable": (f"not with published FID/KID (features of "
                          f"{extractor or 'the extractor'}; inception_* use the FID "
                          "Inception)")}
    if clip_scores is not None:
        out["clip_score"] = float(np.mean(clip_scores))
        out["clip_score_variant"] = clip_variant
    if inception is not None and reference_inception is not None:
        out["inception_fid"] = frechet_distance(reference_inception, inception)
        out["inception_kid_mean"], out["inception_kid_std"] = kid(reference_inception,
                                                                  inception)
        out["inception_convention"] = INCEPTION_CONVENTION
    return out
