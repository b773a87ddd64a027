"""Prior predictive checks: do a model's priors allow the data, without being absurd?

Parameters are drawn from the model's priors (PyMC's prior sampling of the free
variables and the deterministics that depend only on them and on the data), and each
draw's generation map is run forward from generation 0's observed guided set with the
model's own sampling and learning noise, exactly as a forecast is (:mod:`qtrait.forecast`).
The observed guided means and log variances of generations 1..G-1 are then placed in
the prior predictive distribution: the check reports the fraction inside the central 98%
prior predictive interval (a prior that cannot produce the data shows as a low
fraction) and the width of the prior predictive variance ratio at the last generation
(a prior that allows anything shows as an enormous width).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .models.base import sample_guided
from .models.data import pooled_shape

#: fraction of observed statistics that must fall inside the 98% prior predictive
#: intervals for the check to pass
PASS_FRACTION = 0.9


def prior_predictive_check(spec, run, generations=None, draws: int = 500, seed: int = 0
                           ) -> dict:
    """Place a run's observed guided moments in a model's prior predictive distribution.

    ``spec`` is a model specification (:func:`qtrait.models.get_spec`), ``run`` an open run
    or a list of runs (``hier``), ``generations`` an optional slice of generation numbers.
    Returns a dict with ``model``, ``draws``, ``inside_mean`` and ``inside_logvar`` (the
    fractions of observed guided means and log variances of generations 1..G-1 inside the
    central 98% prior predictive intervals), ``variance_ratio_last`` (``q05``, ``median``,
    ``q95`` at the last generation), ``passed`` (both fractions >= :data:`PASS_FRACTION`)
    and ``text`` (the lines ``qtrait fit --prior-predictive`` prints).
    """
    import pymc as pm

    from .models import chain_data, fit_data

    runs = run if isinstance(run, (list, tuple)) else [run]
    cd = chain_data([fit_data(r, generations) for r in runs])
    spec.check(cd)
    model = spec.build(cd)
    log = logging.getLogger("pymc")
    level = log.level
    log.setLevel(logging.WARNING)          # not PyMC's "Sampling: [...]" line
    try:
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prior = pm.sample_prior_predictive(draws, random_seed=seed).prior
    finally:
        log.setLevel(level)
    S = prior.sizes["chain"] * prior.sizes["draw"]
    d = {k: v.values.reshape((S,) + v.shape[2:]) for k, v in prior.data_vars.items()}
    rng = np.random.default_rng(seed)
    fwd = spec.forward(d, cd, start=1, t_end=cd.G - 1, rng=rng)
    g = cd.sets["guided"]
    law = pooled_shape(cd)
    with np.errstate(all="ignore"):
        sim_mean, sim_var = sample_guided(rng, fwd["guided_mean"], fwd["guided_var"],
                                          g.n[1:], law.kurt, law.skew)
        sim_logv = np.log(sim_var)
        lo_m, hi_m = np.nanquantile(sim_mean, [0.01, 0.99], axis=0)
        lo_v, hi_v = np.nanquantile(sim_logv, [0.01, 0.99], axis=0)
    obs_m, obs_lv = g.mean[1:], np.log(g.var[1:])
    ok = np.isfinite(obs_m) & np.isfinite(obs_lv)
    inside_m = float(np.mean(((obs_m >= lo_m) & (obs_m <= hi_m))[ok]))
    inside_v = float(np.mean(((obs_lv >= lo_v) & (obs_lv <= hi_v))[ok]))
    with np.errstate(all="ignore"):
        last = np.nanquantile(sim_var[:, -1].ravel(), [0.05, 0.5, 0.95])
    passed = min(inside_m, inside_v) >= PASS_FRACTION
    text = (f"prior predictive check ({spec.name}, {S} draws, generations 1..{cd.G - 1}): "
            f"{inside_m:.0%} of observed guided means and {inside_v:.0%} of log variances lie "
            f"inside the 98% prior predictive intervals; prior predictive variance ratio at "
            f"generation {cd.G - 1}: median {last[1]:.3g}, 90% range {last[0]:.3g}..{last[2]:.3g}"
            + ("" if passed else f"\nwarning: under {PASS_FRACTION:.0%} inside: the priors "
               "exclude what the data show; widen them (docs/models.md) before trusting a fit"))
    return {"model": spec.name, "draws": S, "inside_mean": inside_m, "inside_logvar": inside_v,
            "variance_ratio_last": {"q05": last[0], "median": last[1], "q95": last[2]},
            "passed": passed, "text": text}
