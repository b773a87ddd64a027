"""Observed collapse statistics of a run, with their sampling distributions.

The run's horizon (docs/theory.md 3.1) is defined on two concept-pooled statistics; this
module computes them from the per-image traits of each generation, together with what the
detection rule of :func:`qtrait.theory.horizon.detected_run_horizon` needs
(docs/statistics.md 5 derives each piece):

* the pooled variance ratio R_t = mean over concepts c of R_tc, R_tc = mean over traits
  k of s2_tck / s2_0ck, and the delta-method (influence-function) standard error of
  log R_t. It uses the per-image values themselves, so skewness, kurtosis and the
  correlations between traits are in it; generation 0's own sampling error is included;
* the pooled drift D2_t = sum_c n_eff,c D2_tc / sum_c n_eff,c with
  D2_tc = delta' M_c delta, delta in generation-0 SD units and M_c the inverse of
  generation 0's correlation matrix of concept c with its eigenvalues floored
  (:func:`~qtrait.theory.horizon.drift_metric`), and X_t = sum_c n_eff,c D2_tc, whose
  law is at most noncentral chi2 with C K degrees of freedom (exactly so without the
  floor).

Arrays only (numpy); :func:`run_collapse` reads a :class:`~qtrait.rundir.Run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import QtraitError
from ..theory.horizon import Criteria, detected_run_horizon, drift_metric, latent_run_horizon


@dataclass
class CollapseStatistics:
    """Pooled collapse statistics of generations 0..T (arrays over generations, first
    axis; per concept, second)."""

    traits: list[str]
    concepts: list[str]
    generations: list[int]
    n: np.ndarray            # (T+1, C) images per concept
    R: np.ndarray            # (T+1,) pooled variance ratio (R_0 = 1)
    se_log_r: np.ndarray     # (T+1,) standard error of log R_t (0 at generation 0)
    D2: np.ndarray           # (T+1,) pooled squared Mahalanobis drift
    X: np.ndarray            # (T+1,) sum_c n_eff,c D2_tc
    n_eff_total: np.ndarray  # (T+1,) sum_c n_eff,c
    R_c: np.ndarray          # (T+1, C) per-concept variance ratios
    u: np.ndarray            # (T+1, C) n_t Var(R_tc | gen 0) / R_tc^2 (relative unit var.)
    b: np.ndarray            # (T+1, C) n_0 Var(R_tc | gen t) / R_tc^2
    precision: np.ndarray    # (C, K, K) drift metric per concept (theory.horizon.drift_metric)
    correlation: np.ndarray  # (C, K, K) generation 0's correlation per concept
    bias: np.ndarray         # (C, K) 1 + Var(z^2)/n_0: the ratio's bias factor (5.1)

    @property
    def k(self) -> int:
        return len(self.traits)

    @property
    def df(self) -> int:
        return len(self.concepts) * len(self.traits)

    def detected(self, criteria: Criteria):
        """(t, reason) of the detected horizon; t = t_max + 1 when none (see
        :func:`~qtrait.theory.horizon.detected_run_horizon`)."""
        crit = Criteria(criteria.q, criteria.d, criteria.r,
                        max(1, len(self.generations) - 1), criteria.alpha)
        t, r = detected_run_horizon(self.R, self.se_log_r, self.X, self.df,
                                    self.n_eff_total, self.k, crit)
        return _as_horizon(t, r, crit.t_max)

    def crossed(self, criteria: Criteria):
        """(t, reason) where the observed statistics cross the thresholds taken at face
        value (no allowance for noise): for comparison only."""
        crit = Criteria(criteria.q, criteria.d, criteria.r,
                        max(1, len(self.generations) - 1), criteria.alpha)
        t, r = latent_run_horizon(self.R, self.D2, self.k, crit)
        return _as_horizon(t, r, crit.t_max)

    def noise_model(self, upto: int | None = None) -> "NoiseModel":
        """The relative sampling variances to carry into simulated generations: u from
        generations 1..upto-1 (generation 0 when upto <= 1), b from generation 0."""
        upto = len(self.generations) if upto is None else upto
        u = self.u[1:upto].mean(axis=0) if upto > 1 else self.b[0]
        b = self.b[1:upto].mean(axis=0) if upto > 1 else self.b[0]
        return NoiseModel(u=u, b=b, n0=self.n[0].copy(), precision=self.precision,
                          bias=self.bias)


def _as_horizon(t, r, t_max: int):
    from ..theory.horizon import RUN_REASONS

    t, r = int(t), int(r)
    return (None, None) if t > t_max else (t, RUN_REASONS[r])


@dataclass
class NoiseModel:
    """Sampling noise of the pooled statistics for simulated generations of a run
    (forecasts and baselines apply the detection rule of the observed data to them)."""

    u: np.ndarray          # (C,) relative unit variance of R_tc from generation t's images
    b: np.ndarray          # (C,) the same from generation 0's images
    n0: np.ndarray         # (C,) generation-0 images per concept
    precision: np.ndarray  # (C, K, K)
    bias: np.ndarray | None = None  # (C, K) the observed ratios' bias correction

    def se_log_r(self, R_c, n):
        """se(log R_t) from per-concept ratios R_c (..., C) and images per concept n."""
        R_c = np.asarray(R_c, dtype=float)
        C = R_c.shape[-1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # scaled by the largest ratio (the SE of log R does not change): an
            # extrapolated ratio of 1e200 would otherwise overflow when squared
            top = np.max(np.abs(R_c), axis=-1, keepdims=True)
            rel = np.where(top > 0, R_c / top, 0.0)
            var = np.sum(rel ** 2 * (self.u / n + self.b / self.n0), axis=-1) / C ** 2
            R = np.mean(rel, axis=-1)
            return np.where(R > 0, np.sqrt(var) / R, 0.0)

    def n_eff(self, n):
        return 1.0 / (1.0 / np.asarray(n, dtype=float) + 1.0 / self.n0)


def _bias(x0: np.ndarray) -> np.ndarray:
    """1 + Var(z^2)/n_0 per trait: E[1/s2_0] = (1 + Var(s2_0)/V_0^2)/V_0 to first order
    (docs/statistics.md 5.1)."""
    m0, v0 = x0.mean(axis=0), x0.var(axis=0, ddof=1)
    return 1.0 + np.var((x0 - m0) ** 2 / v0, axis=0, ddof=1) / len(x0)


def _concept(x0: np.ndarray, xt: np.ndarray, prec: np.ndarray, is_zero: bool):
    """Per-concept pieces: R_tc, its two relative unit variances, D2_tc, n_eff."""
    n0, nt = len(x0), len(xt)
    m0, mt = x0.mean(axis=0), xt.mean(axis=0)
    v0, vt = x0.var(axis=0, ddof=1), xt.var(axis=0, ddof=1)
    K = x0.shape[1]
    r = vt / v0
    if not is_zero:
        # without this the ratio runs high by (2 + excess kurtosis) / n_0, about 5% for
        # skewed traits at n_0 = 90, as large as its standard error (docs/statistics.md 5)
        r = r / _bias(x0)
    Rc = float(r.mean())
    # influence of one image of generation t on R_tc: (1/K) sum_k (x - m)^2 / v0_k
    yt = ((xt - mt) ** 2 / v0).mean(axis=1)
    # ... and of one image of generation 0: -(1/K) sum_k r_k ((x - m0)^2 / v0_k - 1)
    y0 = (r * (x0 - m0) ** 2 / v0).mean(axis=1)
    # a concept whose traits became constant (R_tc = 0, e.g. every image classified
    # correctly) has lost all its variance: no sampling error is left to allow for
    u = float(np.var(yt, ddof=1)) / Rc ** 2 if Rc > 0 else 0.0
    b = float(np.var(y0, ddof=1)) / Rc ** 2 if Rc > 0 else 0.0
    delta = (mt - m0) / np.sqrt(v0)
    d2 = 0.0 if is_zero else float(delta @ prec @ delta)
    n_eff = 1.0 / (1.0 / nt + 1.0 / n0)
    return Rc, u, b, d2, n_eff, K


def collapse_statistics(data: list[list[np.ndarray]], traits: list[str],
                        concepts: list[str], generations: list[int]) -> CollapseStatistics:
    """Pooled statistics from per-image arrays ``data[g][c]`` (images x traits), the
    first generation being generation 0 (the reference)."""
    G, C = len(data), len(concepts)
    if G < 1 or any(len(row) != C for row in data):
        raise QtraitError("collapse statistics need every concept in every generation")
    prec = np.empty((C, len(traits), len(traits)))
    corrs = np.empty_like(prec)
    bias = np.empty((C, len(traits)))
    for c in range(C):
        x0 = np.asarray(data[0][c], dtype=float)
        if len(x0) <= len(traits):
            raise QtraitError(f"concept {concepts[c]!r} has {len(x0)} images at generation 0, "
                              f"too few for {len(traits)} traits' covariance",
                              hint="select fewer traits (--traits)")
        corr = np.corrcoef(x0, rowvar=False).reshape(len(traits), len(traits))
        corrs[c] = corr
        prec[c] = drift_metric(corr)
        bias[c] = _bias(x0)
    n = np.zeros((G, C))
    R_c, u, b, d2, n_eff = (np.zeros((G, C)) for _ in range(5))
    for g in range(G):
        for c in range(C):
            x0 = np.asarray(data[0][c], dtype=float)
            xt = np.asarray(data[g][c], dtype=float)
            if len(xt) < 2:
                raise QtraitError(f"generation {generations[g]}, concept {concepts[c]!r}: "
                                  f"{len(xt)} image(s); collapse statistics need >= 2")
            n[g, c] = len(xt)
            R_c[g, c], u[g, c], b[g, c], d2[g, c], n_eff[g, c], _ = \
                _concept(x0, xt, prec[c], g == 0)
    R = R_c.mean(axis=1)
    var_R = np.sum(R_c ** 2 * (u / n + b / n[:1]), axis=1) / C ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(R > 0, np.sqrt(var_R) / R, 0.0)
    se[0] = 0.0
    X = np.sum(n_eff * d2, axis=1)
    N = n_eff.sum(axis=1)
    return CollapseStatistics(list(traits), list(concepts), list(generations), n, R, se,
                              X / N, X, N, R_c, u, b, prec, corrs, bias)


def horizon_traits(run, traits: list[str] | None = None) -> list[str]:
    """The traits a run's horizon is defined on: ``traits`` if given, else the run's trait
    axes (manifest ``traits.axes``; all traits when it declares none), less those
    constant within some concept at generation 0 (they have no variance to lose)."""
    chosen = list(traits) if traits else run.axes
    unknown = [t for t in chosen if t not in run.traits]
    if unknown:
        raise QtraitError(f"unknown trait(s) {unknown} for the horizon",
                          hint=f"the run's traits: {', '.join(run.traits)}")
    g0 = run.table(0, "guided")
    sd = g0.groupby("concept")[chosen].std()
    keep = [t for t in chosen if bool((sd[t] > 0).all())]
    if not keep:
        raise QtraitError("every horizon trait is constant within some concept at "
                          "generation 0")
    return keep


def run_arrays(run, traits: list[str], upto: int | None = None):
    """Per-image arrays of the guided sets: (data[g][c] images x traits, concepts,
    generations) for generations 0..upto-1 (all by default)."""
    gens = list(run.generations[:upto] if upto is not None else run.generations)
    concepts = sorted(run.table(gens[0], "guided")["concept"].unique())
    data = []
    for g in gens:
        tab = run.table(g, "guided")
        data.append([tab.loc[tab["concept"] == c, traits].to_numpy(dtype=float)
                     for c in concepts])
    return data, concepts, gens


def run_collapse(run, traits: list[str] | None = None,
                 upto: int | None = None) -> CollapseStatistics:
    """Observed pooled collapse statistics of a run's guided sets, generations
    0..upto-1 (all by default), on :func:`horizon_traits`."""
    traits = horizon_traits(run, traits)
    data, concepts, gens = run_arrays(run, traits, upto)
    return collapse_statistics(data, traits, concepts, gens)
