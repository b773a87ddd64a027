"""The baselines and the scores of horizon forecasts (qtrait.baselines, qtrait.scoring):
closed forms on noise-free inputs, and the calibration of the censored scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qtrait.baselines import baseline_forecast, latent_paths
from qtrait.forecast import HorizonDistribution
from qtrait.scoring import censored_pmf, score_horizon
from qtrait.stats.collapse import CollapseStatistics
from qtrait.theory.horizon import Criteria

CRIT = Criteria(q=0.3, t_max=30)


def observed(R, n=1e6, C=2, K=2):
    """Observed statistics of generations 0..len(R)-1 with negligible sampling error
    (n images per concept) and no drift."""
    G = len(R)
    R = np.asarray(R, dtype=float)
    nn = np.full((G, C), n)
    n_eff = 1.0 / (2.0 / n)
    return CollapseStatistics(
        traits=[f"t{k}" for k in range(K)], concepts=[str(c) for c in range(C)],
        generations=list(range(G)), n=nn, R=R, se_log_r=np.where(np.arange(G) > 0, 1e-4, 0),
        D2=np.zeros(G), X=np.zeros(G), n_eff_total=np.full(G, C * n_eff),
        R_c=np.repeat(R[:, None], C, 1), u=np.full((G, C), 1.0), b=np.full((G, C), 1.0),
        precision=np.broadcast_to(np.eye(K), (C, K, K)).copy(),
        correlation=np.broadcast_to(np.eye(K), (C, K, K)).copy(), bias=np.ones((C, K)))


@pytest.mark.parametrize("method,R,expected", [
    # a line through 1, 0.9, 0.8 reaches 0.3 at t = 7 and is below it from t = 8
    ("linear", [1.0, 0.9, 0.8], 8),
    # 0.8^t < 0.3 from t = 6 (0.8^5 = 0.328, 0.8^6 = 0.262)
    ("exponential", [1.0, 0.8, 0.64], 6),
    # R stays at 0.64: never
    ("persistence", [1.0, 0.8, 0.64], None),
])
def test_baselines_reduce_to_their_closed_forms_without_noise(method, R, expected):
    dist, _ = baseline_forecast(method, observed(R), CRIT, np.random.default_rng(0), S=200)
    assert dist.to_dict()["median"] == expected
    assert dist.to_dict()["lo90"] == expected       # no noise: a point mass


def test_the_refit_baseline_is_gaussian_refitting():
    """Suresh et al.: E[V_t] = ((n-1)/n)^t V_0 for the maximum-likelihood refit; from
    generation K-1 = 2 at R = 0.64 with n = 10 images per concept: 0.64 * 0.9^s < 0.3
    from s = 8 (0.9^7 = 0.478, 0.9^8 = 0.430), so t = 10."""
    obs = observed([1.0, 0.8, 0.64], n=10)
    paths = latent_paths("refit", obs, 12, np.random.default_rng(1), S=50)
    steps = np.arange(1, 11)
    np.testing.assert_allclose(np.median(paths["R"], axis=0), 0.64 * 0.9 ** steps,
                               rtol=0.05)   # R_{K-1} resampled with se 1e-4: tight
    quiet = observed([1.0, 0.8, 0.64])       # the same rate, but no noise in detection
    quiet.n[:] = 10
    quiet_paths = latent_paths("refit", quiet, 30, np.random.default_rng(2), S=20)
    first = np.argmax(quiet_paths["R"] < 0.3, axis=1) + 3
    assert set(first) == {10}


def test_scores_of_certain_and_of_wrong_point_forecasts():
    rng = np.random.default_rng(3)
    right = HorizonDistribution(np.full(100, 5), 20)
    s = score_horizon(right, 5, 15, rng)
    assert s["rps"] == 0.0 and s["log_score"] == 0.0 and s["abs_error"] == 0
    off = HorizonDistribution(np.full(100, 7), 20)
    s = score_horizon(off, 5, 15, rng)
    assert s["rps"] == pytest.approx(2.0) and s["abs_error"] == 2 and not s["covered"]
    # censored at 15: a forecast of "beyond 15" is right whether it says 18 or none
    for t in (18, 21):
        s = score_horizon(HorizonDistribution(np.full(100, t), 20), None, 15, rng)
        assert s["censored"] and s["rps"] == 0.0 and s["abs_error"] == 0
    pmf = censored_pmf(HorizonDistribution(np.array([3, 16, 18, 21]), 20), 15)
    assert len(pmf) == 16 and pmf[2] == 0.25 and pmf[-1] == 0.75


def test_randomized_pit_is_uniform_for_a_true_forecast_under_censoring():
    """Outcomes drawn from the forecast itself (a geometric-like horizon law), censored at
    L = 8: the randomized PIT on the censored categories is uniform, and 90% of the
    forecasts cover (the integer interval covers more)."""
    rng = np.random.default_rng(4)
    t = np.minimum(rng.geometric(0.15, 4000), 21)       # horizons, 21 = none by 20
    dist = HorizonDistribution(t, 20)
    pits, covered, covered_int = [], [], []
    for _ in range(600):
        y = int(min(rng.geometric(0.15), 21))
        s = score_horizon(dist, y if y <= 8 else None, 8, rng)
        pits.append(s["pit"])
        covered.append(s["covered_random"])
        covered_int.append(s["covered"])
    # 600 forecasts: SE of a 0.9 share is 0.012; 0.86..0.94 is more than 3 SE
    assert 0.86 < np.mean(covered) < 0.94, np.mean(covered)
    assert np.mean(covered_int) >= np.mean(covered)
    assert stats.kstest(pits, "uniform").pvalue > 0.01
