"""The breeder's learning noise on the mean per trait (qtrait/models/breeder.py, "Learning
noise per trait"): prior key ``sigma_learn_pooled``, a shared scale times a trait's
factor (the default), or ``sigma_learn_trait``, independent LogNormal noises (not a
default); without either, one noise for every trait."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from qtrait.fit import SamplerSettings, fit
from qtrait.models import chain_data, fit_data, get_spec
from qtrait.models.breeder import SIGMA_POOLED_PRIOR, SIGMA_TRAIT_PRIOR, one_noise_priors
from qtrait.rundir import open_run
from qtrait.simulate import TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain, noiseless_draws

pytest.importorskip("nutpie")

#: per trait: the learning noise on the mean in generation-0 SDs (var0 = 1)
NOISE = {"t0": 0.02, "t1": 0.02, "t2": 0.3}


def chain(seed: int):
    traits = [TraitTruth(k, lam=0.8, v_mut=0.1, gamma=0.0, m_uncond=0.0, learn_sd=sd)
              for k, sd in NOISE.items()]
    return breeder_chain(traits, seed, 10)


#: wide enough not to decide the answer: LogNormal(log 0.05, 1.5), 90% between 0.004 and
#: 0.59 (the learned SIGMA_TRAIT_PRIOR, median 0.22, is centred on the benchmark's chains)
WIDE = {"sigma_learn_trait": (float(np.log(0.05)), 1.5)}


def with_key(prior=None):
    spec = get_spec("breeder")
    return replace(spec, priors=dict(spec.priors) | (prior or SIGMA_TRAIT_PRIOR))


def one_noise():
    """The breeder with one learning noise for every trait (the default until 2026-12-07)."""
    spec = get_spec("breeder")
    return replace(spec, priors=one_noise_priors(spec.priors))


def test_the_key_gives_one_noise_per_trait(tmp_path):
    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r", chain(0))))])
    assert cd.traits() == list(NOISE)
    # 3 concepts x 3 traits, each cell pointing at its trait
    assert [cd.traits()[k] for k in cd.trait_index()] == [t for _, _, t in cd.cells]
    # the independent noises' key: free LogNormal noises, ahead of the default's pooled key
    model = with_key().build(cd)
    assert model.named_vars_to_dims["sigma_learn"] == ("trait",)
    assert model["sigma_learn"] in model.free_RVs
    assert list(model.coords["trait"]) == list(NOISE)
    # the default has the pooled key, not the independent one
    default = get_spec("breeder")
    assert "sigma_learn_pooled" in default.priors and "sigma_learn_trait" not in default.priors
    assert default.build(cd).named_vars_to_dims["sigma_learn"] == ("trait",)
    # without either key: one noise per fit
    plain = one_noise()
    assert plain.build(cd).named_vars_to_dims.get("sigma_learn", ()) == ()
    # which trait a cell has is graph structure: 1 concept x 9 traits has as many cells
    # (and generations) but compiles its own model with a key, and shares one without
    nine = [TraitTruth(f"u{k}", lam=0.8, v_mut=0.1, m_uncond=0.0) for k in range(9)]
    other = replace(chain(0), traits=tuple(nine), concepts=("a",))
    cd2 = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "o", other)))])
    assert cd2.J == cd.J and cd2.G == cd.G
    assert with_key().signature(cd) != with_key().signature(cd2)
    assert default.signature(cd) != default.signature(cd2)
    assert plain.signature(cd) == plain.signature(cd2)


@pytest.mark.parametrize("centred", [False, True])
def test_the_pooled_key_is_a_shared_scale_times_a_factor_per_trait(tmp_path, monkeypatch,
                                                                   centred):
    import pymc as pm

    from qtrait.models import breeder

    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r", chain(0))))])
    pooled = get_spec("breeder")
    # 9 cells: sampled as S h_k; from SHOCK_CENTRED_CELLS cells as sigma_k ~ HalfNormal(S)
    assert pooled.noise_sampling(cd) == "non-centred"
    monkeypatch.setattr(breeder, "SHOCK_CENTRED_CELLS", 1 if centred else cd.J + 1)
    assert pooled.noise_sampling(cd) == ("centred" if centred else "non-centred")
    assert with_key().noise_sampling(cd) == one_noise().noise_sampling(cd) == ""
    model = pooled.build(cd)
    assert model.named_vars_to_dims["sigma_learn"] == ("trait",)
    assert ("sigma_learn_h" in model.named_vars) != centred
    assert model.named_vars_to_dims.get("sigma_learn_scale", ()) == ()
    assert (model["sigma_learn"] in model.deterministics) != centred
    # the same prior either way. A trait's noise: E sigma_k^2 = s^2 E h^2 = s^2 (the
    # learned scale is set so); per draw the mean of the 3 traits' sigma^2 is S^2 times
    # the mean of 3 h^2, variance (3 (1 + 2/3) - 1) s^4 = 4 s^4, so 4,000 prior draws give
    # E sigma^2 to a relative SE of 2 / sqrt(4000) = 3.2%: 10% tolerance (3 SE)
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the likelihood (a Potential) is ignored: right here
        prior = pm.sample_prior_predictive(4000, var_names=["sigma_learn"], random_seed=0)
    d = prior.prior["sigma_learn"].values
    s = SIGMA_POOLED_PRIOR["sigma_learn_pooled"]
    np.testing.assert_allclose(np.mean(d ** 2), s ** 2, rtol=0.10)
    # the traits share S: their noises are correlated under the prior (independent
    # LogNormal noises would not be)
    flat = d.reshape(-1, d.shape[-1])
    assert np.corrcoef(np.log(flat[:, 0]), np.log(flat[:, 1]))[0, 1] > 0.2
    # a graph of its own, not the independent noises' with another prior
    assert pooled.signature(cd) != with_key().signature(cd)


def test_forecasts_draw_each_traits_own_noise(tmp_path):
    # every other noise off: the spread over draws of a forecast's latent mean is the
    # trait's own sigma (4,000 draws: the SD's relative standard error is 1/sqrt(2 S),
    # about 1%; 5% tolerance), and a trait with sigma 0 does not move
    S = 4000
    spec, cd, draws = noiseless_draws(tmp_path, S)
    spec = replace(spec, priors=dict(spec.priors) | SIGMA_TRAIT_PRIOR)
    sig = np.array([0.0, 0.5, 0.1])[: len(cd.traits())]
    draws["sigma_learn"] = np.broadcast_to(sig, (S, len(sig))).copy()
    fwd = spec.forward(draws, cd, start=cd.G, t_end=cd.G, rng=np.random.default_rng(0))
    sd = fwd["guided_mean"][:, 0].std(axis=0)
    want = sig[cd.trait_index()]
    np.testing.assert_allclose(sd, want, rtol=0.05, atol=1e-12)


@pytest.mark.parametrize("prior", [WIDE, SIGMA_POOLED_PRIOR], ids=["independent", "pooled"])
def test_breeder_recovers_each_traits_noise(tmp_path, prior):
    # two chains of 3 concepts x 3 traits, noises 0.02, 0.02 and 0.3, fitted with
    # independent noises under a wide prior, or pooled under the learned scale: each
    # trait's 90% interval covers its truth (rescaled by the generation-0 SD
    # the fit standardises by, averaged over concepts: their SDs, from 200 images each,
    # differ by about 5%) in at least 5 of 6 (trait, chain) pairs (P(X <= 4) = 0.11 for
    # X ~ Binomial(6, 0.9)), and the noisy trait's interval lies above both quiet ones'
    # medians in every chain
    settings = SamplerSettings(chains=2, draws=500, tune=500, seed=0)
    hits = []
    for seed in (1, 2):
        run = open_run(write_simulated_run(tmp_path / f"r{seed}", chain(seed)))
        res = fit(run, "breeder", settings, save=False, spec=with_key(prior))
        fd = res.data.runs[0]
        d = res.idata.posterior["sigma_learn"].stack(s=("chain", "draw")).values
        lo, med, hi = np.quantile(d, [0.05, 0.5, 0.95], axis=-1)
        for k, t in enumerate(res.idata.posterior["trait"].values):
            truth = NOISE[str(t)] / fd.scale[:, fd.traits.index(str(t))].mean()
            hits.append(lo[k] <= truth <= hi[k])
        assert lo[2] > max(med[0], med[1])
    assert sum(hits) >= 5, f"covered {sum(hits)}/6"
