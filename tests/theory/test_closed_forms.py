"""Closed forms of the generation map against direct numerical computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from qtrait.theory import inherit, tilt


def tilted_moments_by_quadrature(m, u, mu_, vu, w):
    """Mean and variance of p(x|c)^w p(x)^(1-w), normalised numerically."""
    def logp(x):
        return w * stats.norm.logpdf(x, m, np.sqrt(u)) + (1 - w) * stats.norm.logpdf(
            x, mu_, np.sqrt(vu))
    grid_lo, grid_hi = m - 30, m + 30
    z = integrate.quad(lambda x: np.exp(logp(x)), grid_lo, grid_hi, points=[m],
                       limit=200)[0]
    mean = integrate.quad(lambda x: x * np.exp(logp(x)) / z, grid_lo, grid_hi, points=[m],
                          limit=200)[0]
    var = integrate.quad(lambda x: (x - mean) ** 2 * np.exp(logp(x)) / z, grid_lo, grid_hi,
                         points=[m], limit=200)[0]
    return mean, var


@pytest.mark.parametrize("m,u,mu_,vu,w", [
    (1.0, 0.36, 0.0, 1.0, 0.5), (1.0, 0.36, 0.0, 1.0, 2.0), (1.0, 0.36, 0.0, 1.0, 7.5),
    (-0.3, 0.8, 0.5, 2.5, 3.0), (0.0, 1.5, 1.0, 1.0, 1.4),  # u > V_u, still valid
])
def test_tilt_matches_numerical_integration(m, u, mu_, vu, w):
    mean, var, valid = tilt(m, u, mu_, vu, w)
    assert valid
    qm, qv = tilted_moments_by_quadrature(m, u, mu_, vu, w)
    # quadrature of smooth Gaussian integrands is accurate to ~1e-10; 1e-7 is generous
    assert abs(mean - qm) < 1e-7 and abs(var - qv) < 1e-7


def test_tilt_table_of_theory_md():
    """The 'tilt (mean, var)' column of theory.md section 2, to two decimals."""
    w = np.array([0.5, 2.0, 3.0, 7.5])
    mean, var, valid = tilt(1.0, 0.36, 0.0, 1.0, w)
    assert valid.all()
    np.testing.assert_allclose(np.round(mean, 2), [0.74, 1.22, 1.32, 1.45])
    np.testing.assert_allclose(np.round(var, 2), [0.53, 0.22, 0.16, 0.07])


def test_tilt_invalid_case_is_reported_not_a_number():
    # u > V_u: invalid once w > u / (u - V_u) = 1.5 / 0.5 = 3
    mean, var, valid = tilt(0.0, 1.5, 1.0, 1.0, np.array([2.9, 3.0, 3.1]))
    assert valid.tolist() == [True, False, False]
    assert np.isnan(mean[1:]).all() and np.isnan(var[1:]).all()


def test_tilt_is_neutral_at_w1():
    mean, var, _ = tilt(0.4, 0.7, -1.0, 2.0, 1.0)
    assert mean == pytest.approx(0.4) and var == pytest.approx(0.7)


def test_inherit_limits():
    m, u = inherit(2.0, 0.5, 0.0, 1.0, 1.0)
    assert (m, u) == (2.0, 0.5)
    m, u = inherit(2.0, 0.5, 0.0, 1.0, 0.0)
    assert (m, u) == (0.0, 1.0)
    m, u = inherit(2.0, 0.5, 0.0, 1.0, 0.25)
    assert m == pytest.approx(0.5) and u == pytest.approx(0.875)
