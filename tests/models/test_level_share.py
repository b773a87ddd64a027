"""The breeder's level-and-share parameterization (qtrait/models/breeder.py, "Level and
share"; off by default): lambda = r L and V_m = (1 - r) L per cell, with log L and
logit r partially pooled."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from qtrait.fit import SamplerSettings, fit
from qtrait.models import chain_data, fit_data, get_spec
from qtrait.models.breeder import LEVEL_SHARE_PRIOR
from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain

pytest.importorskip("nutpie")

SETTINGS = SamplerSettings(chains=2, draws=500, tune=500, seed=0)


def share_spec():
    spec = get_spec("breeder")
    return replace(spec, priors=dict(spec.priors) | LEVEL_SHARE_PRIOR)


def chain(seed: int, lam: float, v_mut: float, generations: int = 10) -> ChainTruth:
    return breeder_chain([TraitTruth(f"t{k}", lam=lam, v_mut=v_mut, gamma=0.0, learn_sd=0.02)
                          for k in range(3)], seed, generations)


def test_the_keys_switch_the_parameterization_and_keep_their_priors(tmp_path):
    # with the keys: level and share, and no log lambda location nor V_m scale; their
    # locations (log L sampled shifted by the generation shock's mean) follow the stated
    # Normal priors: 4000 prior draws, Kolmogorov-Smirnov p > 0.001. Without the keys
    # (the default) the model samples lambda and V_m as they are. hier refuses the keys.
    import pymc as pm

    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r",
                                                           chain(0, 0.8, 0.1, 6))))])
    spec = share_spec()
    model = spec.build(cd)
    names = set(model.named_vars)
    assert {"level", "share", "log_level_mu", "logit_share_mu"} <= names
    assert not {"log_lambda_mu", "v_mut_scale"} & names
    default = set(get_spec("breeder").build(cd).named_vars)
    assert {"log_lambda_mu", "v_mut_scale"} <= default and "share" not in default
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the likelihood (a Potential) is ignored: right here
        prior = pm.sample_prior_predictive(draws=4000, random_seed=4,
                                           var_names=["log_level_mu", "logit_share_mu"]).prior
    for key in ("log_level_mu", "logit_share_mu"):
        assert stats.kstest(prior[key].values.ravel(), "norm",
                            spec.priors[key]).pvalue > 1e-3, key
    hier = get_spec("hier")
    with pytest.raises(ValueError, match="level-and-share"):
        replace(hier, priors=dict(hier.priors) | LEVEL_SHARE_PRIOR).build(cd)


@pytest.mark.parametrize("lam, v_mut", [(0.8, 0.1), (0.5, 0.5)])
def test_level_share_recovers_lambda_and_v_mut(tmp_path, lam, v_mut):
    # two chains of 3 concepts x 3 traits, 10 generations: (0.8, 0.1) collapses toward
    # V* = 0.5; (0.5, 0.5) keeps its variance at V* = 1, where only lambda s2 + V_m is
    # pinned down (the ridge the parameterization is for). lambda's and V_m's 90%
    # intervals cover the truth (V_m rescaled by the generation-0 variance the fit
    # standardises by) in at least 14 of 18 cells each (exact calibration: 90%, and
    # P(X <= 13) = 0.02 for X ~ Binomial(18, 0.9))
    hits = {"lambda": [], "v_mut": []}
    for seed in (1, 2):
        run = open_run(write_simulated_run(tmp_path / f"r{seed}", chain(seed, lam, v_mut)))
        res = fit(run, "breeder", SETTINGS, save=False, spec=share_spec())
        fd = res.data.runs[0]
        scale2 = (fd.scale ** 2).ravel()
        for key, truth in (("lambda", np.full_like(scale2, lam)), ("v_mut", v_mut / scale2)):
            d = res.idata.posterior[key].stack(s=("chain", "draw")).values
            lo, hi = np.quantile(d, [0.05, 0.95], axis=-1)
            hits[key] += list((lo <= truth) & (truth <= hi))
    for key, h in hits.items():
        assert sum(h) >= 14, (key, f"covered {sum(h)}/{len(h)}")
