"""The ``hier`` model: several runs, chain-level parameters regressed on the design.

Within each run it is the breeder model (works with or without probes). Across runs, the
population locations of the cells' parameters are linear in the design covariates, with
a random effect per run, so runs that share a design and differ only by seed are
replicates (theory.md section 4):

    log lambda location of run r = a_lambda + X_r . b_lambda + s_lambda e_r
    gamma location of run r      = a_gamma  + X_r . b_gamma  + s_gamma  f_r
    log V_m scale of run r       = a_vmut   + X_r . b_vmut   + s_vmut   g_r

X has one column per design covariate that varies across the runs: ``cfg_scale``,
``p_drop`` (numbers, centred), ``schedule`` (1 for a non-constant guidance schedule),
``anchor_previous`` and one indicator per dataset after the first. A covariate constant
over the runs cannot be separated from the intercept and is left out (and reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import QtraitError
from .breeder import DEFAULT_PRIORS as BREEDER_PRIORS
from .breeder import BreederSpec, one_noise_priors
from .data import ChainData

DEFAULT_PRIORS = one_noise_priors(BREEDER_PRIORS)
# no generation shock nor first step, and one learning noise for every trait, not one per
# trait (breeder's module docstring) in hier yet: its leave-future-out and SBC have not
# been rerun with them, and without the prior keys the map has neither
del DEFAULT_PRIORS["gen_shock_sd"], DEFAULT_PRIORS["first_step"]
DEFAULT_PRIORS.update({
    "coef": 0.5,            # Normal(0, .) per design coefficient (per unit of a centred
                            # covariate: per unit of w for cfg_scale, per 1.0 of p_drop)
    "replicate_sd": 0.2,    # HalfNormal: run-to-run spread at a fixed design (seeds)
    "log_v_mut_scale": (np.log(0.1), 1.0),   # Normal: intercept of the log V_m scale
})


def design_matrix(cd: ChainData) -> tuple[np.ndarray, list[str], list[str]]:
    """Centred covariates (runs x P), their names, and the names left out as constant."""
    cols: dict[str, list[float]] = {"cfg_scale": [], "p_drop": [], "schedule": [],
                                    "anchor_previous": []}
    datasets = sorted({str(r.design.get("dataset", "")) for r in cd.runs})
    for name in datasets[1:]:
        cols[f"dataset[{name}]"] = []
    for r in cd.runs:
        d = r.design
        cols["cfg_scale"].append(float(d.get("cfg_scale", np.nan)))
        cols["p_drop"].append(float(d.get("p_drop", 0.0)))
        cols["schedule"].append(float((d.get("cfg_schedule") or "constant") != "constant"))
        cols["anchor_previous"].append(float(d.get("anchor", "base") == "previous"))
        for name in datasets[1:]:
            cols[f"dataset[{name}]"].append(float(str(d.get("dataset", "")) == name))
    kept, dropped, X = [], [], []
    for name, v in cols.items():
        v = np.asarray(v)
        if not np.all(np.isfinite(v)):
            raise QtraitError(f"design covariate {name} is missing in some run's manifest")
        if np.ptp(v) > 0:
            kept.append(name)
            X.append(v - v.mean())
        else:
            dropped.append(name)
    X = np.stack(X, axis=1) if X else np.zeros((len(cd.runs), 0))
    return X, kept, dropped


@dataclass(frozen=True)
class HierSpec(BreederSpec):
    """The ``hier`` model: breeder per run, with run-level parameters regressed on the
    design covariates (module docstring)."""
    name: str = "hier"
    priors: dict = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    reported = ("a_log_lambda", "b_log_lambda", "a_gamma", "b_gamma", "a_log_v_mut",
                "b_log_v_mut", "replicate_sd", "lambda_run", "gamma_run", "sigma_learn", "tau")
    population = ("a_log_lambda", "b_log_lambda", "a_gamma", "b_gamma", "a_log_v_mut",
                  "b_log_v_mut", "replicate_sd")
    multi_run = True

    def describe(self) -> str:
        return ("hier: the breeder model per run; run-level log lambda, gamma and log V_m "
                "scale linear in the design, with a random effect per run (seeds as "
                "replicates)")

    def check(self, cd: ChainData) -> None:
        super().check(cd)
        traits = {tuple(r.traits) for r in cd.runs}
        if len(traits) > 1:
            raise QtraitError("hier needs the same traits in every run; got "
                              + " vs ".join(", ".join(t) for t in traits))
        X, kept, _ = design_matrix(cd)
        if not kept:
            raise QtraitError("the runs share one design (no covariate varies); hier has "
                              "nothing to regress on: fit the runs one by one, or add runs "
                              "with other designs")

    def design_constants(self, cd: ChainData) -> tuple:
        X, kept, _ = design_matrix(cd)
        return (super().design_constants(cd), tuple(kept), X.round(12).tobytes(),
                tuple(cd.run_of_cell.tolist()))

    def coords(self, cd, lay):
        c = super().coords(cd, lay)
        c["covariate"] = design_matrix(cd)[1]
        c["run"] = [r.run_id for r in cd.runs]
        c["level"] = ["log_lambda", "gamma", "log_v_mut"]
        return c

    def build(self, cd: ChainData):
        p = self.priors

        def locs(cd):
            import pymc as pm
            import pytensor.tensor as pt

            X, kept, _ = design_matrix(cd)
            Xc = pt.as_tensor(X)
            rep_sd = pm.HalfNormal("replicate_sd", p["replicate_sd"], dims="level")
            out = {}
            for i, (name, a_prior) in enumerate((
                    ("log_lambda", p["log_lambda_mu"]), ("gamma", p["gamma_mu"]),
                    ("log_v_mut", p["log_v_mut_scale"]))):
                a = pm.Normal(f"a_{name}", *a_prior)
                b = pm.Normal(f"b_{name}", 0.0, p["coef"], dims="covariate")
                e = pm.Normal(f"e_{name}", 0.0, 1.0, dims="run")
                out[name] = a + pt.dot(Xc, b) + rep_sd[i] * e   # per run
            pm.Deterministic("lambda_run", pt.exp(out["log_lambda"]), dims="run")
            pm.Deterministic("gamma_run", out["gamma"], dims="run")
            idx = cd.run_of_cell
            return {"log_lambda": out["log_lambda"][idx], "gamma": out["gamma"][idx],
                    "v_mut_scale": pt.exp(out["log_v_mut"])[idx]}

        return super().build(cd, locs_fn=locs)

