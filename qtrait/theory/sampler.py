"""The exact Gaussian CFG sampler map (numpy only).

For a scalar trait whose conditional and unconditional distributions are Gaussian,
N(m, u) and N(m_u, V_u), the optimal noise prediction at noise level alpha_bar is linear
in the sample:

    eps_hat(x) = sqrt(1 - ab) (x - sqrt(ab) m) / (ab u + 1 - ab),

so classifier-free guidance, eps_u + w (eps_c - eps_u), is linear too, and so is every DDIM
or DDPM update. A Gaussian x_T therefore stays Gaussian through the whole sampler, and its
mean and variance can be propagated exactly, step by step: mean' = A mean + B,
var' = A^2 var (+ the DDPM noise variance). This is what real CFG does to a Gaussian trait,
for any guidance schedule over steps, unlike the tilt p(x|c)^w p(x)^(1-w), which is what CFG
would do if it sampled the tilted density (theory.md section 2).

Everything is vectorised: the moments broadcast against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .schedules import GuidanceSchedule, Sampler, as_guidance


def _eps_affine(ab, m, v):
    """eps_hat(x) = a x + b for data N(m, v) at noise level ab."""
    s = ab * v + 1.0 - ab
    a = np.sqrt(1.0 - ab) / s
    return a, -a * np.sqrt(ab) * m


def gaussian_cfg_map(m, u, m_uncond, v_uncond, guidance: GuidanceSchedule | float,
                     sampler: Sampler | None = None, x_mean: float = 0.0,
                     x_var: float = 1.0, gain=1.0):
    """Mean and variance of the samples of guided sampling, exactly.

    Parameters
    ----------
    m, u : array_like
        Conditional mean and variance of the trait (the learned model at w = 1).
    m_uncond, v_uncond : array_like
        Unconditional mean and variance.
    guidance : GuidanceSchedule or float
        Guidance scale per step (a float is a constant scale).
    sampler : Sampler
        Scheduler, step count, spacing and prediction type (default: DDIM, 50 steps).
    x_mean, x_var : float
        Distribution of x_T (default N(0, 1)).
    gain : array_like
        Selection gain kappa: every step uses ``1 + kappa (w(s) - 1)`` (theory.md 2.2,
        the fitted models' effective selection strength); 1 leaves the schedule as is,
        0 turns guidance off.

    Returns
    -------
    mean, var : ndarray
        Moments of the final samples, broadcast from the inputs.

    Notes
    -----
    The moments enter only through arithmetic, and the schedule (noise levels, guidance
    per step) is plain numbers, so the same function also builds a symbolic graph when
    given PyTensor variables: a fitted model's likelihood can call exactly this map.
    """
    sampler = sampler or Sampler()
    symbolic = not all(isinstance(a, (int, float, np.ndarray, np.generic))
                       for a in (m, u, m_uncond, v_uncond, gain))
    if not symbolic:
        m, u, m_uncond, v_uncond = np.broadcast_arrays(
            *(np.asarray(a, dtype=float) for a in (m, u, m_uncond, v_uncond)))
    consts = _step_constants(sampler)
    ws = as_guidance(guidance).values(len(consts))
    zero = 0.0 * (m + u + m_uncond + v_uncond)   # broadcasts numpy and symbolic alike
    mean = zero + float(x_mean)
    var = zero + float(x_var)
    kind = (sampler.scheduler, sampler.prediction_type)
    if symbolic:
        # a scan over the steps: the same step function, and a graph whose size does not
        # grow with the step count (unrolled, PyTensor's rewrites take minutes)
        import pytensor
        import pytensor.tensor as pt

        def body(c, w, mean, var, m, u, mu, vu, gain):
            return _cfg_step(mean, var, c, w, m, u, mu, vu, gain, kind)

        kwargs = dict(sequences=[pt.as_tensor(consts), pt.as_tensor(ws)],
                      outputs_info=[pt.as_tensor(mean), pt.as_tensor(var)],
                      non_sequences=[m, u, m_uncond, v_uncond, pt.as_tensor(gain)])
        try:
            out = pytensor.scan(body, return_updates=False, **kwargs)
        except TypeError:   # PyTensor before the return_updates argument
            out, _ = pytensor.scan(body, **kwargs)
        return out[0][-1], out[1][-1]
    for c, w in zip(consts, ws):
        mean, var = _cfg_step(mean, var, c, w, m, u, m_uncond, v_uncond, gain, kind)
    return mean, var


def _step_constants(sampler: Sampler) -> np.ndarray:
    """Per step: sqrt(ab), sqrt(1-ab), sqrt(ab_prev), sqrt(1-ab_prev), the DDPM
    coefficients c0, c1 and its noise variance (plain numbers of the schedule)."""
    rows = []
    for ab, ab_prev, noisy in sampler.alpha_bar_pairs():
        alpha = ab / ab_prev
        beta = 1.0 - alpha
        c0 = np.sqrt(ab_prev) * beta / (1.0 - ab)
        c1 = np.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab)
        noise = noisy * max((1.0 - ab_prev) / (1.0 - ab) * beta, 1e-20)
        rows.append((np.sqrt(ab), np.sqrt(1.0 - ab), np.sqrt(ab_prev),
                     np.sqrt(1.0 - ab_prev), c0, c1, noise))
    return np.array(rows, dtype=float)


def _eps_affine(sa, sb, m, v):
    """eps_hat(x) = a x + b for data N(m, v) at noise level ab = sa^2 (sb^2 = 1 - ab)."""
    s = sa * sa * v + sb * sb
    a = sb / s
    return a, -a * sa * m


def _cfg_step(mean, var, c, w, m, u, m_uncond, v_uncond, gain, kind):
    """One sampler step of the moments (numpy or PyTensor alike: arithmetic only)."""
    scheduler, prediction = kind
    sa, sb, sap, sbp, c0, c1, noise = (c[i] for i in range(7))
    w = 1.0 + gain * (w - 1.0)
    ac, bc = _eps_affine(sa, sb, m, u)
    au, bu = _eps_affine(sa, sb, m_uncond, v_uncond)
    # guided noise prediction eps(x) = ae x + be. For v-prediction the model outputs
    # v = (eps - sqrt(1-ab) x) / sqrt(ab), affine in eps with branch-independent
    # coefficients, so guiding v and converting back gives the same eps; it is written
    # out to mirror the scheduler.
    ae, be = au + w * (ac - au), bu + w * (bc - bu)
    if prediction == "v_prediction":
        av, bv = (ae - sb) / sa, be / sa                    # v(x) = av x + bv
        ax0, bx0 = sa - sb * av, -sb * bv                   # x0 = sa x - sb v
        ae, be = sa * av + sb, sa * bv                      # eps = sa v + sb x
    else:
        ax0 = (1.0 - sb * ae) / sa                          # x0 = (x - sb eps) / sa
        bx0 = -sb * be / sa
    if scheduler == "ddim":
        A = sap * ax0 + sbp * ae
        B = sap * bx0 + sbp * be
        return A * mean + B, A * A * var
    A = c0 * ax0 + c1                                       # ddpm, "fixed_small"
    B = c0 * bx0
    return A * mean + B, A * A * var + noise


@dataclass(frozen=True)
class ScheduleSummary:
    """A guidance schedule summarised by two numbers (theory.md section 2.4)."""

    variance_ratio: float   # guided variance / w=1 variance (same sampler)
    w_eff: float            # the constant scale with the same variance ratio
    mean_shift: float       # (guided mean - w=1 mean) / w=1 standard deviation


def summarize_schedule(guidance: GuidanceSchedule | float, m, u, m_uncond, v_uncond,
                       sampler: Sampler | None = None, w_max: float = 50.0) -> ScheduleSummary:
    """Variance ratio, equivalent constant w and mean shift of a schedule (scalars).

    ``w_eff`` is found by root-finding on the constant-w variance ratio, which decreases
    monotonically in w when u < V_u; it is NaN when no constant w in [0, w_max] matches.
    """
    sampler = sampler or Sampler()
    g_mean, g_var = gaussian_cfg_map(m, u, m_uncond, v_uncond, guidance, sampler)
    w1_mean, w1_var = gaussian_cfg_map(m, u, m_uncond, v_uncond, 1.0, sampler)
    ratio = float(g_var / w1_var)

    def gap(w):
        return float(gaussian_cfg_map(m, u, m_uncond, v_uncond, w, sampler)[1] / w1_var) - ratio

    try:
        w_eff = optimize.brentq(gap, 0.0, w_max, xtol=1e-10)
    except ValueError:
        w_eff = float("nan")
    return ScheduleSummary(ratio, float(w_eff), float((g_mean - w1_mean) / np.sqrt(w1_var)))


def sampler_variance_factor(sampler: Sampler, m: float = 0.0, u: float = 1.0,
                            m_uncond: float = 0.0, v_uncond: float = 1.0) -> float:
    """Variance after sampling at w = 1 over the model's variance u: the sampler's own
    variance loss per generation (1 for an exact sampler)."""
    return float(gaussian_cfg_map(m, u, m_uncond, v_uncond, 1.0, sampler)[1] / u)


def invert_w1_moments(mean, var, sampler: Sampler | None = None, tol: float = 1e-12,
                      max_iter: int = 200):
    """The model moments (m, u) whose unguided samples (w = 1) have the given moments.

    A finite-step sampler does not reproduce the model's variance (it loses some), so a
    probe's moments are not the model's. At w = 1 only the conditional branch acts, so the
    inversion is per trait: a fixed-point iteration on m and log u (it converges in a few
    steps because the map is nearly the identity).
    """
    sampler = sampler or Sampler()
    mean, var = np.broadcast_arrays(np.asarray(mean, dtype=float),
                                    np.asarray(var, dtype=float))
    m, u = mean.copy(), var.copy()
    for _ in range(max_iter):
        gm, gv = gaussian_cfg_map(m, u, m, u, 1.0, sampler)
        dm, dlog = mean - gm, np.log(var / gv)
        m, u = m + dm, u * np.exp(dlog)
        ok = np.isfinite(dm) & np.isfinite(dlog)   # NaN inputs stay NaN
        if np.all(np.abs(dm[ok]) < tol) and np.all(np.abs(dlog[ok]) < tol):
            break
    return m, u
