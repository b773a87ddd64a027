"""The priors learned on the benchmark's seed-1 chains are copied by hand into
qtrait/models/breeder.py (the package does not read analyses/); this checks each copy
against what the records in analyses/benchmark give today, to the two decimals written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from qtrait.models.breeder import (DEFAULT_PRIORS, LEVEL_SHARE_PRIOR, MEAN_OFFSET_PRIOR,
                                   MOMENTUM_PRIOR, SIGMA_POOLED_PRIOR, SIGMA_TRAIT_PRIOR)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location(
        "analysis_benchmark", ROOT / "analyses" / "benchmark" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: prior key -> what the records give for it
LEARNED = {
    "gen_shock_sd": lambda b: b.shock_prior(),
    "first_step": lambda b: b.first_prior(),
    "mean_offset_sd": lambda b: b.offset_prior(),
    "mean_momentum": lambda b: b.momentum_prior(),
    "log_level_mu": lambda b: b.levelshare_prior()["log_level_mu"],
    "logit_share_mu": lambda b: b.levelshare_prior()["logit_share_mu"],
    "log_level_sd": lambda b: b.levelshare_spread_prior()["log_level_sd"],
    "logit_share_sd": lambda b: b.levelshare_spread_prior()["logit_share_sd"],
    "sigma_learn_trait": lambda b: b.trait_noise_prior(),
    "sigma_learn_pooled": lambda b: b.trait_noise_pooled_prior(),
}
#: every prior written in breeder.py, default or not
WRITTEN = (DEFAULT_PRIORS | MEAN_OFFSET_PRIOR | MOMENTUM_PRIOR | LEVEL_SHARE_PRIOR
           | SIGMA_TRAIT_PRIOR | SIGMA_POOLED_PRIOR)


@pytest.mark.parametrize("key", sorted(LEARNED))
def test_the_breeder_priors_are_the_ones_the_records_give(benchmark, key):
    learned = np.round(LEARNED[key](benchmark), 2)
    written = WRITTEN[key]
    assert np.array_equal(learned, np.asarray(written)), (learned, written)


def test_models_md_states_what_the_learned_priors_give():
    # docs/models.md summarises each learned prior by hand (a median or factor and a
    # central 90% range); each summary must be what the prior written in breeder.py
    # gives, at the decimals the text shows
    from scipy.special import expit

    text = (ROOT / "docs" / "models.md").read_text()
    z = 1.6448536269514722            # the standard normal's 95% quantile
    p = WRITTEN
    (sm, ss), (fm, fs), (rm, rs) = p["gen_shock_sd"], p["first_step"], p["mean_momentum"]
    lm, (am, asd) = p["log_level_mu"][0], p["logit_share_mu"]
    nm, ns = p["sigma_learn_trait"]
    stated = [
        f"median {np.exp(sm):.3f}, 90% between {np.exp(sm - z * ss):.3f} and "
        f"{np.exp(sm + z * ss):.3f}",
        f"a factor of {np.exp(fm):.2f}, 90% between {np.exp(fm - z * fs):.2f} and "
        f"{np.exp(fm + z * fs):.2f}",
        f"90% between {rm - z * rs:.2f} and {rm + z * rs:.2f}",
        f"median {np.exp(p['mean_offset_sd'][0]):.3f} generation-0 SDs",
        "median {:.2f} generation-0 SDs, 90% between {:.2f} and {:.2f}".format(
            *np.exp(nm + np.array([0, -z, z]) * ns)),
        f"S ~ HalfNormal({p['sigma_learn_pooled']:.2f})",
        f"| HalfNormal({p['sigma_learn_pooled']:.2f}) | learned on the seed-1 chains",
        f"L about {np.exp(lm):.2f}, r about {expit(am):.2f} (90% between "
        f"{expit(am - z * asd):.2f} and {expit(am + z * asd):.2f})",
    ]
    missing = [s for s in stated if s not in text]
    assert not missing, missing
