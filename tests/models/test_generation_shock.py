"""The breeder's generation shock (qtrait/models/breeder.py): one variance shock per run and
generation, shared by all of the run's cells; sampled in the fit, drawn anew in forecasts.
And the first step's own factor on generation 1's variance, shared the same way."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from qtrait.fit import SamplerSettings, fit
from qtrait.models import chain_data, fit_data, get_spec
from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, simulate_tables, write_simulated_run

from .breeder_chains import CONCEPTS, noiseless_draws, truth

pytest.importorskip("nutpie")

SETTINGS = SamplerSettings(chains=2, draws=500, tune=500, seed=0)
def realised_shocks(t: ChainTruth) -> np.ndarray:
    """log(V_t / (lambda s2_{t-1} + V_m)) of the simulated chain, generations 1.., one per
    generation (the same in every cell: checked), less the first step's factor."""
    tables, latent = simulate_tables(t)
    names = [x.name for x in t.traits]
    lam = np.array([x.lam for x in t.traits])
    vm = np.array([x.v_mut for x in t.traits])
    out = []
    for g in range(1, t.generations):
        s2 = tables[g - 1]["guided"].groupby("concept", sort=False)[names].var(ddof=1)
        s2 = s2.loc[list(CONCEPTS)].to_numpy()
        e = np.log(latent["guided_var"][g] / (lam * s2 + vm))
        np.testing.assert_allclose(e, e[0, 0], atol=1e-9)
        out.append(e[0, 0] - (t.first_step if g == 1 else 0.0))
    return np.array(out)


def test_forecasts_draw_one_shock_per_generation_for_every_cell(tmp_path):
    # with every other noise off, the forward map's latent variance over lambda s2 + V_m
    # is exp(e_t), the same in all 9 cells, and e_t's SD over 4000 draws is the draws'
    # shock SD 0.2 (the SD of an SD estimate from 4000 normals is 0.2 / sqrt(8000) =
    # 0.0022: 0.01 is 4.5 of them); without a shock SD in the draws the ratio is 1
    S = 4000
    spec, cd, draws = noiseless_draws(tmp_path, S)
    J = cd.J
    parents = cd.sets["guided"].var[cd.G - 1]
    for sd in (0.2, None):
        d = draws | ({"gen_shock_sd": np.full(S, sd)} if sd else {})
        fwd = spec.forward(d, cd, start=cd.G, t_end=cd.G, rng=np.random.default_rng(1))
        ratio = fwd["guided_var"][:, 0] / (0.8 * parents + 0.05)
        if sd is None:
            np.testing.assert_allclose(ratio, 1.0)
            continue
        np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, J)))
        assert abs(np.log(ratio[:, 0]).std() - sd) < 0.01


def test_the_first_step_scales_generation_1_only(tmp_path):
    # with every other noise off, a forecast from generation 1 multiplies generation 1's
    # latent variance by exp(first_step) in every cell and generation 2's by nothing (its
    # parents are the simulated generation-1 set); a forecast from generation 2 never
    # applies it
    S = 50
    spec, cd, draws = noiseless_draws(tmp_path, S, first_step=-0.4)
    J = cd.J
    var = cd.sets["guided"].var
    fwd = spec.forward(draws, cd, start=1, t_end=2, rng=np.random.default_rng(1))
    np.testing.assert_allclose(fwd["guided_var"][:, 0] / (0.8 * var[0] + 0.05), np.exp(-0.4))
    np.testing.assert_allclose(fwd["guided_var"][:, 1],
                               0.8 * fwd["observed_var"][:, 0] + 0.05)
    fwd = spec.forward(draws, cd, start=2, t_end=2, rng=np.random.default_rng(1))
    np.testing.assert_allclose(fwd["guided_var"][:, 0],
                               np.broadcast_to(0.8 * var[1] + 0.05, (S, J)))


def test_without_the_prior_key_the_model_has_no_shock(tmp_path):
    run = open_run(write_simulated_run(tmp_path / "r", truth(0, 0.0, generations=3)))
    cd = chain_data([fit_data(run)])
    spec = get_spec("breeder")
    with_shock = spec.build(cd)
    priors = {k: v for k, v in spec.priors.items() if k != "gen_shock_sd"}
    without = replace(spec, priors=priors).build(cd)
    assert {"gen_shock_sd", "gen_shock_mean_z", "gen_shock_dev_z"} <= set(with_shock.named_vars)
    assert "gen_shock_sd" not in without.named_vars
    assert "first_step" in with_shock.named_vars
    # the first step sampled plainly on a few cells (shifted by generation 1's shock only
    # with SHOCK_CENTRED_CELLS or more: test_the_shifted_parameterisation_keeps_the_priors)
    # and without the shock
    for model in (with_shock, without):
        assert {v.name for v in model.free_RVs} & {"first_step", "first_step_shifted"} == {
            "first_step"}
    no_first = replace(spec, priors={k: v for k, v in priors.items() if k != "first_step"})
    assert (spec.first_step_sampling(cd), replace(spec, priors=priors).first_step_sampling(
        cd), no_first.first_step_sampling(cd)) == ("plain", "plain", "")
    assert "first_step" not in no_first.build(cd).named_vars
    assert not {"gen_shock_sd", "first_step"} & set(get_spec("hier").priors)


def test_breeder_recovers_the_generation_shock(tmp_path):
    # 8 chains (3 concepts x 3 traits, 10 generations, 200 images) with shock SDs drawn
    # from U(0.05, 0.25) and first steps from U(-0.5, 0): the 90% intervals of
    # gen_shock_sd and of first_step cover the truth (one-sided binomial tests against
    # coverage below 0.9 at level 0.001, as the other recovery tests), and each chain's posterior-median shocks track the realised ones
    # (correlation >= 0.8 in the median chain: each shock is read from 9 cells whose
    # variance ratios have sampling SD about sqrt(2/199) = 0.1, so SE about 0.035 against
    # shocks of SD 0.05-0.25)
    hits, first_hits, corrs = [], [], []
    for seed in range(8):
        sd, d1 = np.random.default_rng(seed).uniform((0.05, -0.5), (0.25, 0.0))
        t = truth(seed, float(sd), first_step=float(d1))
        run = open_run(write_simulated_run(tmp_path / f"s{seed}", t))
        post = fit(run, "breeder", SETTINGS, save=False).idata.posterior
        lo, hi = np.quantile(post["gen_shock_sd"].values, [0.05, 0.95])
        hits.append(lo <= sd <= hi)
        lo, hi = np.quantile(post["first_step"].values, [0.05, 0.95])
        first_hits.append(lo <= d1 <= hi)
        est = post["gen_shock"].median(("chain", "draw")).values
        corrs.append(np.corrcoef(est, realised_shocks(t))[0, 1])
    for h in (hits, first_hits):
        p = stats.binomtest(int(np.sum(h)), len(h), 0.9, alternative="less").pvalue
        assert p > 0.001, f"covered {np.sum(h)}/{len(h)}"
    assert np.median(corrs) >= 0.8, corrs


@pytest.mark.parametrize("centred", [False, True])
def test_the_shifted_parameterisation_keeps_the_priors(tmp_path, monkeypatch, centred):
    # the shock's mean is sampled apart from its deviations, and lambda's location and
    # V_m's scale are sampled shifted by it (BreederSpec.cell_parameters), the shocks
    # centred or not by the number of cells (BreederSpec.generation_shocks; both ways
    # here, on the same run), and the first step's factor shifted by generation 1's shock
    # when they are centred (BreederSpec.generation_log_steps): the model's priors must be
    # the stated ones. 4000 prior
    # draws: log_lambda_mu ~ Normal(log 0.8, 0.5) and v_mut_scale ~ HalfNormal(0.3) by
    # Kolmogorov-Smirnov (p > 0.001), and the shocks e_t / sigma_gen iid standard
    # normal: variance 1 and lag-1 correlation 0 within 0.06 (the SE of each over
    # 4000 x 5 or 4000 x 4 values is below 0.015)
    import pymc as pm

    from qtrait.models import breeder

    run = open_run(write_simulated_run(tmp_path / "r", truth(0, 0.0, generations=6)))
    spec = get_spec("breeder")
    cd = chain_data([fit_data(run)])
    monkeypatch.setattr(breeder, "SHOCK_CENTRED_CELLS", 1 if centred else cd.J + 1)
    model = spec.build(cd)
    assert ("gen_shock_dev" in model.named_vars) == centred
    assert ("gen_shock_dev_z" in model.named_vars) != centred
    # d1 sampled shifted by dev_1 with the shocks centred (many cells), else plainly
    assert ("first_step_shifted" in model.named_vars) == centred
    assert spec.first_step_sampling(cd) == ("shifted" if centred else "plain")
    names = ["log_lambda_mu", "v_mut_scale", "gen_shock", "gen_shock_sd", "first_step"]
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the likelihood (a Potential) is ignored: right here
        prior = pm.sample_prior_predictive(draws=4000, var_names=names, random_seed=3).prior
    mu, sd = spec.priors["log_lambda_mu"]
    assert stats.kstest(prior["log_lambda_mu"].values.ravel(), "norm", (mu, sd)).pvalue > 1e-3
    assert stats.kstest(prior["v_mut_scale"].values.ravel(), "halfnorm",
                        (0, spec.priors["v_mut_scale"])).pvalue > 1e-3
    assert stats.kstest(prior["first_step"].values.ravel(), "norm",
                        spec.priors["first_step"]).pvalue > 1e-3
    z = (prior["gen_shock"] / prior["gen_shock_sd"]).values.reshape(4000, -1)
    assert z.shape[1] == 5
    # and d1 independent of the shocks a priori (sampled shifted by dev_1, it would
    # carry -dev_1 if the shift were not taken back out): correlation 0 within 0.06
    d1 = prior["first_step"].values.ravel()
    assert abs(np.corrcoef(d1, prior["gen_shock"].values.reshape(4000, -1)[:, 0])[0, 1]) < 0.06
    assert abs(z.var() - 1.0) < 0.06
    assert abs(np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]) < 0.06
