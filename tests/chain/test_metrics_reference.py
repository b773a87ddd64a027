"""The hand-written sample-quality metrics (chain_runner.metrics) against the reference
packages, on the same features. The references are imported, not skipped: the test extra
installs them, and CI fails without them."""

from __future__ import annotations

import numpy as np
import pytest

from chain_runner import metrics as M


@pytest.fixture(scope="module")
def feats():
    # two sets of 300 x 64 features, shifted and rescaled: distances far from 0
    rng = np.random.default_rng(7)
    a = rng.normal(size=(300, 64))
    b = 0.8 * rng.normal(size=(300, 64)) + 0.3 + 0.1 * rng.normal(size=(1, 64))
    return a, b


# pytorch-fid calls scipy's sqrtm with an argument SciPy deprecates (not ours to fix)
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_frechet_distance_matches_pytorch_fid(feats):
    from pytorch_fid.fid_score import calculate_frechet_distance
    a, b = feats
    ref = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                     np.cov(b, rowvar=False))
    assert M.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_prdc_matches_the_prdc_package(feats):
    from prdc import compute_prdc
    a, b = feats
    ref = compute_prdc(real_features=a, fake_features=b, nearest_k=5)
    ours = M.prdc(a, b, k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), rel=1e-6, abs=1e-12), key


def test_vendi_matches_vendi_score(feats):
    from vendi_score.vendi import score_dual
    for x in feats:
        assert M.vendi(x) == pytest.approx(float(score_dual(x, normalize=True)), rel=1e-6)


def test_kid_matches_torchmetrics_poly_mmd(feats):
    import torch
    from torchmetrics.image.kid import poly_mmd
    a, b = feats
    # one subset holding every row: the plain unbiased MMD^2 that torchmetrics computes
    ours, sd = M.kid(a, b, subsets=1, subset_size=len(a))
    ref = float(poly_mmd(torch.as_tensor(a), torch.as_tensor(b), degree=3, gamma=None,
                         coef=1.0))
    assert ours == pytest.approx(ref, rel=1e-6) and sd == 0.0
    # unbiased: two draws of the same distribution give KID near 0 (within its noise),
    # where FID keeps a positive small-sample bias
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 200, 64))
    k_mean, k_sd = M.kid(x, y, subsets=50, subset_size=100)
    assert abs(k_mean) < 3 * k_sd + 1e-3
    assert M.frechet_distance(x, y) > 5 * abs(k_mean)
