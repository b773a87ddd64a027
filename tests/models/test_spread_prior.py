"""The prior of log lambda's spread over the cells (qtrait/models/base.py ``pooled``):
HalfNormal(scale) by default, LogNormal(mu, sigma) when the prior is a pair
(breeder.LAMBDA_SPREAD_PRIOR, not a default)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import pytest
from scipy import stats

from qtrait.models import chain_data, fit_data, get_spec
from qtrait.models.breeder import LAMBDA_SPREAD_PRIOR
from qtrait.rundir import open_run
from qtrait.simulate import TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain


@pytest.mark.parametrize("lognormal", [False, True])
def test_the_spread_has_the_stated_prior(tmp_path, lognormal):
    # 4000 prior draws of log_lambda_sd against the stated law by Kolmogorov-Smirnov
    # (p > 0.001), and against the other law (p < 1e-6: HalfNormal(0.3) and
    # LogNormal(-3.16, 1.24) differ by far more than 4000 draws resolve; their medians
    # are 0.20 and 0.042)
    import pymc as pm

    truth = breeder_chain([TraitTruth(f"t{k}", lam=0.8, v_mut=0.1, gamma=0.0, learn_sd=0.02)
                           for k in range(3)], 0, 5)
    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r", truth)))])
    spec = get_spec("breeder")
    if lognormal:
        spec = replace(spec, priors=dict(spec.priors) | LAMBDA_SPREAD_PRIOR)
    with spec.build(cd), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the likelihood (a Potential) is ignored: right here
        sd = pm.sample_prior_predictive(draws=4000, random_seed=5,
                                        var_names=["log_lambda_sd"]).prior
    sd = sd["log_lambda_sd"].values.ravel()
    mu, sigma = LAMBDA_SPREAD_PRIOR["log_lambda_sd"]
    laws = {True: ("lognorm", (sigma, 0, math.exp(mu))),
            False: ("halfnorm", (0, get_spec("breeder").priors["log_lambda_sd"]))}
    assert stats.kstest(sd, *laws[lognormal]).pvalue > 1e-3
    assert stats.kstest(sd, *laws[not lognormal]).pvalue < 1e-6
