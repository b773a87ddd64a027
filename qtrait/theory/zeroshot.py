"""Zero-shot predictions: the generation map run forward from generation 0 (numpy only).

From generation-0 statistics (the real data's moments and the base model's conditional
and unconditional moments), an assumed h2, and the planned guidance, schedule and
condition drop, :func:`zero_shot` iterates the generation map on expected moments and
reports the trajectory and the horizons of theory.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .generation import Generation0, MapParams, predict
from .horizon import REASONS, Criteria, drift_metric, pooled_statistics, run_horizon, trait_horizons
from .sampler import invert_w1_moments

#: Adaptations of the unconditional branch reported when condition drop is planned but its
#: effect rho is not known (theory.md 2.3: rho is measured, never assumed).
RHO_GRID = (0.1, 0.25, 0.5, 0.75)


@dataclass
class Prediction:
    """A zero-shot trajectory and its horizons (arrays: generation first, then the shape
    of the generation-0 inputs, e.g. (concept, trait))."""

    trajectory: dict[str, np.ndarray]
    t_star: np.ndarray            # per trait, -1 = none within T_max
    reason: np.ndarray            # index into REASONS, -1 = none
    run_t_star: int | None
    run_reason: str | None
    invalid_at: int | None        # first generation where the tilt stops existing
    criteria: Criteria
    #: the trajectory the run level pools: a cell whose map becomes invalid at any
    #: generation is left out from generation 0 on (with every other cell of its trait,
    #: as a trait constant in one concept is), so the pool is one set of cells throughout
    run_trajectory: dict

    def trait_reason(self, idx) -> str | None:
        r = int(self.reason[idx])
        return REASONS[r] if r >= 0 else None


def zero_shot(g0: Generation0, params: MapParams, criteria: Criteria = Criteria(),
              axes: np.ndarray | None = None, correlation: np.ndarray | None = None
              ) -> Prediction:
    """Run the map forward for ``criteria.t_max`` generations and find the horizons.

    ``axes`` (a boolean mask or indices over the last axis) selects the traits of the
    run-level statistic (theory.md: the K trait axes); default all. ``correlation``
    (concept, trait, trait) is generation 0's correlation matrix per concept over all
    traits (default: uncorrelated), the drift metric of the run's
    horizon (theory.md 3.1). Traits whose
    generation-0 moments are NaN (e.g. constant there) get no horizon and are left out of
    the run level.
    """
    traj = predict(g0, params, criteria.t_max)
    mean, var = traj["guided_mean"], traj["guided_var"]
    with np.errstate(invalid="ignore", divide="ignore"):
        t_star, reason = trait_horizons(mean, var, g0.m_uncond, criteria)
    ever_invalid = ~traj["valid"].all(axis=0)
    run_traj = {k: np.where(ever_invalid, np.nan, traj[k]) for k in ("guided_mean",
                                                                      "guided_var")}
    mean, var = run_traj["guided_mean"], run_traj["guided_var"]
    if mean.ndim == 1:   # a single trait: run-level = trait-level
        run_t, run_r = ((int(t_star), REASONS[int(reason)]) if t_star > 0 else (None, None))
    else:
        sel = slice(None) if axes is None else axes
        corr = None
        if correlation is not None:
            idx = np.arange(mean.shape[-1])[sel]
            corr = np.asarray(correlation)[:, idx][:, :, idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            run_t, run_r = run_horizon(mean[..., sel], var[..., sel], criteria, corr)
    finite0 = np.isfinite(traj["guided_var"][0])
    invalid = np.flatnonzero(~(traj["valid"] | ~finite0).reshape(len(mean), -1).all(axis=1))
    return Prediction(traj, t_star, reason, run_t, run_r,
                      int(invalid[0]) if len(invalid) else None, criteria, run_traj)


def rho_sweep(g0: Generation0, params: MapParams, criteria: Criteria = Criteria(),
              rhos=RHO_GRID, axes=None, correlation=None) -> list[tuple[float, Prediction]]:
    """Horizons for a range of rho, when condition drop is planned but rho is unknown."""
    return [(rho, zero_shot(g0, replace(params, rho=rho), criteria, axes, correlation))
            for rho in rhos]


def generation0_from_moments(guided, w1, uncond, params: MapParams) -> Generation0:
    """Generation 0 from measured moments: ``guided`` = (mean, var) of D_0, ``w1`` and
    ``uncond`` = the base model's probe moments. For the exact model, the probes' moments
    are inverted through the sampler at w = 1 to give the model's moments."""
    (mb, vb), (mu_, vu) = w1, uncond
    if params.model == "exact":
        mb, vb = invert_w1_moments(mb, vb, params.sampler)
        mu_, vu = invert_w1_moments(mu_, vu, params.sampler)
    return Generation0.of(mean0=guided[0], var0=guided[1], m_base=mb, v_base=vb,
                          m_uncond=mu_, v_uncond=vu)


def pooled_trajectory(trajectory: dict, correlation: np.ndarray | None = None, axes=None):
    """The run's pooled statistics (theory.md 3.1) of a predicted trajectory: (R_t, D2_t,
    K) over the traits selected by ``axes`` that are finite at generation 0."""
    mean, var = trajectory["guided_mean"], trajectory["guided_var"]
    if mean.ndim == 1:
        mean, var = mean[:, None], var[:, None]
    if mean.ndim == 2:
        mean, var = mean[:, None, :], var[:, None, :]
    idx = np.arange(mean.shape[-1])[slice(None) if axes is None else axes]
    keep = idx[np.isfinite(var[0][:, idx]).all(axis=0)]
    if not len(keep):   # every trait left out (constant, or its map invalid)
        nan = np.full(len(mean), np.nan)
        return nan, nan.copy(), 0
    mean, var = mean[..., keep], var[..., keep]
    C, K = mean.shape[1:]
    prec = np.broadcast_to(np.eye(K), (C, K, K)) if correlation is None else \
        drift_metric(np.asarray(correlation)[:, keep][:, :, keep])
    with np.errstate(invalid="ignore", divide="ignore"):
        R, D2 = pooled_statistics(mean, var, prec)
    return R, D2, K


def run_trajectory_table(pred: Prediction, correlation: np.ndarray | None = None,
                         axes=None) -> dict[str, np.ndarray]:
    """The run's pooled statistics per generation (theory.md 3.1): the variance ratio R_t
    and the drift D2_t (squared Mahalanobis distance, in generation 0's metric), with the
    drift threshold tau_K."""
    R, D2, K = pooled_trajectory(pred.run_trajectory, correlation, axes)
    return {"var_ratio": R, "drift2": D2,
            "drift_threshold": np.full(len(R), pred.criteria.drift_threshold(K))}
