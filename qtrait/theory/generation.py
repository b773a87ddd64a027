"""The generation map of a Chain of Diffusion (theory.md section 2; numpy only).

One generation, per trait and concept (arrays broadcast):

1. inheritance: finetuning on the previous guided set, whose *observed* moments
   (zbar, s2) are the input, regresses toward the anchor with heritability h2;
2. condition drop adapts the unconditional branch toward the learned conditional (rho);
3. selection: guidance, either the tilt (closed form, constant w) or the exact Gaussian
   sampler map (any schedule, any sampler);
4. mutation: V_m added to the guided set at sampling time.

The ``breeder`` model replaces 1-3 by V' = lambda s2 + V_m and
mu' - c = (1 + gamma)(zbar - c).

:func:`generation_step` is shared by the simulator (fed the observed moments of sampled
sets) and by the zero-shot predictions (fed the expected moments): one map, two uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .closed_forms import adapt_uncond, inherit, tilt
from .sampler import gaussian_cfg_map
from .schedules import GuidanceSchedule, Sampler

MODELS = ("breeder", "tilt", "exact")
_TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class Generation0:
    """What is known at generation 0, per trait (arrays broadcast).

    ``mean0, var0``: the real finetuning data D_0; ``m_base, v_base``: the base model's
    conditional distribution (its w = 1 probe); ``m_uncond, v_uncond``: its unconditional
    distribution (the unconditional probe).
    """

    mean0: np.ndarray
    var0: np.ndarray
    m_base: np.ndarray
    v_base: np.ndarray
    m_uncond: np.ndarray
    v_uncond: np.ndarray

    @classmethod
    def of(cls, **kw) -> "Generation0":
        return cls(**{k: np.asarray(v, dtype=float) for k, v in kw.items()})


@dataclass(frozen=True)
class MapParams:
    """Parameters of the generation map (arrays broadcast against the traits).

    ``model``: ``breeder``, ``tilt`` or ``exact``. ``tilt`` needs a constant guidance
    schedule (a schedule has no tilt form, theory.md 2.4). ``lam``, ``gamma``, ``center``
    are the breeder's (``center`` defaults to the unconditional mean).
    """

    model: str = "exact"
    h2: np.ndarray | float = 0.9
    anchor: str = "base"
    guidance: GuidanceSchedule = field(default_factory=lambda: GuidanceSchedule("constant",
                                                                                 7.5))
    sampler: Sampler = field(default_factory=Sampler)
    rho: float = 0.0
    v_mut: np.ndarray | float = 0.0
    mixture: bool = False
    lam: np.ndarray | float = 0.9
    gamma: np.ndarray | float = 0.0
    center: np.ndarray | float | None = None
    #: selection gain kappa (w_eff - 1 = kappa (w - 1)); the fitted models' parameter
    gain: np.ndarray | float = 1.0
    #: variance retention r of finetuning: the learned conditional's variance is r times
    #: the inheritance's (1 = finetuning reproduces its data's spread; docs/theory.md 4.6)
    retention: np.ndarray | float = 1.0

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.anchor not in ("base", "previous"):
            raise ValueError(f"anchor must be 'base' or 'previous', got {self.anchor!r}")
        if self.model == "tilt" and self.guidance.kind != "constant":
            raise ValueError("the tilt model has no form for a guidance schedule "
                             f"({self.guidance.describe()}); use model 'exact'")
        if np.any(np.asarray(self.rho) < 0) or np.any(np.asarray(self.rho) > 1):
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        if np.any(np.asarray(self.h2) < 0) or np.any(np.asarray(self.h2) > 1):
            raise ValueError("h2 must be in [0, 1]")
        if np.any(np.asarray(self.v_mut) < 0):
            raise ValueError("the mutation variance must be >= 0")
        if np.any(np.asarray(self.retention) <= 0) or np.any(np.asarray(self.retention) > 1):
            raise ValueError(f"retention must be in (0, 1], got {self.retention}")


@dataclass
class StepResult:
    """Moments produced by one generation (all arrays)."""

    learned_mean: np.ndarray     # the finetuned model at w = 1 (the "population")
    learned_var: np.ndarray
    uncond_mean: np.ndarray      # its unconditional branch
    uncond_var: np.ndarray
    guided_mean: np.ndarray      # the guided set (the next training data)
    guided_var: np.ndarray
    w1_mean: np.ndarray          # what the w = 1 probe samples
    w1_var: np.ndarray
    uncond_probe_mean: np.ndarray
    uncond_probe_var: np.ndarray
    valid: np.ndarray            # False where the tilt (or the exact map) is invalid


def exact_map_valid(params: MapParams, u, vu, guidance) -> np.ndarray:
    """Where the exact Gaussian CFG map is valid: the guided score's precision at the end
    of sampling, w/u - (w - 1)/V_u, positive for every guidance value w_eff of the
    schedule (w_eff = 1 + kappa (w - 1)). Where it is not (a learned conditional wider than
    w/(w - 1) times the unconditional), guidance pushes samples apart at every small noise
    level and the Gaussian map's variance grows without bound: the map does not describe
    the sampler there (theory.md 2.2, the tilt's condition)."""
    g = guidance if isinstance(guidance, GuidanceSchedule) else GuidanceSchedule(
        "constant", float(guidance))
    w = 1.0 + np.asarray(params.gain)[..., None] * (g.values(params.sampler.steps) - 1.0)
    w_max = np.max(w, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = w_max / np.asarray(u) - (w_max - 1.0) / np.asarray(vu)
    return (w_max <= 1.0) | (prec > 0)


def _sample_moments(params: MapParams, m, u, mu_, vu, guidance):
    """Moments of sampling with ``guidance``: the tilt or the exact sampler map, and where
    they are valid (:func:`exact_map_valid` for the exact map)."""
    if params.model == "tilt":
        w = float(guidance.values(1)[0]) if isinstance(guidance, GuidanceSchedule) else guidance
        return tilt(m, u, mu_, vu, 1.0 + np.asarray(params.gain) * (w - 1.0))
    mean, var = gaussian_cfg_map(m, u, mu_, vu, guidance, params.sampler, gain=params.gain)
    valid = np.broadcast_to(exact_map_valid(params, u, vu, guidance), np.shape(mean))
    return mean, var, valid


def generation0_probes(g0: Generation0, params: MapParams):
    """Moments of the base model's probes (w = 1 and unconditional) at generation 0."""
    w1 = _sample_moments(params, g0.m_base, g0.v_base, g0.m_uncond, g0.v_uncond, 1.0)
    un = _sample_moments(params, g0.m_uncond, g0.v_uncond, g0.m_uncond, g0.v_uncond, 1.0)
    return w1[:2], un[:2]


def generation_step(obs_mean, obs_var, previous_learned: tuple, g0: Generation0,
                    params: MapParams, learn_noise: tuple | None = None) -> StepResult:
    """One generation from the observed moments of the previous guided set.

    ``previous_learned`` = (mean, var) of the previous model at w = 1 (the base model's
    for generation 1); it is the anchor when ``anchor = previous``. ``learn_noise`` =
    (delta_mean, delta_log_var) adds the learning noise of finetuning (simulation only).
    """
    obs_mean = np.asarray(obs_mean, dtype=float)
    # a guided set whose images are identical to float precision has s2 = 0; the model
    # trained on it is degenerate, and the smallest positive double stands in for 0
    obs_var = np.maximum(np.asarray(obs_var, dtype=float), _TINY)
    if params.model == "breeder":
        center = g0.m_uncond if params.center is None else params.center
        gm = center + (1.0 + np.asarray(params.gamma)) * (obs_mean - center)
        gv = np.asarray(params.lam) * obs_var + params.v_mut
        if learn_noise is not None:
            gm = gm + learn_noise[0]
            gv = gv * np.exp(learn_noise[1])
        nan = np.full(np.shape(gm), np.nan)
        return StepResult(nan, nan, g0.m_uncond + 0 * gm, g0.v_uncond + 0 * gm, gm, gv,
                          nan, nan, nan, nan, np.ones(np.shape(gm), dtype=bool))
    if params.anchor == "base":
        m_a, v_a = g0.m_base, g0.v_base
    else:
        m_a, v_a = previous_learned
    m, u = inherit(obs_mean, obs_var, m_a, v_a, params.h2)
    if params.mixture:
        h2 = np.asarray(params.h2)
        u = u + h2 * (1.0 - h2) * (obs_mean - m_a) ** 2
    u = u * np.asarray(params.retention)
    if learn_noise is not None:
        m = m + learn_noise[0]
        u = u * np.exp(learn_noise[1])
    mu_, vu = adapt_uncond(g0.m_uncond, g0.v_uncond, m, u, params.rho)
    gm, gv, valid = _sample_moments(params, m, u, mu_, vu, params.guidance)
    gv = gv + params.v_mut
    w1m, w1v, _ = _sample_moments(params, m, u, mu_, vu, 1.0)
    um, uv, _ = _sample_moments(params, mu_, vu, mu_, vu, 1.0)
    return StepResult(m, u, mu_, vu, gm, gv, w1m, w1v, um, uv, valid)


def predict(g0: Generation0, params: MapParams, generations: int) -> dict[str, np.ndarray]:
    """Zero-shot trajectory: iterate the map on expected moments (no sampling noise).

    Returns arrays with a leading generation axis 0..generations: ``guided_mean``,
    ``guided_var`` (generation 0 = the real data), ``learned_mean``, ``learned_var``,
    ``uncond_mean``, ``uncond_var`` and ``valid``. Once the tilt stops existing the
    trajectory is NaN from there on.
    """
    shape = np.broadcast(g0.mean0, g0.var0, g0.m_base, g0.v_base, g0.m_uncond,
                         g0.v_uncond).shape
    keys = ("guided_mean", "guided_var", "learned_mean", "learned_var", "uncond_mean",
            "uncond_var")
    out = {k: np.full((generations + 1,) + shape, np.nan) for k in keys}
    out["valid"] = np.ones((generations + 1,) + shape, dtype=bool)
    out["guided_mean"][0] = g0.mean0
    out["guided_var"][0] = g0.var0
    out["learned_mean"][0], out["learned_var"][0] = g0.m_base, g0.v_base
    out["uncond_mean"][0], out["uncond_var"][0] = g0.m_uncond, g0.v_uncond
    prev = (np.broadcast_to(g0.m_base, shape), np.broadcast_to(g0.v_base, shape))
    for t in range(1, generations + 1):
        with np.errstate(invalid="ignore"):
            r = generation_step(out["guided_mean"][t - 1], out["guided_var"][t - 1], prev,
                                g0, params)
        valid = r.valid & out["valid"][t - 1]
        out["valid"][t] = valid
        out["guided_mean"][t] = np.where(valid, r.guided_mean, np.nan)
        out["guided_var"][t] = np.where(valid, r.guided_var, np.nan)
        out["learned_mean"][t], out["learned_var"][t] = r.learned_mean, r.learned_var
        out["uncond_mean"][t], out["uncond_var"][t] = r.uncond_mean, r.uncond_var
        prev = (r.learned_mean, r.learned_var)
    return out
