"""The breeder's shared learning noise (qtrait/models/breeder.py, "Shared learning
noise"; off by default): a share psi of each trait's learning-noise variance is one draw
a generation shared by the trait's cells in every concept; the cells' one-step variance
is unchanged; drawn anew in forecasts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import special, stats

from qtrait.fit import SamplerSettings, fit
from qtrait.models.breeder import SHARED_NOISE_PRIOR
from qtrait.rundir import open_run
from qtrait.simulate import TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain, breeder_with, noiseless_draws, prior_draws

pytest.importorskip("nutpie")


#: a wide prior on logit psi for the recovery test, Normal(0, 1.5) (psi's 90% between 0.08
#: and 0.92): it tests the term, not the prior learned on the benchmark
WIDE = {"shared_noise": (0.0, 1.5)}


def shared_spec(prior=SHARED_NOISE_PRIOR):
    return breeder_with(prior)


def test_forecasts_share_psi_of_each_traits_noise_and_keep_its_total(tmp_path):
    # gamma = 0 and every other noise off; per-trait noises 0.1, 0.2, 0.4 and psi 0.6 in
    # 4000 draws: a trait's steps in its 3 concepts have variance sigma_k^2 (each within
    # 5% of it: the SE of a variance over 12000 normals is 1.3%) and correlation psi
    # between concepts (within 0.04: 3 SEs of a correlation over 4000 draws at 0.6); the
    # traits are independent. psi = 0 gives independent cells (|r| < 0.06)
    S = 4000
    spec, cd, draws = noiseless_draws(tmp_path, S)
    sig = np.array([0.1, 0.2, 0.4])
    draws["sigma_learn"] = np.tile(sig, (S, 1))
    ti = np.asarray(cd.trait_index())
    parents = cd.sets["guided"].mean[cd.G - 1]
    for psi in (0.6, 0.0):
        d = draws | {"shared_noise_share": np.full(S, psi)}
        fwd = spec.forward(d, cd, start=cd.G, t_end=cd.G, rng=np.random.default_rng(2))
        m = fwd["guided_mean"][:, 0] - parents
        for k in range(3):
            x = m[:, ti == k]
            np.testing.assert_allclose(x.var(axis=0), sig[k] ** 2, rtol=0.05)
            r = np.corrcoef(x.T)[np.triu_indices(x.shape[1], 1)]
            assert np.all(np.abs(r - psi) < 0.04 if psi else np.abs(r) < 0.06), (psi, r)
        r = np.corrcoef(m[:, ti == 0][:, 0], m[:, ti == 2][:, 0])[0, 1]
        assert abs(r) < 0.06


@pytest.mark.parametrize("centred", [False, True])
def test_the_shared_noise_has_its_stated_prior(tmp_path, monkeypatch, centred):
    # 4000 prior draws: logit psi Normal(prior) by Kolmogorov-Smirnov (p > 0.001) and the
    # shared noise over sqrt(psi) sigma_k standard normal (variance 1 within 0.05: the SE
    # over 4000 x 3 generations x 3 traits is 0.005), sampled centred or not
    spec = shared_spec()
    prior = prior_draws(tmp_path, monkeypatch, spec, centred,
                        ["shared_noise_share", "shared_noise", "sigma_learn"], "shared_noise_z")
    mu, sd = spec.priors["shared_noise"]
    psi = prior["shared_noise_share"].values.ravel()
    assert stats.kstest(special.logit(psi), "norm", (mu, sd)).pvalue > 1e-3
    sig = prior["sigma_learn"].values.reshape(4000, 1, 3)
    z = prior["shared_noise"].values.reshape(4000, -1, 3) / (np.sqrt(psi)[:, None, None] * sig)
    assert z.shape == (4000, 3, 3)
    assert abs(z.var() - 1.0) < 0.05


def test_the_fit_finds_the_share_where_the_cells_move_together(tmp_path):
    # 6 concepts x 3 traits, 10 generations, learning noise 0.15 on each cell's mean plus
    # a shock of SD 0.15 shared by a trait's concepts (true share 0.5), and the same
    # chain without the shared shock (share 0). psi's 90% interval covers 0.5 on the
    # first and lies below 0.35 on the second (fixed seeds: one chain each, prior
    # Normal(0, 1.5) on logit psi; 27 shared draws of a trait say "small" only up to
    # their sampling error, so the bound leaves room above 0)
    out = {}
    for shared in (0.15, 0.0):
        traits = [TraitTruth(f"t{k}", lam=0.8, v_mut=0.1, gamma=-0.1, m_uncond=0.0,
                             learn_sd=0.15) for k in range(3)]
        truth = replace(breeder_chain(traits, 8, 10, mean_shock_sd=shared),
                        concepts=tuple("abcdef"))
        run = open_run(write_simulated_run(tmp_path / f"r{shared}", truth))
        res = fit(run, "breeder", SamplerSettings(chains=2, draws=500, tune=500, seed=0),
                  save=False, spec=shared_spec(WIDE))
        out[shared] = np.quantile(res.idata.posterior["shared_noise_share"].values,
                                  [0.05, 0.95])
    assert out[0.15][0] <= 0.5 <= out[0.15][1], out
    assert out[0.0][1] < 0.35, out
