"""Closed forms of the generation map for Gaussian traits (numpy only, vectorised).

See ``docs/theory.md`` for the derivations.
"""

from __future__ import annotations

import numpy as np


def tilt(m, u, m_uncond, v_uncond, w):
    """CFG as selection: the Gaussian tilt p(x|c)^w p(x)^(1-w).

    With learned conditional moments (m, u) and unconditional moments (m_u, V_u), the
    tilted density is Gaussian with precision ``w/u - (w-1)/V_u`` and mean
    ``m + (w-1) (V'/V_u) (m - m_u)``. It exists only while that precision is positive;
    where it is not (u > V_u and w > u/(u - V_u)) the result is NaN and ``valid`` is
    False: report those cases as invalid, never as numbers.

    Returns
    -------
    mean, var, valid : ndarrays broadcast from the inputs.
    """
    m, u, m_uncond, v_uncond, w = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (m, u, m_uncond, v_uncond, w)))
    precision = w / u - (w - 1.0) / v_uncond
    valid = precision > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(valid, 1.0 / precision, np.nan)
        mean = np.where(valid, m + (w - 1.0) * (var / v_uncond) * (m - m_uncond), np.nan)
    return mean, var, valid


def inherit(mu, v, m_anchor, v_anchor, h2):
    """Finetuning as inheritance toward an anchor with heritability h2.

    ``m' = m_a + h2 (mu - m_a)``, ``u' = h2 V + (1 - h2) V_a``: with h2 = 1 the model
    reproduces its training moments, with h2 = 0 it stays at the anchor.
    """
    mu, v, m_anchor, v_anchor, h2 = (np.asarray(a, dtype=float)
                                     for a in (mu, v, m_anchor, v_anchor, h2))
    return m_anchor + h2 * (mu - m_anchor), h2 * v + (1.0 - h2) * v_anchor


def w_eff_condition_drop(w, rho):
    """Selection strength of the tilt after condition-drop finetuning (theory.md 2.3).

    With the unconditional branch adapted toward the learned conditional by rho in natural
    parameters (:func:`adapt_uncond`), the tilt with scale w equals the tilt with the
    frozen unconditional branch and scale ``1 + (1 - rho)(w - 1)``.
    """
    return 1.0 + (1.0 - np.asarray(rho, dtype=float)) * (np.asarray(w, dtype=float) - 1.0)


def adapt_uncond(m_uncond, v_uncond, m, u, rho):
    """Unconditional moments after condition drop: natural-parameter mixing by rho.

    precision ``1/V_u' = (1 - rho)/V_u + rho/u``; precision-weighted mean
    ``m_u'/V_u' = (1 - rho) m_u/V_u + rho m/u``. rho = 0 leaves the branch frozen, rho = 1
    makes it the learned conditional (and removes selection).
    """
    m_uncond, v_uncond, m, u, rho = (np.asarray(a, dtype=float)
                                     for a in (m_uncond, v_uncond, m, u, rho))
    precision = (1.0 - rho) / v_uncond + rho / u
    eta = (1.0 - rho) * m_uncond / v_uncond + rho * m / u
    return eta / precision, 1.0 / precision


def breeder_equilibrium(lam, v_mut):
    """The breeder model's equilibrium variance V* = V_m / (1 - lambda); inf if lambda >= 1."""
    lam, v_mut = np.asarray(lam, dtype=float), np.asarray(v_mut, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(lam < 1.0, v_mut / (1.0 - lam), np.inf)


def breeder_variance(lam, v_mut, v0, t):
    """Expected variance after t generations of the breeder map, V* + lambda^t (V_0 - V*)
    (lambda < 1; for lambda >= 1 the sum V_0 lambda^t + V_m (lambda^t - 1)/(lambda - 1))."""
    lam, v_mut, v0, t = (np.asarray(a, dtype=float) for a in (lam, v_mut, v0, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.where(np.isclose(lam, 1.0), t, (lam ** t - 1.0) / (lam - 1.0))
    return v0 * lam ** t + v_mut * geometric
