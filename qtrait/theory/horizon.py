"""Collapse criteria and horizons (theory.md section 3; numpy and scipy only).

**The run's horizon** (theory.md 3.1; what every part of qtrait calls "the horizon") is
defined on two concept-pooled statistics of the run's traits (by default its trait axes),
in generation-0 units of each concept:

* the pooled variance ratio R_t: the mean over concepts and traits of V_t / V_0;
* the pooled drift D2_t: the squared Mahalanobis distance of the concept's mean from its
  generation-0 mean, in the metric of generation 0's covariance (correlations included),
  averaged over concepts with weights n_eff,c = 1 / (1/n_t + 1/n_0).

The run has collapsed at the first generation t >= 1 with R_t < q or D2_t > tau_K, where
tau_K = chi2_K quantile at P(|Z| < d) (so tau_1 = d^2: the per-trait rule at K = 1). On
**latent** moments (theory, simulation truth) the crossing is taken as it is
(:func:`latent_run_horizon`); on **observed** moments it counts only when it holds beyond
sampling noise at confidence 1 - alpha, spent over generations and the two criteria as
alpha_t = alpha / (2 t (t + 1)) (:func:`detected_run_horizon`), so that a chain that never
crosses shows a crossing with probability at most alpha, however long it runs.

A trait has collapsed at the first generation t >= 1 where any criterion holds:

* variance collapse: V_t / V_0 < q;
* drift (exaggeration): |mu_t - mu_0| / sqrt(V_0) > d;
* dilution (concept loss): |mu_t - m_u| < r |mu_0 - m_u|, m_u the unconditional mean.

These per-trait horizons are secondary outputs: each controls nothing over the C x K
cells, so the earliest of them is mostly the noisiest cell. "No collapse within T_max" is
an outcome (``t_star = None``), never a number.
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
    alpha: float = 0.05  # observed crossings: familywise error over generations and criteria

    def __post_init__(self):
        if not 0 < self.q < 1:
            raise ValueError(f"q must be in (0, 1), got {self.q}")
        if not self.d > 0:
            raise ValueError(f"d must be > 0, got {self.d}")
        if not 0 < self.r < 1:
            raise ValueError(f"r must be in (0, 1), got {self.r}")
        if not self.t_max >= 1:
            raise ValueError(f"t_max must be >= 1, got {self.t_max}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    def drift_threshold(self, k: int) -> float:
        """tau_K: the chi2_K quantile at P(|Z| < d), the pooled D2 threshold for K traits
        (d^2 at K = 1; 17.6 at K = 9 with d = 2)."""
        return drift_threshold(self.d, k)

    def alpha_at(self, t):
        """The level spent on each criterion at generation t: alpha / (2 t (t + 1))."""
        t = np.asarray(t, dtype=float)
        return self.alpha / (2.0 * t * (t + 1.0))

    def to_dict(self) -> dict:
        return asdict(self)


REASONS = ("variance", "drift", "dilution")
#: the reasons of the run-level horizon (pooled statistics; dilution is per trait only)
RUN_REASONS = ("variance", "drift")


def drift_threshold(d: float, k: int) -> float:
    """The chi2_k quantile at P(|Z| < d): a mean shift of Mahalanobis length sqrt(tau)
    puts the mean where generation 0's ellipsoid holding the same mass as +-d SD in one
    dimension ends."""
    from scipy import stats

    return float(stats.chi2.ppf(stats.chi2.cdf(d * d, 1), k))


# --- the run's horizon: concept-pooled statistics ---------------------------------------

#: eigenvalue floor of generation 0's correlation matrix in the drift metric (theory.md
#: 3.1): a direction holding less than this share of one trait's variance is measured as
#: if it held this much. Trait sets are often nearly collinear (on the miniature chain the
#: concept axis lies almost in the span of the 8 principal axes within a digit: smallest
#: eigenvalue about 0.001), and without a floor the drift would be dominated by that one
#: direction. The floor makes the noise test conservative (docs/statistics.md 5).
CORR_FLOOR = 0.1


def drift_metric(correlation, floor: float = CORR_FLOOR) -> np.ndarray:
    """The drift's metric from generation 0's correlation matrices (..., K, K): their
    inverse with eigenvalues floored at ``floor``."""
    corr = np.asarray(correlation, dtype=float)
    w, v = np.linalg.eigh(corr)
    return np.einsum("...ij,...j,...kj->...ik", v, 1.0 / np.maximum(w, floor), v)

def pooled_statistics(mean, var, precision, n_eff=None):
    """Pooled variance ratio R and drift D2 from standardised moments.

    ``mean`` and ``var`` are (..., T+1, C, K) in generation-0 units of each (concept,
    trait): generation 0 has mean 0 and variance 1 (a latent trajectory whose generation
    0 differs is measured from its own generation 0). ``precision`` (C, K, K) is the
    drift metric per concept (:func:`drift_metric`); ``n_eff`` (..., T+1, C)
    weights the concepts in D2 (default equal). Returns R and D2, shaped (..., T+1).
    """
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    v0 = var[..., :1, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.mean(var / v0, axis=(-2, -1))
    delta = (mean - mean[..., :1, :, :]) / np.sqrt(v0)
    d2c = np.einsum("...ck,ckl,...cl->...c", delta, np.asarray(precision, dtype=float), delta)
    if n_eff is None:
        D2 = d2c.mean(axis=-1)
    else:
        w = np.broadcast_to(np.asarray(n_eff, dtype=float), d2c.shape)
        D2 = np.sum(w * d2c, axis=-1) / np.sum(w, axis=-1)
    return R, D2


def _first(flags: np.ndarray, t_max: int):
    """First t in 1..t_max where flags (..., T+1) holds; t_max + 1 when none."""
    f = np.asarray(flags, dtype=bool)[..., 1:t_max + 1]
    if f.shape[-1] == 0:                  # generation 0 alone: nothing to cross yet
        return np.full(f.shape[:-1], t_max + 1)
    hit = f.any(axis=-1)
    return np.where(hit, f.argmax(axis=-1) + 1, t_max + 1)


def _horizon_and_reason(var_flags, drift_flags, t_max: int):
    tv, td = _first(var_flags, t_max), _first(drift_flags, t_max)
    t = np.minimum(tv, td)
    reason = np.where(t > t_max, -1, np.where(tv <= td, 0, 1))
    return t, reason


def latent_run_horizon(R, D2, k: int, criteria: "Criteria"):
    """Horizons of latent (noise-free) pooled statistics (..., T+1): the first t >= 1 with
    R_t < q or D2_t > tau_K. Returns (t, reason) arrays; t = t_max + 1 means none within
    t_max, reason indexes :data:`RUN_REASONS` (-1: none). NaN never crosses."""
    R, D2 = np.asarray(R, dtype=float), np.asarray(D2, dtype=float)
    with np.errstate(invalid="ignore"):
        return _horizon_and_reason(R < criteria.q, D2 > criteria.drift_threshold(k),
                                   criteria.t_max)


def ncx2_sf(x, df, nc):
    """P(X >= x) for noncentral chi2(df, nc), elementwise. Far in the lower tail (more
    than 10 SD below the mean) it is 1 and far in the upper tail 0 to double precision;
    scipy's boost kernel can overflow there, so only the middle is computed by it."""
    from scipy import stats

    x, df, nc = np.broadcast_arrays(np.asarray(x, float), np.asarray(df, float),
                                    np.asarray(nc, float))
    z = (x - (df + nc)) / np.sqrt(2.0 * (df + 2.0 * nc))
    out = np.where(z < 0, 1.0, 0.0)
    out = np.where(np.isfinite(x), out, np.nan)
    mid = np.isfinite(z) & (np.abs(z) <= 10)
    if mid.any():
        out[mid] = stats.ncx2.sf(x[mid], df[mid], nc[mid])
    return out


def detected_run_horizon(R, se_log_r, X, df: int, n_eff_total, k: int, criteria: "Criteria"):
    """Horizons of observed pooled statistics (..., T+1), crossings beyond sampling noise.

    * variance: log R_t + z(1 - alpha_t) se(log R_t) < log q (the upper confidence bound
      of R_t is below q);
    * drift: X_t = sum_c n_eff,c D2_c is noncentral chi2 with df = C K and noncentrality
      sum_c n_eff,c D2_c (docs/statistics.md 5); the crossing holds when
      P(X >= X_t | D2 = tau_K) < alpha_t, i.e. D2_t > tau_K is rejected as noise.

    ``n_eff_total`` (..., T+1) is sum_c n_eff,c. Returns (t, reason) as
    :func:`latent_run_horizon`.
    """
    from scipy import stats

    R = np.asarray(R, dtype=float)
    T1 = R.shape[-1]
    t = np.arange(T1, dtype=float)
    a = criteria.alpha_at(np.maximum(t, 1.0))
    z = stats.norm.isf(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_flags = np.log(R) + z * np.asarray(se_log_r, dtype=float) < np.log(criteria.q)
        nc = criteria.drift_threshold(k) * np.asarray(n_eff_total, dtype=float)
        p = ncx2_sf(np.asarray(X, dtype=float), df, nc)
        drift_flags = p < a
    var_flags = np.where(np.isfinite(R), var_flags, False)
    drift_flags = np.where(np.isfinite(p), drift_flags, False)
    return _horizon_and_reason(var_flags, drift_flags, criteria.t_max)


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


def run_horizon(mean, var, criteria: Criteria, correlation=None) -> tuple[int | None, str | None]:
    """The run's latent horizon (theory.md 3.1) from noise-free trajectories shaped
    (generation, concept, trait) or (generation, trait): the first generation where the
    pooled variance ratio falls below q or the pooled drift exceeds tau_K.

    ``correlation`` (concept, trait, trait) is generation 0's correlation matrix per
    concept, the drift's metric (default: uncorrelated traits). Traits that are NaN at generation 0
    are left out; a statistic that turns NaN later (the tilt stopped existing) never
    crosses."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    if mean.ndim == 2:
        mean, var = mean[:, None, :], var[:, None, :]
    keep = np.isfinite(var[0]).all(axis=0) & np.isfinite(mean[0]).all(axis=0)
    if not keep.any():
        return None, None
    mean, var = mean[..., keep], var[..., keep]
    C, K = mean.shape[1:]
    if correlation is None:
        precision = np.broadcast_to(np.eye(K), (C, K, K))
    else:
        corr = np.broadcast_to(np.asarray(correlation, dtype=float),
                               (C, len(keep), len(keep)))
        precision = drift_metric(corr[:, keep][:, :, keep])
    R, D2 = pooled_statistics(mean, var, precision)
    t, r = latent_run_horizon(R, D2, K, criteria)
    t, r = int(t), int(r)
    return (None, None) if t > criteria.t_max else (t, RUN_REASONS[r])


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
