"""Tests of qtrait.stats.array.

Exact agreement with direct formulas, and statistical checks (interval coverage, bias)
against simulation with fixed seeds.

Coverage tests use R = 2000 replicates. The replicates are laid out as the trait axis
(one column per replicate), so each check is one vectorised call. For a nominal 90%
interval the binomial Monte Carlo standard error of the coverage is
sqrt(0.9 * 0.1 / 2000) = 0.0067; "4 SE" bands are +/- 0.027.
"""

import numpy as np
import pytest
from scipy import special, stats

from qtrait.stats import diversity, moments, realized_h2, selection
from qtrait.stats.array import _var_interval

R = 2000
COVER_SE = np.sqrt(0.9 * 0.1 / R)  # binomial MC standard error of a 90% coverage
COVER_TOL = 4 * COVER_SE


def covered(lo, hi, truth):
    return float(np.mean((lo <= truth) & (truth <= hi)))


# --------------------------------------------------------------------------- moments


def test_moments_match_direct_computation():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, size=(7, 3))
    n = x.shape[0]
    m = moments(x, ci=0.9)

    assert m["n"].dtype.kind == "i" and np.all(m["n"] == n)
    np.testing.assert_allclose(m["mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m["var"], np.var(x, axis=0, ddof=1), rtol=1e-12)
    kurt = stats.kurtosis(x, axis=0, fisher=True, bias=False)
    np.testing.assert_allclose(m["exkurt"], kurt, rtol=1e-12)
    np.testing.assert_allclose(m["skew"], stats.skew(x, axis=0, bias=False), rtol=1e-12)

    lo, hi = stats.t.interval(0.9, n - 1, loc=x.mean(axis=0), scale=stats.sem(x, axis=0))
    np.testing.assert_allclose(m["mean_lo"], lo, rtol=1e-12)
    np.testing.assert_allclose(m["mean_hi"], hi, rtol=1e-12)

    ses = np.sqrt(24 * n * (n - 1) ** 2 / ((n - 3) * (n - 2) * (n + 3) * (n + 5)))
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(m["exkurt_lo"], kurt - z * ses, rtol=1e-12)
    np.testing.assert_allclose(m["exkurt_hi"], kurt + z * ses, rtol=1e-12)

    kappa = np.maximum(kurt, 0.0)  # the floor: never narrower than Gaussian
    nu = 2 / (2 / (n - 1) + kappa / n)
    s2 = np.var(x, axis=0, ddof=1)
    np.testing.assert_allclose(m["var_lo"], nu * s2 / stats.chi2.ppf(0.95, nu), rtol=1e-12)
    np.testing.assert_allclose(m["var_hi"], nu * s2 / stats.chi2.ppf(0.05, nu), rtol=1e-12)
    for key, value in m.items():
        assert value.shape == (3,), key


def test_var_interval_with_zero_kurtosis_is_exact_chisquare():
    s2, n = np.array([0.5, 2.0]), 25
    lo, hi = _var_interval(s2, n, np.zeros(2), alpha=0.1)
    np.testing.assert_allclose(lo, (n - 1) * s2 / stats.chi2.ppf(0.95, n - 1), rtol=1e-12)
    np.testing.assert_allclose(hi, (n - 1) * s2 / stats.chi2.ppf(0.05, n - 1), rtol=1e-12)


def test_moments_below_four_samples_has_no_kurtosis():
    x = np.array([[0.0, 1.0], [1.0, 3.0], [3.0, 2.0]])
    m = moments(x)
    assert np.all(np.isnan(m["exkurt"]))
    assert np.all(np.isnan(m["exkurt_lo"])) and np.all(np.isnan(m["exkurt_hi"]))
    # kappa = 0 when N < 4: the exact chi-square interval with N - 1 df
    s2 = np.var(x, axis=0, ddof=1)
    np.testing.assert_allclose(m["var_lo"], 2 * s2 / stats.chi2.ppf(0.95, 2), rtol=1e-12)
    np.testing.assert_allclose(m["var_hi"], 2 * s2 / stats.chi2.ppf(0.05, 2), rtol=1e-12)


def test_moments_affine_equivariance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    a, b = 3.0, -1.5
    m, ma = moments(x), moments(a * x + b)
    np.testing.assert_allclose(ma["mean"], a * m["mean"] + b, rtol=1e-12)
    np.testing.assert_allclose(ma["var"], a**2 * m["var"], rtol=1e-12)
    np.testing.assert_allclose(ma["var_hi"], a**2 * m["var_hi"], rtol=1e-10)
    np.testing.assert_allclose(ma["exkurt"], m["exkurt"], rtol=1e-10)


@pytest.mark.parametrize("n", [30, 200])
def test_moments_mean_interval_coverage_gaussian(n):
    rng = np.random.default_rng(100 + n)
    mu, sd = 2.0, 1.5
    m = moments(rng.normal(mu, sd, size=(n, R)))
    # the t interval is exact for Gaussian data: only MC error (4 SE)
    assert abs(covered(m["mean_lo"], m["mean_hi"], mu) - 0.9) < COVER_TOL


def test_moments_var_interval_coverage_gaussian():
    # N = 200: the estimated kurtosis (SE sqrt(24/N) = 0.35) changes nu only a little,
    # so coverage is 0.897 (measured with 40 000 replicates), i.e. nominal within MC
    # error; 4 SE band. (At small N the noisy kappa makes the interval under-cover:
    # about 0.88 at N = 30 and 0.85 at N = 10; see the moments docstring.)
    rng = np.random.default_rng(7)
    sd = 1.5
    m = moments(rng.normal(2.0, sd, size=(200, R)))
    assert abs(covered(m["var_lo"], m["var_hi"], sd**2) - 0.9) < COVER_TOL


def test_var_interval_kurtosis_adjustment_for_skewed_trait():
    # Gamma(shape 2): variance 2, excess kurtosis 6/2 = 3. At N = 200 the true spread of
    # s2 is sqrt((2/199 + 3/200) / (2/199)) = 1.58x the chi-square one, so the naive
    # chi-square 90% interval covers about 2*Phi(1.645/1.58) - 1 = 0.70.
    n, shape = 200, 2.0
    true_var = shape
    rng = np.random.default_rng(11)
    x = rng.gamma(shape, 1.0, size=(n, R))
    m = moments(x)
    adjusted = covered(m["var_lo"], m["var_hi"], true_var)
    s2 = m["var"]
    naive = covered(
        (n - 1) * s2 / stats.chi2.ppf(0.95, n - 1),
        (n - 1) * s2 / stats.chi2.ppf(0.05, n - 1),
        true_var,
    )
    assert naive < 0.75  # theory 0.70; 0.75 is > 7 MC SE (0.0067) above it
    assert abs(adjusted - 0.9) < abs(naive - 0.9)
    # The sample kurtosis of a heavy-tailed trait is biased low at N = 200, so the
    # adjusted interval still under-covers a little (0.869 measured with 20 000
    # replicates). Band: that value - 4 MC SE (0.027) up to 0.9 + 4 MC SE.
    assert 0.869 - COVER_TOL < adjusted < 0.9 + COVER_TOL


# ------------------------------------------------------------------------- diversity


def ar1_covariance(k, rho, scales):
    idx = np.arange(k)
    corr = rho ** np.abs(idx[:, None] - idx[None, :])
    return corr * np.outer(scales, scales)


def test_diversity_matches_direct_computation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 4)) @ np.triu(np.ones((4, 4)))
    n, k = x.shape
    d = diversity(x, ci=0.9)
    cov = np.cov(x, rowvar=False)
    z = stats.norm.ppf(0.95)
    assert d["n"] == n and d["k"] == k
    np.testing.assert_allclose(d["total_var"], np.trace(cov), rtol=1e-12)
    sd_tr = np.sqrt(2 * np.trace(cov @ cov) / (n - 1))
    np.testing.assert_allclose(d["total_var_hi"], np.trace(cov) + z * sd_tr, rtol=1e-12)
    raw = np.linalg.slogdet(cov)[1]
    np.testing.assert_allclose(d["logdet_raw"], raw, rtol=1e-12)
    half = (n - np.arange(1, k + 1)) / 2
    bias = special.digamma(half).sum() + k * np.log(2 / (n - 1))
    np.testing.assert_allclose(d["logdet"], raw - bias, rtol=1e-12)
    sd = np.sqrt(special.polygamma(1, half).sum())
    np.testing.assert_allclose(d["logdet_lo"], raw - bias - z * sd, rtol=1e-12)
    assert "logdet_note" not in d


def test_diversity_needs_more_samples_than_traits_for_logdet():
    x = np.random.default_rng(4).normal(size=(5, 5))
    d = diversity(x)
    assert d["logdet_raw"] == -np.inf
    assert np.isnan(d["logdet"]) and np.isnan(d["logdet_lo"]) and np.isnan(d["logdet_hi"])
    assert "N > K" in d["logdet_note"]
    assert np.isfinite(d["total_var"])


@pytest.mark.parametrize("n", [12, 1000])
def test_diversity_logdet_bias_correction(n):
    k, reps = 8, 2000
    sigma = ar1_covariance(k, 0.6, np.linspace(0.5, 2.0, k))
    # AR(1) correlation: det = (1 - rho^2)^(k - 1), times prod(scales^2)
    true_logdet = (k - 1) * np.log(1 - 0.6**2) + 2 * np.log(np.linspace(0.5, 2.0, k)).sum()
    np.testing.assert_allclose(np.linalg.slogdet(sigma)[1], true_logdet, rtol=1e-12)

    rng = np.random.default_rng(n)
    chol = np.linalg.cholesky(sigma)
    raw, corrected = np.empty(reps), np.empty(reps)
    for r in range(reps):
        d = diversity(rng.normal(size=(n, k)) @ chol.T)
        raw[r], corrected[r] = d["logdet_raw"], d["logdet"]

    se = corrected.std(ddof=1) / np.sqrt(reps)  # MC SE of the replicate mean
    assert abs(corrected.mean() - true_logdet) < 4 * se
    if n == 12:
        # expected raw bias sum psi((N-i)/2) + K log(2/(N-1)) = -4.7, about 125 SE
        assert abs(raw.mean() - true_logdet) > 10 * se
    # exact sd of log det of a Wishart; the sample sd of 2000 near-normal replicates
    # has relative SE 1/sqrt(2 R) = 1.6%, so 10% is > 6 SE
    sd_theory = np.sqrt(special.polygamma(1, (n - np.arange(1, k + 1)) / 2).sum())
    assert abs(corrected.std(ddof=1) / sd_theory - 1) < 0.10
    # the 90% interval is exact up to the normal approximation of log det
    half = stats.norm.ppf(0.95) * sd_theory
    lo, hi = corrected - half, corrected + half
    assert abs(covered(lo, hi, true_logdet) - 0.9) < COVER_TOL


# ------------------------------------------------------------------------- selection


def test_selection_matches_direct_computation():
    rng = np.random.default_rng(5)
    g, w = rng.normal(1.0, 2.0, size=(9, 2)), rng.normal(size=(6, 2))
    s = selection(g, w, ci=0.9)
    welch = stats.ttest_ind(g, w, axis=0, equal_var=False)
    ci = welch.confidence_interval(0.9)
    np.testing.assert_allclose(s["S"], g.mean(0) - w.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s["S_lo"], ci.low, rtol=1e-12)
    np.testing.assert_allclose(s["S_hi"], ci.high, rtol=1e-12)
    ratio = g.var(0, ddof=1) / w.var(0, ddof=1)
    np.testing.assert_allclose(s["var_ratio"], ratio, rtol=1e-12)
    np.testing.assert_allclose(s["var_ratio_lo"] * s["var_ratio_hi"], ratio**2, rtol=1e-12)


def test_selection_welch_coverage():
    # unequal sizes and variances; Welch's df approximation is accurate to well within
    # the MC error here, so 4 SE
    rng = np.random.default_rng(21)
    g = rng.normal(1.0, 2.0, size=(30, R))
    w = rng.normal(0.0, 1.0, size=(15, R))
    s = selection(g, w)
    assert abs(covered(s["S_lo"], s["S_hi"], 1.0) - 0.9) < COVER_TOL


def test_selection_var_ratio_coverage_gaussian():
    # delta method on the log ratio with estimated kurtosis: near nominal at these
    # sizes (under-covers at N of a few tens, like the var interval of `moments`); 4 SE
    rng = np.random.default_rng(22)
    g = rng.normal(1.0, 2.0, size=(200, R))
    w = rng.normal(0.0, 1.0, size=(100, R))
    s = selection(g, w)
    assert abs(covered(s["var_ratio_lo"], s["var_ratio_hi"], 4.0) - 0.9) < COVER_TOL


# ----------------------------------------------------------------------- realized_h2


def test_realized_h2_matches_direct_formula_and_skips_missing():
    parent = np.array([[1.0, 2.0, np.nan], [2.0, np.nan, np.nan], [3.0, 1.0, 0.5]])
    nxt = np.array([[0.9, 1.1, 1.0], [1.3, 2.0, 1.0], [2.4, 0.6, np.nan]])
    r = realized_h2(parent, nxt, "base", base_mean=np.zeros(3))
    assert r["method"] == "regression_from_base"
    np.testing.assert_array_equal(r["n_pairs"], [3, 2, 0])
    # trait 0: least squares through the origin
    x, y = parent[:, 0], nxt[:, 0]
    slope = x @ y / (x @ x)
    se = np.sqrt(np.sum((y - slope * x) ** 2) / 2 / (x @ x))
    np.testing.assert_allclose(r["h2"][0], slope, rtol=1e-12)
    np.testing.assert_allclose(r["h2_hi"][0], slope + stats.t.ppf(0.95, 2) * se, rtol=1e-12)
    assert np.isnan(r["h2"][2]) and np.isnan(r["h2_lo"][2])

    # a single usable pair: the ratio, with no interval
    one = realized_h2(parent[:1, :1], nxt[:1, :1], "base", base_mean=[0.5])
    np.testing.assert_allclose(one["h2"], [(0.9 - 0.5) / (1.0 - 0.5)], rtol=1e-12)
    assert one["n_pairs"][0] == 1 and np.isnan(one["h2_lo"][0]) and np.isnan(one["h2_hi"][0])


def simulate_means(
    anchor, h2, generations, reps, rng, m0, base=0.5, push=1.0, sd_select=0.3, sd_learn=0.1
):
    """Trajectories of (parent, learned_next, learned) means, one column per replicate.

    Selection pushes the guided mean by ``push`` (plus noise) away from the learned
    mean; inheritance regresses toward the anchor with heritability h2 plus learning
    noise.
    """
    m = np.full(reps, float(m0))
    parents, nexts, learned = [], [], []
    for _ in range(generations):
        mu = m + push + sd_select * rng.normal(size=reps)
        a = base if anchor == "base" else m
        m_next = a + h2 * (mu - a) + sd_learn * rng.normal(size=reps)
        parents.append(mu)
        nexts.append(m_next)
        learned.append(m)
        m = m_next
    return np.array(parents), np.array(nexts), np.array(learned)


@pytest.mark.parametrize("anchor", ["base", "previous"])
def test_realized_h2_recovery(anchor):
    h2, base = 0.7, 0.5
    rng = np.random.default_rng(31 if anchor == "base" else 32)
    parent, nxt, learned = simulate_means(anchor, h2, 30, R, rng, m0=base, base=base)
    r = realized_h2(parent, nxt, anchor, base_mean=np.full(R, base), learned_mean=learned)
    methods = {"base": "regression_from_base", "previous": "response_over_selection"}
    assert r["method"] == methods[anchor]
    assert np.all(r["n_pairs"] == 30)
    # unbiased: replicate mean within 4 MC SE of the truth
    assert abs(r["h2"].mean() - h2) < 4 * r["h2"].std(ddof=1) / np.sqrt(R)
    # close to the truth in each chain: 99% of chains within 4 of their own SEs
    se = (r["h2_hi"] - r["h2_lo"]) / (2 * stats.t.ppf(0.95, 29))
    assert np.mean(np.abs(r["h2"] - h2) < 4 * se) > 0.99
    # 90% interval coverage: exact for "previous" (regressor independent of the errors);
    # for "base" the regressor is a lagged response, but the error is tiny with 30
    # generations (0.91 measured); 4 SE for both
    assert abs(covered(r["h2_lo"], r["h2_hi"], h2) - 0.9) < COVER_TOL


@pytest.mark.parametrize("h2", [0.3, 0.7, 0.95])
def test_response_over_selection_fails_at_equilibrium_with_base_anchor(h2):
    # Chains with anchor = base started at their equilibrium mean
    # m* = m_b + h2 push / (1 - h2): the learned mean no longer moves, so the response
    # R_t = m_{t+1} - m_t is pure noise while selection S_t = mu_t - m_t stays ~ push.
    base, push, sd_select = 0.5, 1.0, 0.1
    reps = 500
    rng = np.random.default_rng(int(100 * h2))
    m_star = base + h2 * push / (1 - h2)
    parent, nxt, learned = simulate_means(
        "base", h2, 20, reps, rng, m0=m_star, base=base, push=push, sd_select=sd_select
    )
    naive = realized_h2(parent, nxt, "previous", learned_mean=learned)["h2"]
    right = realized_h2(parent, nxt, "base", base_mean=np.full(reps, base))["h2"]
    # E[R S] / E[S^2] = h2 sd_select^2 / (push^2 + sd_select^2) <= 0.01 here; the
    # per-chain sd of the naive slope is 0.006-0.02 (measured), so its replicate mean
    # has MC SE < 0.001 and the 0.05 bound is far outside MC error
    assert abs(naive.mean()) < 0.05
    assert abs(right.mean() - h2) < 4 * right.std(ddof=1) / np.sqrt(reps)
    assert abs(right.mean() - h2) < 0.02


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("func", [moments, diversity])
def test_single_sample_raises(func):
    with pytest.raises(ValueError, match="at least 2 samples"):
        func(np.ones((1, 3)))


def test_selection_single_sample_raises():
    with pytest.raises(ValueError, match="w1 needs at least 2 samples"):
        selection(np.ones((5, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="same number of traits"):
        selection(np.ones((5, 2)), np.ones((5, 3)))


def test_bad_ci_and_shape_raise():
    with pytest.raises(ValueError, match="ci must be"):
        moments(np.ones((5, 2)), ci=1.0)
    with pytest.raises(ValueError, match="shape"):
        moments(np.ones((5, 2, 2)))


def test_realized_h2_argument_errors():
    a = np.ones((4, 2))
    with pytest.raises(ValueError, match="unknown anchor"):
        realized_h2(a, a, "grandparent", base_mean=np.zeros(2))
    with pytest.raises(ValueError, match="needs base_mean"):
        realized_h2(a, a, "base")
    with pytest.raises(ValueError, match="needs learned_mean"):
        realized_h2(a, a, "previous")
    with pytest.raises(ValueError, match="base_mean must have shape"):
        realized_h2(a, a, "base", base_mean=np.zeros(3))
