"""Per-set statistics of trait samples on plain arrays.

This module depends on NumPy and SciPy only (no pandas, no xarray): it is the
array layer under the labelled wrappers. Every function takes float arrays with
the samples (images, or generations for :func:`realized_h2`) along axis 0 and
the traits along axis 1, and is vectorised over traits. A 1-D input is read as
a single trait, shape ``(N, 1)``. Missing values are not handled here: a NaN in
a column makes that column's statistics NaN (except in :func:`realized_h2`,
which skips non-finite generations by design).

Functions
---------
moments
    Per-trait sample size, mean, variance and excess kurtosis with intervals.
diversity
    Set-level total variance and bias-corrected log generalized variance.
selection
    Selection differential and variance ratio of the guided set against the
    w = 1 probe.
realized_h2
    Realized heritability from generation-to-generation means.

Notation: N samples, K traits, ``alpha = 1 - ci``, ``z = Phi^{-1}(1 - alpha/2)``.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

__all__ = ["moments", "diversity", "selection", "realized_h2"]

#: Floor of the excess-kurtosis estimate used in variance intervals. The estimate is noisy
#: at small N, and letting it go below 0 narrows the interval below the Gaussian one: with
#: Gaussian data that under-covers (0.84 for a 90% interval at N = 10; see
#: analyses/interval_coverage). Flooring at 0 makes the interval never narrower than the
#: exact Gaussian (chi-square) interval, conservative for light-tailed traits.
KURTOSIS_FLOOR = 0.0


def _as_samples(x, name: str, min_n: int = 2) -> np.ndarray:
    """Return ``x`` as a float array of shape (N, K) with N >= ``min_n``."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, K) (samples, traits); got shape {x.shape}")
    if x.shape[0] < min_n:
        raise ValueError(
            f"{name} needs at least {min_n} samples along axis 0 "
            f"(a sample variance needs N >= 2); got N = {x.shape[0]}"
        )
    return x


def _alpha(ci: float) -> float:
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be strictly between 0 and 1; got {ci}")
    return 1.0 - ci


def _standard_moment(x: np.ndarray, r: int, min_n: int) -> np.ndarray:
    """Per column, the sample standardised moment m_r / m2^(r/2) with central moments
    ``m_k = mean((x - xbar)^k)``; NaN when N < ``min_n`` or the column is constant."""
    if x.shape[0] < min_n:
        return np.full(x.shape[1], np.nan)
    d = x - x.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(d**r, axis=0) / np.mean(d**2, axis=0) ** (r / 2)


def _excess_kurtosis(x: np.ndarray) -> np.ndarray:
    """Bias-corrected sample excess kurtosis G2 per column (NaN when N < 4).

    ``g2 = m4 / m2^2 - 3`` with central moments ``m_r = mean((x - xbar)^r)``, and
    ``G2 = (N - 1) / ((N - 2)(N - 3)) * ((N + 1) g2 + 6)``, the estimator of
    ``scipy.stats.kurtosis(bias=False)``. A constant column gives NaN.
    """
    n = x.shape[0]
    g2 = _standard_moment(x, 4, 4) - 3.0
    return (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0) if n >= 4 else g2


def _skewness(x: np.ndarray) -> np.ndarray:
    """Bias-corrected sample skewness G1 per column (NaN when N < 3).

    ``g1 = m3 / m2^(3/2)`` and ``G1 = sqrt(N (N - 1)) / (N - 2) * g1``, the estimator of
    ``scipy.stats.skew(bias=False)``. A constant column gives NaN.
    """
    n = x.shape[0]
    g1 = _standard_moment(x, 3, 3)
    return np.sqrt(n * (n - 1.0)) / (n - 2.0) * g1 if n >= 3 else g1


def _kappa(exkurt: np.ndarray) -> np.ndarray:
    """Excess kurtosis used for variance intervals: floored at 0, 0 if unknown."""
    kappa = np.where(np.isfinite(exkurt), exkurt, 0.0)
    return np.maximum(kappa, KURTOSIS_FLOOR)


def _rel_var_s2(n: int, kappa: np.ndarray) -> np.ndarray:
    """Relative variance of the sample variance, ``Var(s2) / V^2 = 2/(N-1) + kappa/N``."""
    return 2.0 / (n - 1) + kappa / n


def _var_interval(s2, n: int, kappa, alpha: float):
    """Kurtosis-adjusted interval for a variance from ``s2`` with ``n`` samples.

    Effective degrees of freedom ``nu = 2 / (2/(N-1) + kappa/N)`` (so that
    ``nu s2 / V`` has the variance ``2 nu`` of a chi-square with ``nu`` df), and
    ``[nu s2 / chi2.ppf(1 - alpha/2, nu), nu s2 / chi2.ppf(alpha/2, nu)]``.
    With ``kappa = 0`` this is the exact chi-square interval with N - 1 df.
    """
    nu = 2.0 / _rel_var_s2(n, np.asarray(kappa, dtype=float))
    lo = nu * s2 / stats.chi2.ppf(1.0 - alpha / 2.0, nu)
    hi = nu * s2 / stats.chi2.ppf(alpha / 2.0, nu)
    return lo, hi


def moments(x, ci: float = 0.90) -> dict[str, np.ndarray]:
    """Per-trait moments of one sample set, with ``ci`` intervals.

    Parameters
    ----------
    x : ndarray, shape (N, K)
        N samples (images) of K traits. N >= 2.
    ci : float, default 0.90
        Coverage of the intervals, ``alpha = 1 - ci``.

    Returns
    -------
    dict of str to ndarray, each of shape (K,)
        ``n``
            Sample size N (int).
        ``mean``, ``mean_lo``, ``mean_hi``
            ``xbar`` and the Student-t interval
            ``xbar -/+ t_{1-alpha/2, N-1} s / sqrt(N)``.
        ``var``, ``var_lo``, ``var_hi``
            ``s2 = sum((x - xbar)^2) / (N - 1)`` and a kurtosis-adjusted interval.
            Since ``Var(s2) ~= V^2 (2/(N-1) + kappa/N)`` with ``kappa`` the excess
            kurtosis, ``nu s2 / V`` is matched to a chi-square with effective degrees
            of freedom ``nu = 2 / (2/(N-1) + kappa/N)``, giving
            ``[nu s2 / chi2_{1-alpha/2}(nu), nu s2 / chi2_{alpha/2}(nu)]``.
            ``kappa`` is ``exkurt`` floored at 0 (0 when N < 4), so the interval is
            never narrower than the exact Gaussian chi-square interval with N - 1 df:
            an unfloored estimate, noisy at small N, under-covers Gaussian traits
            (0.84 for a 90% interval at N = 10). Measured coverage is in
            ``analyses/interval_coverage/results.md``.
        ``skew``
            Bias-corrected sample skewness ``G1 = sqrt(N (N-1)) / (N-2) g1``,
            ``g1 = m3 / m2^(3/2)`` (as ``scipy.stats.skew(bias=False)``). NaN when N < 3.
        ``exkurt``, ``exkurt_lo``, ``exkurt_hi``
            Bias-corrected sample excess kurtosis
            ``G2 = (N-1)/((N-2)(N-3)) ((N+1) g2 + 6)``, ``g2 = m4/m2^2 - 3``
            (as ``scipy.stats.kurtosis(bias=False)``), and the normal interval
            ``G2 -/+ z SES`` with the standard error under normality
            ``SES = sqrt(24 N (N-1)^2 / ((N-3)(N-2)(N+3)(N+5)))``. NaN when N < 4.

    Raises
    ------
    ValueError
        If N < 2, ``x`` is not 1-D or 2-D, or ``ci`` is not in (0, 1).
    """
    alpha = _alpha(ci)
    x = _as_samples(x, "x")
    n, k = x.shape
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))

    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)
    half = stats.t.ppf(1.0 - alpha / 2.0, n - 1) * np.sqrt(var / n)

    exkurt = _excess_kurtosis(x)
    var_lo, var_hi = _var_interval(var, n, _kappa(exkurt), alpha)

    if n >= 4:
        ses = np.sqrt(24.0 * n * (n - 1) ** 2 / ((n - 3) * (n - 2) * (n + 3) * (n + 5)))
    else:
        ses = np.nan

    return {
        "n": np.full(k, n, dtype=int),
        "mean": mean,
        "mean_lo": mean - half,
        "mean_hi": mean + half,
        "var": var,
        "var_lo": var_lo,
        "var_hi": var_hi,
        "skew": _skewness(x),
        "exkurt": exkurt,
        "exkurt_lo": exkurt - z * ses,
        "exkurt_hi": exkurt + z * ses,
    }


def diversity(x, ci: float = 0.90) -> dict[str, float]:
    """Set-level diversity: total variance and log generalized variance.

    With ``S`` the sample covariance (ddof = 1) of the K traits:

    - total variance ``tr S`` with the normal interval ``tr S -/+ z sqrt(2 tr(S^2)/(N-1))``
      (the Gaussian variance of ``tr S``, ``2 tr(Sigma^2)/(N-1)``, with ``S`` plugged in;
      the lower end can be negative for small N);
    - ``logdet_raw = log det S`` (``-inf`` when ``S`` is singular);
    - the bias-corrected log generalized variance
      ``logdet = log det S - [sum_{i=1..K} psi((N-i)/2) + K log(2/(N-1))]``.
      Because ``(N-1) S ~ Wishart_K(Sigma, N-1)`` for Gaussian data,
      ``E[log det S] = log det Sigma + sum_i psi((N-i)/2) + K log(2/(N-1))``, so
      ``logdet`` is unbiased for ``log det Sigma``, and
      ``Var(log det S) = sum_{i=1..K} psi'((N-i)/2)`` exactly (``psi'`` the trigamma
      function), giving ``logdet -/+ z sqrt(sum_i psi'((N-i)/2))``.

    Parameters
    ----------
    x : ndarray, shape (N, K)
        N samples of K traits. N >= 2.
    ci : float, default 0.90
        Coverage of the intervals.

    Returns
    -------
    dict
        ``n``, ``k`` (int); ``total_var``, ``total_var_lo``, ``total_var_hi``,
        ``logdet_raw``, ``logdet``, ``logdet_lo``, ``logdet_hi`` (float). When
        N <= K the covariance is singular and the log determinant is undefined:
        ``logdet_raw`` is ``-inf``, the ``logdet`` fields are NaN and an extra key
        ``logdet_note`` (str) says why.

    Raises
    ------
    ValueError
        If N < 2, ``x`` is not 1-D or 2-D, or ``ci`` is not in (0, 1).
    """
    alpha = _alpha(ci)
    x = _as_samples(x, "x")
    n, k = x.shape
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))

    cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
    total_var = float(np.trace(cov))
    total_sd = float(np.sqrt(2.0 * np.sum(cov * cov) / (n - 1)))  # tr(S^2) = sum S_ij^2
    out: dict = {
        "n": n,
        "k": k,
        "total_var": total_var,
        "total_var_lo": total_var - z * total_sd,
        "total_var_hi": total_var + z * total_sd,
    }

    if n <= k:
        out.update(
            logdet_raw=-np.inf,
            logdet=np.nan,
            logdet_lo=np.nan,
            logdet_hi=np.nan,
            logdet_note=f"log det of the covariance needs N > K; got N = {n}, K = {k}",
        )
        return out

    sign, raw = np.linalg.slogdet(cov)
    raw = float(raw) if sign > 0 else -np.inf
    half_dof = (n - np.arange(1, k + 1)) / 2.0
    bias = float(np.sum(special.digamma(half_dof)) + k * np.log(2.0 / (n - 1)))
    sd = float(np.sqrt(np.sum(special.polygamma(1, half_dof))))
    logdet = raw - bias
    out.update(
        logdet_raw=raw,
        logdet=logdet,
        logdet_lo=logdet - z * sd,
        logdet_hi=logdet + z * sd,
    )
    return out


def selection(guided, w1, ci: float = 0.90) -> dict[str, np.ndarray]:
    """Compute the selection differential and variance ratio, guided set over w = 1 probe.

    The w = 1 probe is the learned population before selection, the guided set the
    selected parents (spec section 1, "Probe samples").

    - ``S = mean(guided) - mean(w1)`` with the Welch interval
      ``S -/+ t_{1-alpha/2, df} sqrt(s_g^2/N_g + s_w^2/N_w)``, with the
      Welch-Satterthwaite
      ``df = (s_g^2/N_g + s_w^2/N_w)^2 / ((s_g^2/N_g)^2/(N_g-1) + (s_w^2/N_w)^2/(N_w-1))``.
    - ``var_ratio = s_g^2 / s_w^2`` with a delta-method interval on the log scale:
      ``Var(log s2) ~= 2/(N-1) + kappa/N`` per set (``kappa`` the floored excess
      kurtosis as in :func:`moments`), so the interval is
      ``var_ratio * exp(-/+ z sqrt(sum over both sets))``.

    Parameters
    ----------
    guided : ndarray, shape (N_g, K)
        Guided samples (the next training set). N_g >= 2.
    w1 : ndarray, shape (N_w, K)
        Samples of the same K traits drawn without guidance (w = 1). N_w >= 2.
    ci : float, default 0.90
        Coverage of the intervals.

    Returns
    -------
    dict of str to ndarray, each of shape (K,)
        ``S``, ``S_lo``, ``S_hi``, ``var_ratio``, ``var_ratio_lo``, ``var_ratio_hi``.

    Raises
    ------
    ValueError
        If either set has fewer than 2 samples, the trait counts differ, or ``ci`` is
        not in (0, 1).
    """
    alpha = _alpha(ci)
    g = _as_samples(guided, "guided")
    w = _as_samples(w1, "w1")
    if g.shape[1] != w.shape[1]:
        raise ValueError(
            f"guided and w1 must have the same number of traits; got {g.shape[1]} and {w.shape[1]}"
        )
    ng, nw = g.shape[0], w.shape[0]
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))

    vg = g.var(axis=0, ddof=1)
    vw = w.var(axis=0, ddof=1)
    diff = g.mean(axis=0) - w.mean(axis=0)
    ag, aw = vg / ng, vw / nw
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (ag + aw) ** 2 / (ag**2 / (ng - 1) + aw**2 / (nw - 1))
        half = stats.t.ppf(1.0 - alpha / 2.0, df) * np.sqrt(ag + aw)
        ratio = vg / vw
    log_sd = np.sqrt(
        _rel_var_s2(ng, _kappa(_excess_kurtosis(g))) + _rel_var_s2(nw, _kappa(_excess_kurtosis(w)))
    )
    return {
        "S": diff,
        "S_lo": diff - half,
        "S_hi": diff + half,
        "var_ratio": ratio,
        "var_ratio_lo": ratio * np.exp(-z * log_sd),
        "var_ratio_hi": ratio * np.exp(z * log_sd),
    }


def realized_h2(
    parent_mean,
    learned_next_mean,
    anchor: str,
    base_mean=None,
    learned_mean=None,
    ci: float = 0.90,
) -> dict:
    """Realized heritability: slope of the offspring mean on the parents' mean.

    All trajectories have shape (G, K): row ``t`` holds generation ``t``'s guided-set
    mean ``mu_t`` (``parent_mean``), the mean ``m_{t+1}`` of the w = 1 probe of the model
    finetuned on that set (``learned_next_mean``) and, for ``anchor="previous"``, the
    w = 1 probe mean ``m_t`` of generation ``t`` itself (``learned_mean``).

    Per trait, a least-squares line through the origin ``y = h2 x`` is fitted over the
    rows where both ``x`` and ``y`` are finite (``n`` of them):
    ``h2 = sum(x y) / sum(x^2)``,
    ``se = sqrt(sum((y - h2 x)^2) / (n - 1) / sum(x^2))``, and the interval is
    ``h2 -/+ t_{1-alpha/2, n-1} se``.

    - ``anchor="base"`` (method ``"regression_from_base"``): the inheritance map is
      ``m_{t+1} = m_b + h2 (mu_t - m_b)``, so ``y = m_{t+1} - m_b`` is regressed on
      ``x = mu_t - m_b`` with ``m_b = base_mean``.
    - ``anchor="previous"`` (method ``"response_over_selection"``): the breeder's
      equation ``R_t = h2 S_t`` with response ``R_t = m_{t+1} - m_t`` and selection
      differential ``S_t = mu_t - m_t``; ``y = R``, ``x = S``.

    Why not ``R / S`` when ``anchor="base"``: each finetune restarts from the base
    model, so ``m_{t+1} - m_t = (h2 - 1)(m_t - m_b) + h2 S_t``. At equilibrium
    (``m_{t+1} = m_t``) the response is 0 while selection ``S_t`` stays non-zero, so
    ``R/S -> 0`` whatever ``h2`` is. The regression measured from the base mean does
    not have this problem.

    Parameters
    ----------
    parent_mean : ndarray, shape (G, K)
        Guided-set means ``mu_t``.
    learned_next_mean : ndarray, shape (G, K)
        Next generation's w = 1 probe means ``m_{t+1}``.
    anchor : {"base", "previous"}
        What each finetune starts from.
    base_mean : ndarray, shape (K,), optional
        Base model's conditional mean ``m_b`` (the generation-0 w = 1 probe);
        required for ``anchor="base"``.
    learned_mean : ndarray, shape (G, K), optional
        Same-generation w = 1 probe means ``m_t``; required for ``anchor="previous"``.
    ci : float, default 0.90
        Coverage of the interval.

    Returns
    -------
    dict
        ``h2``, ``h2_lo``, ``h2_hi`` (float arrays, shape (K,)), ``n_pairs`` (int
        array, shape (K,)), ``method`` (str). With one usable pair, ``h2 = y/x`` and
        the interval is NaN; with none (or ``sum(x^2) = 0``), everything is NaN.

    Raises
    ------
    ValueError
        If ``anchor`` is unknown, the argument it needs is missing, or shapes differ.
    """
    alpha = _alpha(ci)
    parent = _as_samples(parent_mean, "parent_mean", min_n=0)
    nxt = _as_samples(learned_next_mean, "learned_next_mean", min_n=0)
    if parent.shape != nxt.shape:
        raise ValueError(
            f"parent_mean and learned_next_mean must have the same shape (G, K); "
            f"got {parent.shape} and {nxt.shape}"
        )
    k = parent.shape[1]

    if anchor == "base":
        if base_mean is None:
            raise ValueError('anchor="base" needs base_mean (the base model\'s mean, shape (K,))')
        mb = np.asarray(base_mean, dtype=float).reshape(-1)
        if mb.shape != (k,):
            raise ValueError(f"base_mean must have shape ({k},); got {np.shape(base_mean)}")
        x, y = parent - mb, nxt - mb
        method = "regression_from_base"
    elif anchor == "previous":
        if learned_mean is None:
            raise ValueError('anchor="previous" needs learned_mean (m_t, shape (G, K))')
        m = _as_samples(learned_mean, "learned_mean", min_n=0)
        if m.shape != parent.shape:
            raise ValueError(f"learned_mean must have shape {parent.shape}; got {m.shape}")
        x, y = parent - m, nxt - m
        method = "response_over_selection"
    else:
        raise ValueError(f'unknown anchor {anchor!r}; expected "base" or "previous"')

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    n = ok.sum(axis=0)
    sxx = np.sum(x * x, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h2 = np.where(sxx > 0, np.sum(x * y, axis=0) / sxx, np.nan)
        rss = np.sum(np.where(ok, (y - h2 * x) ** 2, 0.0), axis=0)
        se = np.sqrt(rss / (n - 1) / sxx)
    h2 = np.where(n > 0, h2, np.nan)
    df = np.maximum(n - 1, 1)  # placeholder df where n < 2; masked to NaN below
    half = np.where(n >= 2, stats.t.ppf(1.0 - alpha / 2.0, df) * se, np.nan)
    return {
        "h2": h2,
        "h2_lo": h2 - half,
        "h2_hi": h2 + half,
        "n_pairs": n.astype(int),
        "method": method,
    }
