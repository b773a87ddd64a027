"""Collapse criteria and horizons (theory.md section 3; numpy only).

A trait has collapsed at the first generation t >= 1 where any criterion holds:

* variance collapse: V_t / V_0 < q;
* drift (exaggeration): |mu_t - mu_0| / sqrt(V_0) > d;
* dilution (concept loss): |mu_t - m_u| < r |mu_0 - m_u|, m_u the unconditional mean.

For a run, the same criteria apply to the total variance over the traits and to the
Mahalanobis distances of the mean (drift from mu_0, distance to m_u for dilution), in the
metric of generation 0's variances. A run with several concepts has collapsed when any
concept has. "No collapse within T_max" is an outcome (``t_star = None``), never a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Criteria:
    """Collapse criteria; defaults of theory.md section 3."""

    q: float = 0.5      # variance collapse: V_t / V_0 < q
    d: float = 2.0      # drift: |mu_t - mu_0| / sqrt(V_0) > d
    r: float = 0.5      # dilution: |mu_t - m_u| < r |mu_0 - m_u|
    t_max: int = 50     # horizon beyond which "no collapse within T_max"

    def __post_init__(self):
        if not 0 < self.q < 1:
            raise ValueError(f"q must be in (0, 1), got {self.q}")
        if not self.d > 0:
            raise ValueError(f"d must be > 0, got {self.d}")
        if not 0 < self.r < 1:
            raise ValueError(f"r must be in (0, 1), got {self.r}")
        if not self.t_max >= 1:
            raise ValueError(f"t_max must be >= 1, got {self.t_max}")

    def to_dict(self) -> dict:
        return asdict(self)


REASONS = ("variance", "drift", "dilution")


def criteria_flags(mean, var, m_uncond, criteria: Criteria):
    """Boolean flags (variance, drift, dilution) per generation for trajectories whose
    first axis is the generation (index 0 = generation 0). NaN variances (an invalid tilt,
    variance without bound) never count as collapse."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    m_uncond = np.asarray(m_uncond, dtype=float)
    v0, mu0 = var[0], mean[0]
    with np.errstate(invalid="ignore"):
        variance = var / v0 < criteria.q
        drift = np.abs(mean - mu0) / np.sqrt(v0) > criteria.d
        dilution = np.abs(mean - m_uncond) < criteria.r * np.abs(mu0 - m_uncond)
    return variance, drift, dilution


def first_crossing(flags, t_max: int):
    """First generation 1..t_max where any flag holds, and which, per trailing element.

    Returns (t_star, reason): integer arrays (-1 = none within t_max) and reason index
    arrays (-1 = none) into :data:`REASONS`.
    """
    stacked = np.stack([np.asarray(f, dtype=bool) for f in flags])   # (3, T+1, ...)
    stacked = stacked[:, 1:t_max + 1]
    anyflag = stacked.any(axis=0)
    hit = anyflag.any(axis=0)
    t_star = np.where(hit, anyflag.argmax(axis=0) + 1, -1)
    reason = np.full(t_star.shape, -1)
    for idx in np.ndindex(t_star.shape):
        if t_star[idx] > 0:
            row = stacked[(slice(None), t_star[idx] - 1) + idx]
            reason[idx] = int(np.argmax(row))
    return t_star, reason


def trait_horizons(mean, var, m_uncond, criteria: Criteria):
    """Per-trait horizons of trajectories shaped (generation, ...)."""
    return first_crossing(criteria_flags(mean, var, m_uncond, criteria), criteria.t_max)


def run_statistics(mean, var, m_uncond):
    """Run-level statistics per generation from per-trait trajectories (generation, K):
    total variance ratio, Mahalanobis drift from mu_0, and Mahalanobis distance to m_u
    (both in the metric of generation 0's variances)."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    v0 = var[0]
    # traits that are NaN at generation 0 (e.g. constant there) are left out of the sums
    keep = np.isfinite(v0) & np.isfinite(mean[0])
    v0s = np.where(keep, v0, 1.0)
    # a trait that becomes NaN later (the tilt stopped existing) makes the sums NaN: no
    # statistic, hence no collapse, rather than a sum over the traits that are left
    total = np.sum(np.where(keep, var, 0.0), axis=-1) / np.sum(np.where(keep, v0, 0.0),
                                                                axis=-1)
    drift = np.sqrt(np.sum(np.where(keep, (mean - np.where(keep, mean[0], 0.0)) ** 2 / v0s,
                                    0.0), axis=-1))
    to_uncond = np.sqrt(np.sum(np.where(keep, (mean - np.asarray(m_uncond)) ** 2 / v0s, 0.0),
                               axis=-1))
    return total, drift, to_uncond


def run_horizon(mean, var, m_uncond, criteria: Criteria) -> tuple[int | None, str | None]:
    """The run's horizon from trajectories shaped (generation, concept, trait) or
    (generation, trait): the first generation where the total variance, the Mahalanobis
    drift or the Mahalanobis dilution of any concept crosses its criterion."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    if mean.ndim == 2:
        mean, var = mean[:, None, :], var[:, None, :]
    m_uncond = np.broadcast_to(np.asarray(m_uncond, dtype=float), mean.shape[1:])
    total, drift, to_u = run_statistics(mean, var, m_uncond)
    with np.errstate(invalid="ignore"):
        flags = (total < criteria.q, drift > criteria.d, to_u < criteria.r * to_u[0])
    t_star, reason = first_crossing(flags, criteria.t_max)   # per concept
    hits = [(int(t), int(r)) for t, r in zip(t_star, reason) if t > 0]
    if not hits:
        return None, None
    t, r = min(hits)  # earliest generation; ties by the order variance, drift, dilution
    return t, REASONS[r]


# --- closed forms -------------------------------------------------------------------------

def _first_integer_above(x: float) -> int:
    return max(1, math.floor(x) + 1)


def _censor(t: int | None, t_max: int | None) -> int | None:
    return None if t is None or (t_max is not None and t > t_max) else t


def breeder_variance_horizon(lam: float, v_mut: float, v0: float, q: float = 0.5,
                             t_max: int | None = None) -> int | None:
    """First t with V_t < q V_0 for V_t = V* + lambda^t (V_0 - V*), V* = V_m/(1 - lambda).

    With 0 < lambda < 1 and V* < q V_0, t* is the first integer above
    log((q V_0 - V*)/(V_0 - V*)) / log lambda; otherwise the variance never collapses.
    """
    if lam <= 0:
        return _censor(1, t_max) if v_mut < q * v0 else None
    if lam >= 1:
        return None
    v_star = v_mut / (1.0 - lam)
    if v_star >= q * v0:
        return None
    x = math.log((q * v0 - v_star) / (v0 - v_star)) / math.log(lam)
    return _censor(_first_integer_above(x), t_max)


def breeder_drift_horizon(gamma: float, mu0: float, center: float, v0: float,
                          d: float = 2.0, t_max: int | None = None) -> int | None:
    """First t with |mu_t - mu_0| / sqrt(V_0) > d for
    mu_t - mu_0 = (mu_0 - c)((1 + gamma)^t - 1), 1 + gamma > 0."""
    gap = abs(mu0 - center)
    if gap == 0 or gamma == 0 or 1 + gamma <= 0:
        return None
    need = d * math.sqrt(v0) / gap          # |(1 + gamma)^t - 1| > need
    if gamma > 0:
        x = math.log1p(need) / math.log1p(gamma)
    else:
        if need >= 1:                       # (1+gamma)^t -> 0: the gap never exceeds 1
            return None
        x = math.log1p(-need) / math.log1p(gamma)
    return _censor(_first_integer_above(x), t_max)


def breeder_dilution_horizon(gamma: float, r: float = 0.5,
                             t_max: int | None = None) -> int | None:
    """First t with |mu_t - c| < r |mu_0 - c| for |mu_t - c| = |1 + gamma|^t |mu_0 - c|."""
    rate = abs(1.0 + gamma)
    if rate >= 1:
        return None
    if rate == 0:
        return _censor(1, t_max)
    return _censor(_first_integer_above(math.log(r) / math.log(rate)), t_max)


@dataclass(frozen=True)
class TiltHorizon:
    """Closed-form outcome of the tilt map with frozen unconditional branch and h^2 = 1."""

    t_star: int | None        # first generation with V_t < q V_0 (None: no variance collapse)
    behaviour: str            # "collapse" | "growth" | "stable"
    invalid_at: int | None    # first generation where the tilt stops existing (growth case)


def tilt_variance_horizon(w: float, v0: float, v_uncond: float, q: float = 0.5,
                          t_max: int | None = None) -> TiltHorizon:
    """Precision a_t = 1/V_t obeys a_t - a_u = w^t (a_0 - a_u) (a_u = 1/V_u).

    * u < V_u (a_0 > a_u) and w > 1: precision grows, variance collapses at the first
      integer above log((a_0/q - a_u)/(a_0 - a_u)) / log w;
    * u > V_u and w > 1: precision falls, the variance grows, and the tilt stops existing
      once a_t <= 0, at the first integer at or above log(a_u/(a_u - a_0)) / log w;
    * w < 1: the variance relaxes toward V_u (no variance collapse when V_u >= q V_0);
    * w = 1 or u = V_u: nothing changes.
    """
    a0, au = 1.0 / v0, 1.0 / v_uncond
    if w < 0:
        raise ValueError(f"w must be >= 0, got {w}")
    if w == 0:  # one step lands on the unconditional distribution and stays there
        t = 1 if v_uncond < q * v0 else None
        return TiltHorizon(_censor(t, t_max), "collapse" if t else "stable", None)
    if w == 1 or a0 == au:
        return TiltHorizon(None, "stable", None)
    if w < 1:
        # V_t -> V_u monotonically; collapse only if the limit is below q V_0
        target = a0 / q
        if au > target and a0 < au:  # precision rises toward a_u past a_0/q
            x = math.log((target - au) / (a0 - au)) / math.log(w)
            return TiltHorizon(_censor(_first_integer_above(x), t_max), "collapse", None)
        return TiltHorizon(None, "stable", None)
    if a0 > au:
        x = math.log((a0 / q - au) / (a0 - au)) / math.log(w)
        return TiltHorizon(_censor(_first_integer_above(x), t_max), "collapse", None)
    x = math.log(au / (au - a0)) / math.log(w)
    invalid = max(1, math.ceil(x - 1e-12))
    return TiltHorizon(None, "growth", _censor(invalid, t_max))
