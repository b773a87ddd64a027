"""The ``breeder`` model (theory.md section 2, simplified map; section 4 likelihood).

Per concept c and trait k, driven by the observed moments of the previous guided set:

    V_t      = lambda_ck s2_{t-1} + V_m,ck
    mu_t - c = (1 + gamma_ck)(zbar_{t-1} - c)

with c the unconditional probe's mean where the run has one (else a parameter). The
guided set's sufficient statistics are the observations:

    zbar_t ~ Normal(mu_t, sqrt(V_t / N + sigma_learn^2))
    s2_t   ~ Gamma with mean V_t and relative variance 2/(N-1) + kappa/N + tau^2

(kappa the set's excess kurtosis floored at 0; sigma_learn and tau the learning noise of
finetuning on the mean and log variance). Parameters are partially pooled over traits and
concepts (non-centred): log lambda, gamma and V_m each have a population location and
scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import FitData

#: Priors, in standardised trait units (generation-0 SD = 1). Stated in docs/models.md.
DEFAULT_PRIORS = {
    "log_lambda_mu": (np.log(0.8), 0.5),   # Normal(mean, sd): variance factor ~ 0.3..2
    "log_lambda_sd": 0.3,                  # HalfNormal scale: spread across traits
    "gamma_mu": (0.0, 0.2),                # Normal: exaggeration rate per generation
    "gamma_sd": 0.1,
    "v_mut_scale": 0.3,                    # HalfNormal scale of the population V_m scale
    "sigma_learn": 0.1,                    # HalfNormal: learning noise on the mean
    "tau": 0.2,                            # HalfNormal: learning noise on log variance
    "center": (0.0, 3.0),                  # Normal: centre when there is no uncond probe
}


@dataclass(frozen=True)
class BreederSpec:
    """What the breeder model is, separate from the PyMC graph it builds."""

    name: str = "breeder"
    priors: dict = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    #: scientific parameters reported by `qtrait fit`
    reported = ("lambda", "gamma", "v_mut", "v_star", "sigma_learn", "tau")

    def describe(self) -> str:
        return ("breeder: V_t = lambda s2_{t-1} + V_m; mu_t - c = (1 + gamma)(zbar_{t-1} - c);"
                " pooled over traits and concepts")

    def build(self, data: FitData):
        """The PyMC model for ``data`` (coords: generation, concept, trait)."""
        import pymc as pm
        import pytensor.tensor as pt

        p = self.priors
        g = data.sets["guided"]
        G, C, K = data.shape
        coords = {"generation": data.generations[1:], "concept": data.concepts,
                  "trait": data.traits}
        prev_mean, prev_var = g.mean[:-1], g.var[:-1]
        n, kurt = g.n[1:], g.kurt[1:]
        with pm.Model(coords=coords) as model:
            ll_mu = pm.Normal("log_lambda_mu", *p["log_lambda_mu"])
            ll_sd = pm.HalfNormal("log_lambda_sd", p["log_lambda_sd"])
            ll_z = pm.Normal("log_lambda_z", 0, 1, dims=("concept", "trait"))
            lam = pm.Deterministic("lambda", pt.exp(ll_mu + ll_sd * ll_z),
                                   dims=("concept", "trait"))
            g_mu = pm.Normal("gamma_mu", *p["gamma_mu"])
            g_sd = pm.HalfNormal("gamma_sd", p["gamma_sd"])
            g_z = pm.Normal("gamma_z", 0, 1, dims=("concept", "trait"))
            gamma = pm.Deterministic("gamma", g_mu + g_sd * g_z, dims=("concept", "trait"))
            vm_scale = pm.HalfNormal("v_mut_scale", p["v_mut_scale"])
            vm_z = pm.HalfNormal("v_mut_z", 1.0, dims=("concept", "trait"))
            v_mut = pm.Deterministic("v_mut", vm_scale * vm_z, dims=("concept", "trait"))
            pm.Deterministic("v_star", pt.switch(lam < 1, v_mut / (1 - lam), np.inf),
                             dims=("concept", "trait"))
            sigma = pm.HalfNormal("sigma_learn", p["sigma_learn"])
            tau = pm.HalfNormal("tau", p["tau"])
            if data.has("probe_uncond"):
                center = np.nanmean(data.sets["probe_uncond"].mean, axis=0)
            else:
                center = pm.Normal("center", *p["center"], dims=("concept", "trait"))
            V = lam * prev_var + v_mut
            mu = center + (1 + gamma) * (prev_mean - center)
            pm.Normal("zbar", mu=mu, sigma=pt.sqrt(V / n + sigma ** 2), observed=g.mean[1:],
                      dims=("generation", "concept", "trait"))
            rel = 2.0 / (n - 1) + kurt / n + tau ** 2
            alpha = 1.0 / rel
            pm.Gamma("s2", alpha=alpha, beta=alpha / V, observed=g.var[1:],
                     dims=("generation", "concept", "trait"))
        return model
