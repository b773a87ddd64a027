"""The breeder's mean map beyond (1 + gamma) zbar + beta (qtrait/models/breeder.py):

* the free mean equilibrium ("Mean equilibrium"): with an unconditional probe the map is
  centred on the probe's mean c, and the prior key ``mean_offset_sd`` (off by default)
  adds a per-cell offset delta to its intercept, -gamma c + delta;
* the momentum ("Momentum", off by default): a share rho of the parents' last step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from qtrait.fit import SamplerSettings, fit
from qtrait.models import chain_data, fit_data, get_spec
from qtrait.models.breeder import MEAN_OFFSET_PRIOR, MOMENTUM_PRIOR, parent_steps
from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain, noiseless_draws

pytest.importorskip("nutpie")

SETTINGS = SamplerSettings(chains=2, draws=500, tune=500, seed=0)
#: per trait: (gamma, centre of the chain's mean map); the probe's mean m_uncond is 0, so
#: the true offset of the intercept from -gamma c is delta = -gamma (centre - 0). One gamma
#: for all: the model pools gamma over cells (HalfNormal(0.1) spread)
TRAITS = {"t0": (-0.4, 0.5), "t1": (-0.4, 0.0), "t2": (-0.4, -0.5)}
DELTA = {k: -g * c for k, (g, c) in TRAITS.items()}           # 0.2, 0, -0.2
#: wide enough not to decide the answer: LogNormal(log 0.05, 1.5)
PRIOR = (float(np.log(0.05)), 1.5)


def chain(seed: int) -> ChainTruth:
    traits = [TraitTruth(k, lam=0.8, v_mut=0.1, gamma=g, center=c, m_uncond=0.0,
                         v_uncond=1.0, learn_sd=0.02) for k, (g, c) in TRAITS.items()]
    return breeder_chain(traits, seed, 12, probe_uncond=50, breeder_probe=True)


def test_the_key_adds_the_offset_and_only_with_a_probe(tmp_path):
    without = get_spec("breeder")          # not a default prior key
    with_key = replace(without, priors=dict(without.priors) | MEAN_OFFSET_PRIOR)
    probe = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "p", chain(0))))])
    assert {"mean_offset_sd", "mean_offset"} <= set(with_key.build(probe).named_vars)
    # without the key, or without a probe (the intercept is then free per cell), none
    assert "mean_offset" not in without.build(probe).named_vars
    bare = replace(chain(0), breeder_probe=False, probe_uncond=0)
    no_probe = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "n", bare)))])
    assert "mean_offset" not in with_key.build(no_probe).named_vars
    assert "mean_offset_sd" not in get_spec("hier").priors
    assert "mean_offset_sd" not in without.priors
    with pytest.raises(ValueError, match="breeder_probe"):
        replace(chain(0), probe_uncond=0)


def test_breeder_recovers_the_mean_offset(tmp_path):
    # two chains of 3 concepts x 3 traits whose mean maps settle away from the probe's
    # mean (delta = +0.2, 0, -0.2 per trait, in generation-0 SDs): the offset's 90%
    # interval covers the truth (rescaled by the generation-0 SD the fit standardises
    # by) in at least 14 of 18 cells (exact calibration: 90%, and P(X <= 13) = 0.02 for
    # X ~ Binomial(18, 0.9); the cells of one chain share the offset's SD), and its
    # posterior median has the truth's sign in every cell of the +-0.2 traits
    spec = get_spec("breeder")
    spec = replace(spec, priors=dict(spec.priors) | {"mean_offset_sd": PRIOR})
    hits, signs = [], []
    for seed in (1, 2):
        run = open_run(write_simulated_run(tmp_path / f"r{seed}", chain(seed)))
        res = fit(run, "breeder", SETTINGS, save=False, spec=spec)
        cd = res.data
        fd = cd.runs[0]
        truth = np.array([[DELTA[t] / fd.scale[c, k] for k, t in enumerate(fd.traits)]
                          for c in range(len(fd.concepts))]).ravel()
        d = res.idata.posterior["mean_offset"].stack(s=("chain", "draw")).values
        lo, med, hi = np.quantile(d, [0.05, 0.5, 0.95], axis=-1)
        hits += list((lo <= truth) & (truth <= hi))
        signs += list(np.sign(med[truth != 0]) == np.sign(truth[truth != 0]))
    assert np.sum(hits) >= 14, f"covered {np.sum(hits)}/18"
    assert all(signs)


def test_parent_steps_are_the_last_step_of_the_parents_mean(tmp_path):
    # replace: row t is zbar_{t-1} - zbar_{t-2} from t = 2; rows 0 and 1 none (0)
    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r", chain(0))))])
    m = cd.sets["guided"].mean
    steps = parent_steps(cd)
    np.testing.assert_array_equal(steps[:2], 0.0)
    np.testing.assert_allclose(steps[2:], m[1:-1] - m[:-2])
    assert np.all(steps[2:] != 0)


def test_forecasts_carry_the_last_step_forward(tmp_path):
    # every noise off, gamma 0, intercept 0, rho 0.5: a forecast's first mean is the last
    # observed mean plus half the last observed step; the next adds half of the step just
    # simulated; generation 1 has no step to carry (its mean stays at generation 0's)
    S = 20
    spec, cd, draws = noiseless_draws(tmp_path, S, mean_momentum=0.5)
    spec = replace(spec, priors=dict(spec.priors) | MOMENTUM_PRIOR)
    m = cd.sets["guided"].mean
    G = cd.G
    fwd = spec.forward(draws, cd, start=G, t_end=G + 1, rng=np.random.default_rng(0))
    np.testing.assert_allclose(fwd["guided_mean"][:, 0],
                               np.broadcast_to(m[G - 1] + 0.5 * (m[G - 1] - m[G - 2]),
                                               (S, cd.J)))
    first = fwd["observed_mean"][:, 0]
    np.testing.assert_allclose(fwd["guided_mean"][:, 1], first + 0.5 * (first - m[G - 1]))
    fwd = spec.forward(draws, cd, start=1, t_end=2, rng=np.random.default_rng(0))
    np.testing.assert_allclose(fwd["guided_mean"][:, 0], np.broadcast_to(m[0], (S, cd.J)))
    one = fwd["observed_mean"][:, 0]
    np.testing.assert_allclose(fwd["guided_mean"][:, 1], one + 0.5 * (one - m[0]))
    # without the draw, no momentum (the mean stays where the parents are)
    no_rho = {k: v for k, v in draws.items() if k != "mean_momentum"}
    fwd = spec.forward(no_rho, cd, start=G, t_end=G, rng=np.random.default_rng(0))
    np.testing.assert_allclose(fwd["guided_mean"][:, 0], np.broadcast_to(m[G - 1], (S, cd.J)))


def test_momentum_is_off_by_default_and_on_with_its_key(tmp_path):
    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r", chain(0))))])
    spec = get_spec("breeder")
    assert "mean_momentum" not in spec.build(cd).named_vars
    on = replace(spec, priors=dict(spec.priors) | MOMENTUM_PRIOR)
    assert "mean_momentum" in on.build(cd).named_vars
    assert "mean_momentum" not in get_spec("hier").priors
