"""Prior sensitivity without refits.

(a) Of the posterior to the priors: power-scaling sensitivity (Kallioinen et al. 2023,
"Detecting and diagnosing prior and likelihood sensitivity with power-scaling", Statistics
and Computing 34). The prior (or the likelihood) is raised to a power alpha near 1, the
posterior draws are reweighted by importance sampling (Pareto-smoothed) instead of
refitting, and the sensitivity of each parameter is the derivative of the cumulative
Jensen-Shannon distance between its reweighted and original distributions. ArviZ's
``psens`` computes it from the ``log_prior`` and ``log_likelihood`` groups; the log prior
of every draw comes from PyMC's ``compute_log_prior`` on the model's own graph. Only the
priors a modeller chose are scaled: the standard-normal offsets of the non-centred
partial pooling (``*_z``) and the tilt models' learning shocks are the model's structure,
not priors (the paper's advice for hierarchical models: power-scale the top-level priors).
A sensitivity of 0.05 or more is the paper's threshold: a prior sensitivity above it
with a likelihood sensitivity above it too is a prior-data conflict; with a likelihood
sensitivity below it, the likelihood is weak and the prior decides.

(b) Of the horizon to the collapse criteria q, d and r: the forecast's posterior
trajectories are reread under neighbouring criteria (no new draws).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

#: the paper's threshold for a noticeable sensitivity
THRESHOLD = 0.05


def scaled_priors(free: list[str]) -> list[str]:
    """The free variables whose priors are power-scaled: not the non-centred offsets
    (``*_z``) nor the learning shocks (``learn_z_*``)."""
    return [v for v in free if not (v.endswith("_z") or v.startswith("learn_z"))]


def diagnosis(prior: float, likelihood: float, threshold: float = THRESHOLD) -> str:
    """The paper's reading of the two sensitivities."""
    if not (np.isfinite(prior) and np.isfinite(likelihood)):
        return "not computed"
    if prior >= threshold and likelihood >= threshold:
        return "prior-data conflict"
    if prior >= threshold:
        return "weak likelihood: the prior decides"
    return "-"


def power_scaling(result, max_draws: int = 1000) -> pd.DataFrame:
    """Prior and likelihood power-scaling sensitivity of the fit's parameters.

    Rows: the population-level parameters and scalars, then each per-cell parameter
    summarised over the cells (its largest sensitivity and that cell). Columns:
    ``parameter``, ``cells``, ``prior``, ``likelihood``, ``worst_cell``, ``diagnosis``,
    ``status``."""
    import arviz as az
    import pymc as pm

    spec, idata = result.spec, result.idata
    S = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    step = max(1, int(np.ceil(S / max_draws)))     # evenly thinned, keeping the chains
    post = idata.posterior.isel(draw=slice(None, None, step))
    ll = idata.log_likelihood.isel(draw=slice(None, None, step))
    model = spec.build(result.data)
    free = [v.name for v in model.free_RVs]
    prior_vars = scaled_priors(free)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        log_prior = pm.compute_log_prior(az.InferenceData(posterior=post[free]),
                                         var_names=prior_vars, model=model,
                                         extend_inferencedata=False, progressbar=False)
    names = [v for v in (*getattr(spec, "population", ()), *spec.reported)
             if v in post.data_vars and v != "v_star"]
    names = [v for v in names if np.isfinite(post[v].values).all()]
    data = az.InferenceData(posterior=post[names], log_likelihood=ll, log_prior=log_prior)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ps = az.psens(data, component="prior", var_names=names)
        ls = az.psens(data, component="likelihood", var_names=names)
    rows = []
    for v in names:
        p, lk = ps[v], ls[v]
        if p.ndim == 0:
            rows.append({"parameter": v, "cells": 1, "prior": float(p),
                         "likelihood": float(lk), "worst_cell": "-"})
            continue
        dim = p.dims[0]
        worst = int(np.nanargmax(p.values))
        rows.append({"parameter": v, "cells": int(p.sizes[dim]),
                     "prior": float(np.nanmax(p.values)),
                     "likelihood": float(lk.values[worst]),
                     "worst_cell": str(p[dim].values[worst])})
    df = pd.DataFrame(rows, columns=["parameter", "cells", "prior", "likelihood",
                                     "worst_cell"])
    df["diagnosis"] = [diagnosis(r.prior, r.likelihood) for r in df.itertuples()]
    df["status"] = np.where(df["diagnosis"] == "-", "pass", "fail")
    return df


def criteria_grid(crit) -> dict[str, list]:
    """Neighbouring criteria of the run's horizon, one at a time: q by +-0.1 (inside
    (0, 1)), d by +-0.5 (above 0), alpha at 0.01, 0.05 and 0.1 (with the default's)."""
    q = [v for v in (crit.q - 0.1, crit.q, crit.q + 0.1) if 0 < v < 1]
    d = [v for v in (crit.d - 0.5, crit.d, crit.d + 0.5) if v > 0]
    alpha = sorted({0.01, 0.05, 0.1, crit.alpha})
    return {"q": [round(v, 10) for v in q], "d": [round(v, 10) for v in d],
            "alpha": [round(v, 10) for v in alpha]}


def horizon_trajectories(fc) -> tuple:
    """The (mean, variance) trajectories (draws, T+1, J) of the forecast's fitted cells:
    the guided sets' observed moments where the forecast provides them (``observed_*``),
    else the latent ones."""
    t = fc.trajectories
    if "observed_mean" in t:
        return t["observed_mean"], t["observed_var"]
    return t["guided_mean"], t["guided_var"]


def horizon_under(fc, cd, crit):
    """The run-level horizon distribution of forecast ``fc`` under other criteria
    ``crit`` (same T_max): the same simulated statistics, reread
    (:meth:`qtrait.forecast.Forecast.reread`)."""
    return fc.reread(crit)


def criteria_sensitivity(fc, cd) -> tuple[pd.DataFrame, dict]:
    """The run-level horizon for each neighbouring criterion: a table (criterion, value,
    default, median, lo90, hi90, p_no_collapse) and the P(collapse by t) curves."""
    crit = fc.criteria
    rows, curves = [], {}
    for name, values in criteria_grid(crit).items():
        curves[name] = []
        for v in values:
            c = replace(crit, **{name: v})
            h = horizon_under(fc, cd, c).to_dict()
            rows.append({"criterion": name, "value": v, "default": v == getattr(crit, name),
                         "median": h["median"], "lo90": h["lo90"], "hi90": h["hi90"],
                         "p_no_collapse": h["p_no_collapse"]})
            curves[name].append((v, np.array(h["p_collapse_by"])))
    df = pd.DataFrame(rows)
    for c in ("median", "lo90", "hi90"):
        df[c] = df[c].astype("Int64")
    return df, curves
