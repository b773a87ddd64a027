"""The breeder's mean shock (qtrait/models/breeder.py, "Mean shock"; off by default): one
shock a generation and trait on the means of the trait's cells in every concept; sampled
in the fit, drawn anew in forecasts; simulated by ChainTruth.mean_shock_sd."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from qtrait.fit import SamplerSettings, fit
from qtrait.models.breeder import MEAN_SHOCK_PRIOR
from qtrait.rundir import open_run
from qtrait.simulate import TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain, breeder_with, noiseless_draws, prior_draws

pytest.importorskip("nutpie")


#: a wide prior on the shock's SD for the recovery test, LogNormal(log 0.1, 1.5) (90%
#: between 0.0085 and 1.2): it tests the term, not the prior learned on the benchmark
WIDE = {"mean_shock_sd": (float(np.log(0.1)), 1.5)}


def shock_spec(prior=MEAN_SHOCK_PRIOR):
    return breeder_with(prior)


def test_forecasts_draw_one_mean_shock_per_generation_and_trait(tmp_path):
    # every other noise off and gamma = 0: the forward mean less the parents' mean is the
    # shock, the same in a trait's 3 concepts, and its SD over 4000 draws x 3 traits is
    # the draws' 0.3 (the SD of an SD estimate from 12000 normals is 0.3 / sqrt(24000) =
    # 0.002: 0.01 is 5 of them); the three traits' shocks are independent (|r| < 0.06,
    # 4.7 SEs of a correlation over 4000 draws)
    S = 4000
    spec, cd, draws = noiseless_draws(tmp_path, S, mean_shock_sd=0.3)
    parents = cd.sets["guided"].mean[cd.G - 1]
    fwd = spec.forward(draws, cd, start=cd.G, t_end=cd.G, rng=np.random.default_rng(1))
    m = fwd["guided_mean"][:, 0] - parents
    ti = np.asarray(cd.trait_index())
    per_trait = np.stack([m[:, ti == k] for k in range(ti.max() + 1)], axis=1)
    np.testing.assert_allclose(per_trait, per_trait[:, :, :1] * np.ones_like(per_trait))
    first = per_trait[:, :, 0]
    assert abs(first.std() - 0.3) < 0.01
    assert np.abs(np.corrcoef(first.T)[np.triu_indices(3, 1)]).max() < 0.06
    # without the key: no shock at all
    del draws["mean_shock_sd"]
    fwd = spec.forward(draws, cd, start=cd.G, t_end=cd.G, rng=np.random.default_rng(1))
    np.testing.assert_allclose(fwd["guided_mean"][:, 0], np.broadcast_to(parents, (S, cd.J)))


@pytest.mark.parametrize("centred", [False, True])
def test_the_mean_shock_has_its_stated_prior(tmp_path, monkeypatch, centred):
    # 4000 prior draws: the SD LogNormal(prior) by Kolmogorov-Smirnov (p > 0.001), and
    # the shocks over their SD standard normal (variance 1 within 0.05: the SE over
    # 4000 x 3 generations x 3 traits is 0.005), sampled centred or not
    spec = shock_spec()
    prior = prior_draws(tmp_path, monkeypatch, spec, centred,
                        ["mean_shock_sd", "mean_shock"], "mean_shock_z")
    mu, sigma = spec.priors["mean_shock_sd"]
    sd = prior["mean_shock_sd"].values.ravel()
    assert stats.kstest(sd, "lognorm", (sigma, 0, np.exp(mu))).pvalue > 1e-3
    z = prior["mean_shock"].values.reshape(4000, -1) / sd[:, None]
    assert z.shape[1] == 9
    assert abs(z.var() - 1.0) < 0.05


def test_the_fit_finds_a_mean_shock_where_there_is_one(tmp_path):
    # 6 concepts x 3 traits, 10 generations: a chain with mean shocks of SD 0.3 and one
    # without (learning noise 0.05 on each cell's mean in both). The SD's 90% interval
    # covers 0.3 on the first, and on the second lies below 0.15, half the first's truth
    # (fixed seeds: one chain each; the wide prior WIDE; the second bound leaves room for
    # the prior's pull upwards where 27 shocks of SD 0 say only "small")
    traits = [TraitTruth(f"t{k}", lam=0.8, v_mut=0.1, gamma=-0.1, m_uncond=0.0,
                         learn_sd=0.05) for k in range(3)]
    out = {}
    for sd in (0.3, 0.0):
        truth = replace(breeder_chain(traits, 7, 10, mean_shock_sd=sd),
                        concepts=tuple("abcdef"))
        run = open_run(write_simulated_run(tmp_path / f"r{sd}", truth))
        res = fit(run, "breeder", SamplerSettings(chains=2, draws=500, tune=500, seed=0),
                  save=False, spec=shock_spec(WIDE))
        out[sd] = np.quantile(res.idata.posterior["mean_shock_sd"].values, [0.05, 0.95])
    assert out[0.3][0] <= 0.3 <= out[0.3][1], out
    assert out[0.0][1] < 0.15, out
