"""Closed-form horizons and identities against forward iteration of the maps."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qtrait.theory.closed_forms import (adapt_uncond, breeder_equilibrium, breeder_variance,
                                        tilt, w_eff_condition_drop)
from qtrait.theory.generation import Generation0, MapParams, predict
from qtrait.theory.horizon import (Criteria, breeder_dilution_horizon, breeder_drift_horizon,
                                   breeder_variance_horizon, run_horizon,
                                   tilt_variance_horizon, trait_horizons)
from qtrait.theory.schedules import GuidanceSchedule


def iterate_first(step, x0, test, t_max=200):
    x = x0
    for t in range(1, t_max + 1):
        x = step(x)
        if test(x):
            return t
    return None


@pytest.mark.parametrize("lam,v_mut,q", list(itertools.product(
    [0.3, 0.7, 0.9, 0.99], [0.0, 0.05, 0.2, 0.6], [0.3, 0.5, 0.8])))
def test_breeder_variance_horizon_matches_iteration(lam, v_mut, q):
    v0 = 1.0
    got = breeder_variance_horizon(lam, v_mut, v0, q)
    want = iterate_first(lambda v: lam * v + v_mut, v0, lambda v: v < q * v0)
    assert got == want
    # and the closed-form trajectory equals the iteration
    v = v0
    for t in range(1, 30):
        v = lam * v + v_mut
        assert breeder_variance(lam, v_mut, v0, t) == pytest.approx(v, rel=1e-12)
    if lam < 1:
        assert breeder_equilibrium(lam, v_mut) == pytest.approx(v_mut / (1 - lam))


@pytest.mark.parametrize("gamma,gap", list(itertools.product(
    [-0.5, -0.2, -0.05, 0.02, 0.1, 0.4], [0.3, 1.0, 3.0])))
def test_breeder_drift_and_dilution_horizons_match_iteration(gamma, gap):
    c, mu0, v0, d, r = 0.0, gap, 1.0, 2.0, 0.5
    got = breeder_drift_horizon(gamma, mu0, c, v0, d)
    want = iterate_first(lambda m: c + (1 + gamma) * (m - c), mu0,
                         lambda m: abs(m - mu0) / np.sqrt(v0) > d)
    assert got == want
    got = breeder_dilution_horizon(gamma, r)
    want = iterate_first(lambda m: c + (1 + gamma) * (m - c), mu0,
                         lambda m: abs(m - c) < r * abs(mu0 - c))
    assert got == want


@pytest.mark.parametrize("w,v0,vu", [(1.5, 0.36, 1.0), (3.0, 0.36, 1.0), (7.5, 0.5, 0.8),
                                     (0.5, 0.36, 0.1), (0.5, 0.36, 1.0), (1.2, 1.5, 1.0),
                                     (2.0, 3.0, 1.0), (1.0, 0.4, 1.0)])
def test_tilt_horizon_matches_the_generation_map(w, v0, vu):
    """Frozen unconditional branch, h2 = 1: the closed form against iterating the tilt."""
    closed = tilt_variance_horizon(w, v0, vu, q=0.5)
    g0 = Generation0.of(mean0=1.0, var0=v0, m_base=1.0, v_base=v0, m_uncond=0.0, v_uncond=vu)
    traj = predict(g0, MapParams(model="tilt", h2=1.0, guidance=GuidanceSchedule("constant", w)),
                   60)
    var = traj["guided_var"]
    crossed = np.flatnonzero(var[1:] < 0.5 * v0)
    assert closed.t_star == (int(crossed[0]) + 1 if len(crossed) else None)
    invalid = np.flatnonzero(~traj["valid"])
    assert closed.invalid_at == (int(invalid[0]) if len(invalid) else None)
    if closed.behaviour == "growth":
        finite = var[np.isfinite(var)]
        assert np.all(np.diff(finite) > 0)   # the variance grows until the tilt breaks


def test_w_eff_identity_for_the_tilt():
    """Tilt with the natural-parameter-adapted unconditional branch == tilt with w_eff."""
    rng = np.random.default_rng(0)
    n = 1000
    m, mu_ = rng.normal(size=n), rng.normal(size=n)
    u, vu = rng.uniform(0.1, 1.0, n), rng.uniform(1.0, 3.0, n)
    w, rho = rng.uniform(0.2, 8.0, n), rng.uniform(0.0, 1.0, n)
    am, av = adapt_uncond(mu_, vu, m, u, rho)
    mean1, var1, ok1 = tilt(m, u, am, av, w)
    mean2, var2, ok2 = tilt(m, u, mu_, vu, w_eff_condition_drop(w, rho))
    assert np.array_equal(ok1, ok2) and ok1.any()
    np.testing.assert_allclose(mean1[ok1], mean2[ok1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var1[ok1], var2[ok1], rtol=1e-10)


def test_rho_one_removes_selection():
    am, av = adapt_uncond(-1.0, 2.0, 0.7, 0.4, 1.0)
    mean, var, _ = tilt(0.7, 0.4, am, av, 7.5)
    assert mean == pytest.approx(0.7) and var == pytest.approx(0.4)


def test_trait_and_run_horizons_from_trajectories():
    crit = Criteria(q=0.5, d=2.0, r=0.5, t_max=10)
    gens = np.arange(12)
    var = 0.8 ** gens                            # crosses 0.5 at t = 4 (0.8^4 = 0.41)
    mean = 0.3 * gens                            # drift > 2 at t = 7
    t, why = trait_horizons(mean, var, -5.0, crit)
    assert int(t) == 4 and int(why) == 0
    t, why = trait_horizons(mean, np.ones(12), -5.0, crit)
    assert int(t) == 7 and int(why) == 1
    t, _ = trait_horizons(np.zeros(12), np.ones(12), -5.0, crit)
    assert int(t) == -1                          # no collapse within T_max
    dil = 1.0 * 0.85 ** gens                     # distance to m_u = 0 halves at t = 5
    t, why = trait_horizons(dil, np.ones(12), 0.0, crit)
    assert int(t) == 5 and int(why) == 2
    # run level: the pooled variance ratio of two traits falls to (0 + 0.8) / 2 = 0.4 at
    # t = 3
    mean2 = np.zeros((12, 2))
    var2 = np.column_stack([np.where(gens >= 3, 0.0, 1.0), np.where(gens >= 3, 0.8, 1.0)])
    assert run_horizon(mean2, var2, crit) == (3, "variance")
    assert run_horizon(mean2, np.ones((12, 2)), crit) == (None, None)


@pytest.mark.parametrize("kw,msg", [({"q": 1.5}, "q must be"), ({"d": 0}, "d must be"),
                                    ({"r": 0}, "r must be"), ({"t_max": 0}, "t_max"),
                                    ({"alpha": 1.0}, "alpha must be")])
def test_criteria_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Criteria(**kw)


def test_run_horizon_pools_concepts_and_breaks_ties_by_reason_priority():
    crit = Criteria(t_max=10)
    # one concept of two losing its variance moves the pooled ratio to (0.1 + 1) / 2:
    # not a collapse of the run (the rule is not "the first concept to cross")
    var = np.ones((6, 2, 1))
    var[2:, 0, 0] = 0.1
    mean = np.zeros((6, 2, 1))
    assert run_horizon(mean, var, crit) == (None, None)
    var[3:, 1, 0] = 0.1                          # both from t = 3: pooled 0.1
    mean[3:, :, 0] = 5.0                         # and a drift of 5 SD (25 > d^2 = 4)
    assert run_horizon(mean, var, crit) == (3, "variance")
    assert run_horizon(mean, np.ones((6, 2, 1)), crit) == (3, "drift")


def test_drift_threshold_scales_with_the_number_of_traits():
    from scipy import stats

    crit = Criteria(d=2.0)
    assert crit.drift_threshold(1) == pytest.approx(4.0)          # d^2 at K = 1
    for k in (2, 9, 15):
        tau = crit.drift_threshold(k)
        # the mean has left the ellipsoid holding P(|Z| < 2) = 0.9545 of generation 0
        assert stats.chi2.cdf(tau, k) == pytest.approx(stats.norm.cdf(2) - stats.norm.cdf(-2))
        assert tau > crit.drift_threshold(k - 1)


def test_alpha_is_spent_over_generations_and_criteria():
    crit = Criteria(alpha=0.05)
    t = np.arange(1, 100001)
    # two criteria, each sum_t alpha / (2 t (t + 1)) = alpha / 2 over all generations
    assert 2 * crit.alpha_at(t).sum() == pytest.approx(0.05, rel=1e-4)
    assert crit.alpha_at(1) == pytest.approx(0.0125)


def test_the_drift_metric_floors_near_collinear_directions():
    from qtrait.theory.horizon import CORR_FLOOR, drift_metric

    corr = np.array([[1.0, 0.999], [0.999, 1.0]])          # eigenvalues 1.999 and 0.001
    m = drift_metric(corr)
    along_null = np.array([1.0, -1.0]) / np.sqrt(2)
    assert along_null @ m @ along_null == pytest.approx(1.0 / CORR_FLOOR)
    assert along_null @ np.linalg.inv(corr) @ along_null == pytest.approx(1000.0)
    well = np.array([[1.0, 0.3], [0.3, 1.0]])              # untouched above the floor
    np.testing.assert_allclose(drift_metric(well), np.linalg.inv(well))


def test_tilt_horizon_at_w0():
    assert tilt_variance_horizon(0.0, 1.0, 0.2).t_star == 1
    assert tilt_variance_horizon(0.0, 1.0, 2.0).t_star is None
    with pytest.raises(ValueError, match="w must be >= 0"):
        tilt_variance_horizon(-1.0, 1.0, 2.0)


def test_no_run_level_collapse_when_the_tilt_stops_existing():
    """Two traits whose conditional is wider than the unconditional: at w = 3 the tilt
    stops existing; the run level must not report a collapse from the NaN traits."""
    from qtrait.theory.generation import Generation0, MapParams
    from qtrait.theory.zeroshot import zero_shot

    g0 = Generation0.of(mean0=[0.0, 0.0], var0=[1.5, 1.5], m_base=[0.0, 0.0],
                        v_base=[1.5, 1.5], m_uncond=[0.5, -0.5], v_uncond=[1.0, 1.0])
    pred = zero_shot(g0, MapParams(model="tilt", h2=1.0,
                                   guidance=GuidanceSchedule("constant", 3.0)),
                     Criteria(t_max=10))
    assert pred.invalid_at is not None
    assert pred.run_t_star is None or pred.run_reason != "variance"


def test_ncx2_sf_matches_scipy_and_survives_its_overflow():
    from scipy import stats

    from qtrait.theory.horizon import ncx2_sf

    x = np.array([50.0, 90.0, 120.0, 200.0])
    np.testing.assert_allclose(ncx2_sf(x, 90, 20.0), stats.ncx2.sf(x, 90, 20.0), rtol=1e-10)
    # df = 1, nc = 600: scipy's kernel overflows far in the lower tail (the per-trait
    # drift of a 20-concept run), where the survival function is 1 to double precision
    assert np.all(ncx2_sf(np.array([0.18, 0.3, 22.1]), 1, 600.0) == 1.0)
    assert ncx2_sf(np.array([5000.0]), 1, 600.0)[0] == 0.0
    assert np.isnan(ncx2_sf(np.array([np.nan]), 9, 5.0)[0])
