"""Hierarchical pooling of per-cell effects: how the ReDiFine check combines cells.

Each cell j (a concept x trait) gives an estimate d_j of an effect with standard error
s_j. The cells of one trait share a trait effect, and the cells scatter around it:

    d_j ~ Normal(theta_{g(j)} + e_j, s_j^2),   e_j ~ Normal(0, tau_cell^2)
    theta_g ~ Normal(mu, tau_group^2)

with a flat prior on mu and uniform priors on tau_group and tau_cell on [0, tau_max]
(Gelman 2006: uniform on the scale for a handful of groups; tau_max is many times the
spread of the estimates, so the bound does not bind). Given the two scales everything is
Gaussian, so mu and each theta_g are integrated exactly; the scales are integrated on a
grid. The verdict of a prediction is about mu, the effect in a typical trait: one trait
with a large effect raises tau_group and widens mu's posterior instead of deciding it
(no multiplicity correction is needed for the per-trait rows either: they are shrunk
toward mu by the data, not tested one by one).

When the cells' estimation errors are correlated (effects read off one model's
posterior share its population parameters), pass their covariance matrix ``cov``
instead of independent standard errors: the same model with d ~ Normal(., cov +
tau_cell^2 I + tau_group^2 Z Z'), solved by the mixed-model equations at each grid point.

With fewer than 3 groups tau_group is not identified (it trades off against mu under the
flat prior); the trait level is then dropped (tau_group = 0) and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: grid points per scale
GRID = 61


@dataclass(frozen=True)
class PooledEffect:
    """Posterior of the pooled effect mu and of each group's effect theta_g."""

    mean: float                 # posterior mean of mu
    sd: float                   # posterior sd of mu
    p_positive: float           # P(mu > 0)
    tau_group: float            # posterior mean of the between-group scale
    tau_cell: float             # posterior mean of the within-group scale
    groups: tuple               # group labels, in order
    group_mean: np.ndarray      # posterior mean of theta_g
    group_sd: np.ndarray
    group_p_positive: np.ndarray
    n_cells: int
    group_level: bool           # False: fewer than 3 groups, trait level dropped


def _mixture(means: np.ndarray, sds: np.ndarray, w: np.ndarray):
    """Mean, sd and P(> 0) of a mixture of normals with weights w (over axis 0)."""
    m = np.tensordot(w, means, axes=(0, 0))
    second = np.tensordot(w, sds ** 2 + means ** 2, axes=(0, 0))
    p = np.tensordot(w, stats.norm.sf(0.0, means, sds), axes=(0, 0))
    return m, np.sqrt(np.maximum(second - m ** 2, 0.0)), p


def pool_effects(est, se, groups, tau_max: float | None = None,
                 cov=None) -> PooledEffect:
    """The hierarchical posterior of the effect (module docstring). ``est`` and ``se``
    are per cell; ``groups`` labels each cell's group (its trait); ``cov`` (optional,
    cells x cells) replaces independent errors ``se`` by correlated ones. Cells with a
    non-finite estimate or standard error are left out; ValueError if none is left."""
    est = np.asarray(est, float)
    se = np.sqrt(np.diag(cov)) if cov is not None else np.asarray(se, float)
    groups = np.asarray(groups, dtype=object)
    ok = np.isfinite(est) & np.isfinite(se) & (se >= 0)
    if not ok.any():
        raise ValueError("no cell with a finite estimate and standard error")
    d, s2, labels = est[ok], np.maximum(se[ok], 1e-12) ** 2, groups[ok]
    names = tuple(dict.fromkeys(labels))
    idx = np.array([names.index(g) for g in labels])
    G = len(names)
    group_level = G >= 3
    if tau_max is None:
        tau_max = 5.0 * (np.std(d) + np.sqrt(np.median(s2))) + 1e-12
    tg = np.linspace(0.0, tau_max, GRID) if group_level else np.zeros(1)
    tc = np.linspace(0.0, tau_max, GRID)
    if cov is not None:
        S = np.asarray(cov, float)[np.ix_(ok, ok)]
        return _correlated(d, S, idx, names, tg, tc, group_level)
    TG, TC = np.meshgrid(tg, tc, indexing="ij")
    TG, TC = TG.ravel()[:, None], TC.ravel()[:, None]          # (K, 1)
    st2 = s2[None, :] + TC ** 2                                 # (K, n)
    onehot = np.zeros((len(d), G))
    onehot[np.arange(len(d)), idx] = 1.0
    P = (1.0 / st2) @ onehot                                    # (K, G): group precision
    ybar = ((d[None, :] / st2) @ onehot) / P                    # precision-weighted means
    within = ((d[None, :] - ybar[:, idx]) ** 2 / st2).sum(1)
    n_g = onehot.sum(0)
    W = 1.0 / (1.0 / P + TG ** 2)                               # (K, G)
    mu_hat = (W * ybar).sum(1) / W.sum(1)
    v_mu = 1.0 / W.sum(1)
    between = (W * (ybar - mu_hat[:, None]) ** 2).sum(1)
    loglik = (-0.5 * np.log(st2).sum(1) - 0.5 * np.log(P).sum(1) - 0.5 * within
              + 0.5 * np.log(W).sum(1) - 0.5 * np.log(W.sum(1)) - 0.5 * between
              - 0.5 * (n_g.sum() - 1) * np.log(2 * np.pi))
    w = np.exp(loglik - loglik.max())
    w /= w.sum()
    mean, sd, p = _mixture(mu_hat, np.sqrt(v_mu), w)
    B = TG ** 2 * P / (1.0 + TG ** 2 * P)                       # shrinkage toward mu
    th_mean = (1 - B) * mu_hat[:, None] + B * ybar
    th_sd = np.sqrt((1 - B) ** 2 * v_mu[:, None] + B / P)
    g_mean, g_sd, g_p = _mixture(th_mean, th_sd, w)
    return PooledEffect(float(mean), float(sd), float(p), float(w @ TG[:, 0]),
                        float(w @ TC[:, 0]), names, g_mean, g_sd, g_p, int(len(d)),
                        group_level)


def _correlated(d, S, idx, names, tg, tc, group_level) -> PooledEffect:
    """pool_effects with a full error covariance S. In the eigenbasis of S the residual
    covariance R = S + tau_cell^2 I is diagonal; at each grid point the mixed-model
    equations (Henderson) C beta = u for beta = (mu, group effects), with C = X'R^-1 X +
    diag(0, I / tau_group^2), give the posterior of beta under a flat mu (N(C^-1 u,
    C^-1)) and the likelihood of the scales,
    -1/2 [log|R| + G log tau_group^2 + log|C| + d'R^-1 d - u'C^-1 u] + const."""
    n, G = len(d), len(names)
    X = np.zeros((n, G + 1))
    X[:, 0] = 1.0
    X[np.arange(n), 1 + idx] = 1.0
    lam, Q = np.linalg.eigh(S)
    lam = np.maximum(lam, 0.0)
    dq, Xq = Q.T @ d, Q.T @ X
    K = len(tg) * len(tc)
    loglik, mu_m, mu_v = np.full(K, -np.inf), np.zeros(K), np.ones(K)
    th_m, th_v = np.zeros((K, G)), np.ones((K, G))
    TG, TC = np.empty(K), np.empty(K)
    k = 0
    for b in tc:
        dinv = 1.0 / np.maximum(lam + b ** 2, 1e-300)
        A = Xq.T @ (dinv[:, None] * Xq)
        u = Xq.T @ (dinv * dq)
        dd = dq @ (dinv * dq)
        logdet_r = -np.log(dinv).sum()
        for a in tg:
            TG[k], TC[k] = a, b
            if a == 0.0:
                c0 = A[0, 0]
                loglik[k] = -0.5 * (logdet_r + np.log(c0) + dd - u[0] ** 2 / c0)
                mu_m[k], mu_v[k] = u[0] / c0, 1.0 / c0
                th_m[k], th_v[k] = mu_m[k], mu_v[k]
            else:
                C = A.copy()
                C[1:, 1:] += np.eye(G) / a ** 2
                Ci = np.linalg.inv(C)
                sol = Ci @ u
                _, logdet_c = np.linalg.slogdet(C)
                loglik[k] = -0.5 * (logdet_r + G * np.log(a ** 2) + logdet_c + dd - u @ sol)
                mu_m[k], mu_v[k] = sol[0], Ci[0, 0]
                th_m[k] = sol[0] + sol[1:]
                th_v[k] = Ci[0, 0] + np.diag(Ci)[1:] + 2 * Ci[0, 1:]
            k += 1
    w = np.exp(loglik - loglik.max())
    w /= w.sum()
    mean, sd, p = _mixture(mu_m, np.sqrt(mu_v), w)
    g_mean, g_sd, g_p = _mixture(th_m, np.sqrt(np.maximum(th_v, 0.0)), w)
    return PooledEffect(float(mean), float(sd), float(p), float(w @ TG), float(w @ TC),
                        names, g_mean, g_sd, g_p, int(n), group_level)
