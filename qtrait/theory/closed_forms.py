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
