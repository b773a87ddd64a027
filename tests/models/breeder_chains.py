"""Simulated breeder chains shared by the breeder's model tests (not a test module)."""

from __future__ import annotations

import numpy as np

from qtrait.models import chain_data, fit_data, get_spec
from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run

CONCEPTS = ("a", "b", "c")


def breeder_chain(traits, seed: int, generations: int = 10, probe_uncond: int = 0,
                  **extra) -> ChainTruth:
    """A simulated breeder chain of the concepts CONCEPTS and the ``traits`` (TraitTruth),
    200 images a generation, ``probe_uncond`` unconditional probe images (with
    ``breeder_probe=True`` in ``extra``, other ChainTruth fields)."""
    return ChainTruth(traits=tuple(traits), model="breeder", generations=generations,
                      images=200, probe_w1=0, probe_uncond=probe_uncond, concepts=CONCEPTS,
                      seed=seed, **extra)


def truth(seed: int, shock_sd: float, generations: int = 10,
          first_step: float = 0.0) -> ChainTruth:
    """A breeder chain of 3 concepts x 3 traits (lambda 0.6-0.9, V_m 0.02-0.1, no drift)
    with the generation shock's SD and the first step's log factor given."""
    rng = np.random.default_rng(300 + seed)
    traits = [TraitTruth(f"t{k}", lam=rng.uniform(0.6, 0.9), gamma=0.0,
                         v_mut=rng.uniform(0.02, 0.1), m_uncond=0.0) for k in range(3)]
    return breeder_chain(traits, seed, generations, shock_sd=shock_sd, first_step=first_step)


def noiseless_draws(tmp_path, S: int, **extra):
    """(spec, chain data, draws): a 4-generation simulated run and S posterior draws
    with lambda 0.8, V_m 0.05 and every noise off, plus ``extra`` per-draw scalars."""
    run = open_run(write_simulated_run(tmp_path / "r", truth(0, 0.0, generations=4)))
    cd = chain_data([fit_data(run)])
    J = cd.J
    draws = {"lambda": np.full((S, J), 0.8), "gamma": np.zeros((S, J)),
             "v_mut": np.full((S, J), 0.05), "intercept": np.zeros((S, J)),
             "sigma_learn": np.zeros(S), "tau": np.zeros(S)}
    return get_spec("breeder"), cd, draws | {k: np.full(S, v) for k, v in extra.items()}


def prior_draws(tmp_path, monkeypatch, spec, centred: bool, var_names: list[str],
                z_name: str, draws: int = 4000):
    """``draws`` prior draws of ``var_names`` from ``spec``'s graph on a 4-generation,
    3-concept x 3-trait breeder chain, its optional term sampled centred or not (the
    threshold SHOCK_CENTRED_CELLS patched); asserts that the non-centred variable
    ``z_name`` is in the graph exactly when not centred."""
    import warnings

    import pymc as pm

    from qtrait.models import breeder

    truth = breeder_chain([TraitTruth(f"t{k}", lam=0.8, v_mut=0.1, gamma=0.0) for k in
                           range(3)], 0, 4)
    cd = chain_data([fit_data(open_run(write_simulated_run(tmp_path / "r", truth)))])
    monkeypatch.setattr(breeder, "SHOCK_CENTRED_CELLS", 1 if centred else cd.J + 1)
    model = spec.build(cd)
    assert (z_name in model.named_vars) != centred
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the likelihood (a Potential) is ignored: right here
        return pm.sample_prior_predictive(draws=draws, random_seed=6,
                                          var_names=var_names).prior


def breeder_with(extra: dict):
    """The breeder's specification with the prior keys ``extra`` added (or replaced)."""
    from dataclasses import replace

    spec = get_spec("breeder")
    return replace(spec, priors=dict(spec.priors) | extra)
