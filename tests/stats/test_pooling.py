"""Hierarchical pooling of per-cell effects (qtrait.stats.pooling): the closed-form
integration against brute force, calibration under no effect, a lucky trait that must not
decide the verdict, and recovery of a real effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qtrait.stats.pooling import GRID, pool_effects


def brute_force(d, se, groups, tau_max):
    """The same posterior by direct multivariate-normal densities on a grid of
    (mu, tau_group, tau_cell): no Gaussian integration by hand."""
    labels = sorted(set(groups))
    Z = np.array([[g == lab for lab in labels] for g in groups], float)
    taus = np.linspace(0, tau_max, GRID)
    mus = np.linspace(-4, 4, 801)
    logp = np.empty((len(taus), len(taus), len(mus)))
    for a, tg in enumerate(taus):
        for b, tc in enumerate(taus):
            cov = np.diag(se ** 2 + tc ** 2) + tg ** 2 * Z @ Z.T
            resid = d[None, :] - mus[:, None]
            logp[a, b] = stats.multivariate_normal(np.zeros(len(d)), cov).logpdf(resid)
    w = np.exp(logp - logp.max()).sum((0, 1))
    w /= w.sum()
    mean = float(w @ mus)
    return mean, float(np.sqrt(w @ (mus - mean) ** 2)), float(w[mus > 0].sum())


def test_closed_form_matches_brute_force():
    rng = np.random.default_rng(3)
    groups = ["a", "a", "b", "b", "b", "c", "c"]
    d = rng.normal(0.3, 0.5, 7)
    se = rng.uniform(0.1, 0.4, 7)
    res = pool_effects(d, se, groups, tau_max=2.0)
    mean, sd, p = brute_force(d, se, groups, 2.0)
    # the brute force's mu grid has step 0.01: agreement to that order
    assert res.mean == pytest.approx(mean, abs=0.01)
    assert res.sd == pytest.approx(sd, abs=0.01)
    assert res.p_positive == pytest.approx(p, abs=0.01)


def simulate(rng, mu, n_groups=9, per_group=10, tau_group=0.3, tau_cell=0.2,
             lucky=None):
    theta = mu + tau_group * rng.standard_normal(n_groups)
    if lucky is not None:
        theta[0] = lucky
    groups = np.repeat([f"t{k}" for k in range(n_groups)], per_group)
    se = rng.uniform(0.05, 0.5, len(groups))
    d = theta[np.repeat(np.arange(n_groups), per_group)] \
        + tau_cell * rng.standard_normal(len(groups)) + se * rng.standard_normal(len(groups))
    return d, se, groups


def test_no_effect_is_calibrated():
    """mu = 0: P(mu > 0) is about uniform, so 'yes' at 0.95 about 5% of the time."""
    rng = np.random.default_rng(0)
    ps = np.array([pool_effects(*simulate(rng, 0.0)).p_positive for _ in range(400)])
    # 400 replicates: the KS test has power against a visibly non-uniform P, and the
    # binomial 99.9% upper bound for a 5% rate at n = 400 is 35 (8.75%)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert np.sum(ps >= 0.95) <= 35 and np.sum(ps <= 0.05) <= 35


def test_a_lucky_trait_does_not_decide():
    """Eight traits without effect and one with a large one: the plain average of the
    cells is confidently positive, the hierarchical verdict is not, and the per-trait
    rows single out the lucky trait."""
    rng = np.random.default_rng(1)
    yes_pooled, yes_naive = 0, 0
    for _ in range(40):
        d, se, groups = simulate(rng, 0.0, tau_group=0.05, lucky=3.0)
        res = pool_effects(d, se, groups)
        yes_pooled += res.p_positive >= 0.95
        naive_z = d.mean() / np.sqrt(np.sum(se ** 2)) * len(d)
        yes_naive += stats.norm.cdf(naive_z) >= 0.95
        assert res.group_p_positive[res.groups.index("t0")] > 0.99
        assert res.tau_group > 0.5
    # the naive average says 'yes' every time; pooling rarely (binomial: 40 draws,
    # a 5% rate gives 6 or fewer with probability 0.99)
    assert yes_naive == 40
    assert yes_pooled <= 6


def test_recovers_a_real_effect():
    rng = np.random.default_rng(2)
    res = [pool_effects(*simulate(rng, 0.5)) for _ in range(40)]
    # mu = 0.5 against tau_group 0.3 over 9 traits: the posterior sd of mu is about 0.1,
    # so P(mu > 0) >= 0.95 nearly always, and the 90% interval covers 0.5 about 90%
    assert np.mean([r.p_positive >= 0.95 for r in res]) >= 0.9
    cover = np.mean([abs(r.mean - 0.5) <= 1.645 * r.sd for r in res])
    assert cover >= 0.75


def test_few_groups_drop_the_group_level():
    res = pool_effects([0.1, 0.2, 0.3, 0.4], [0.1] * 4, ["a", "a", "b", "b"])
    assert not res.group_level and res.tau_group == 0.0
    with pytest.raises(ValueError, match="no cell"):
        pool_effects([np.nan], [0.1], ["a"])


def test_full_covariance_path_matches_the_closed_form():
    """Independent errors given as a diagonal covariance: the mixed-model-equations path
    gives the closed form's answer (same model, same grid) to rounding."""
    rng = np.random.default_rng(4)
    d, se, groups = simulate(rng, 0.2)
    a = pool_effects(d, se, groups)
    b = pool_effects(d, None, groups, cov=np.diag(se ** 2))
    for x, y in ((a.mean, b.mean), (a.sd, b.sd), (a.p_positive, b.p_positive),
                 (a.tau_group, b.tau_group), (a.tau_cell, b.tau_cell)):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(a.group_mean, b.group_mean, atol=1e-12)
    np.testing.assert_allclose(a.group_sd, b.group_sd, atol=1e-12)


def test_correlated_errors_need_their_covariance():
    """Every cell's error shares a common part (as effects read off one posterior share
    its population parameters). Given the covariance, P(mu > 0) stays calibrated under
    no effect; treated as independent, it says 'yes' far too often."""
    rng = np.random.default_rng(5)
    n_groups, per, s, c = 9, 10, 0.1, 0.3
    n = n_groups * per
    groups = np.repeat([f"t{k}" for k in range(n_groups)], per)
    cov = s ** 2 * np.eye(n) + c ** 2 * np.ones((n, n))
    L = np.linalg.cholesky(cov)
    p_full, p_diag = [], []
    for _ in range(200):
        theta = 0.1 * rng.standard_normal(n_groups)
        d = theta[np.repeat(np.arange(n_groups), per)] + L @ rng.standard_normal(n)
        p_full.append(pool_effects(d, None, groups, cov=cov).p_positive)
        p_diag.append(pool_effects(d, np.sqrt(np.diag(cov)), groups).p_positive)
    p_full, p_diag = np.array(p_full), np.array(p_diag)
    # 200 replicates: KS as in the independent case; the decisive rate of a calibrated P
    # is 10% (both tails at 0.05), binomial 99.9% upper bound 35 of 200
    assert stats.kstest(p_full, "uniform").pvalue > 0.01
    assert np.sum((p_full >= 0.95) | (p_full <= 0.05)) <= 35
    # independent errors understate mu's uncertainty by the common part: most decisive
    assert np.mean((p_diag >= 0.95) | (p_diag <= 0.05)) > 0.5
