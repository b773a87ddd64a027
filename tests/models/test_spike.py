"""The breeder's spike at V_m = 0 (qtrait/models/breeder.py, "A spike at V_m = 0"; off by
default): each cell's V_m is its value or exactly 0, the choice marginalised per cell."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from qtrait.models import chain_data, fit_data, get_spec
from qtrait.models.breeder import V_MUT_SLAB_PRIOR
from qtrait.rundir import open_run
from qtrait.simulate import TraitTruth, write_simulated_run

from .breeder_chains import breeder_chain, noiseless_draws

pytest.importorskip("pymc")


def spike_spec():
    spec = get_spec("breeder")
    return replace(spec, priors=dict(spec.priors) | V_MUT_SLAB_PRIOR)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    traits = [TraitTruth(f"t{k}", lam=0.8, v_mut=0.05, gamma=0.0) for k in range(2)]
    path = write_simulated_run(tmp_path_factory.mktemp("spike") / "r",
                               breeder_chain(traits, 0, generations=5))
    return chain_data([fit_data(open_run(path))])


def likelihood_at(model, point):
    lik = model.logp(vars=[model["likelihood"]], jacobian=False)
    return float(model.compile_fn(lik, on_unused_input="ignore")(point))


def pointwise_at(model, point):
    """The observed rows (generations 1..) of ``log_lik_guided`` at ``point``."""
    out = model.replace_rvs_by_values([model["log_lik_guided"]])[0]
    f = model.compile_fn(out, on_unused_input="ignore")
    return np.asarray(f(point))[1:]


def test_the_spike_marginalises_v_m_zero_per_cell(chain):
    # at one point of the default model's parameters, the spike model's likelihood is
    # sum over cells of log(pi L1 + (1 - pi) L0), with L1 the default likelihood of the
    # cell and L0 the same with V_m = 0: with pi -> 1 it is the default's, with pi -> 0
    # the default's at V_m ~ 0 (v_mut_z = e^-40), to 1e-6 (float64 rounding of sums of a
    # few hundred terms, and the e^-30 weight of the other component)
    default, spike = get_spec("breeder").build(chain), spike_spec().build(chain)
    assert "v_mut_slab" in spike.named_vars and "v_mut_on" in spike.named_vars
    assert "v_mut_slab" not in default.named_vars
    point = default.initial_point()
    point["v_mut_z_log__"] = np.full(chain.J, np.log(0.3))
    full = likelihood_at(default, point)
    zero = likelihood_at(default, point | {"v_mut_z_log__": np.full(chain.J, -40.0)})
    assert abs(full - zero) > 1.0          # V_m matters at this point
    on = likelihood_at(spike, point | {"v_mut_slab_logodds__": np.array(30.0)})
    off = likelihood_at(spike, point | {"v_mut_slab_logodds__": np.array(-30.0)})
    assert on == pytest.approx(full, abs=1e-6)
    assert off == pytest.approx(zero, abs=1e-6)
    # in between, each cell mixes its two likelihoods: pi = 1/2 gives
    # sum_j log(L1_j / 2 + L0_j / 2), with the cells' L1_j and L0_j from the default's
    # pointwise log-likelihood at the two points
    ll1 = pointwise_at(default, point)
    ll0 = pointwise_at(default, point | {"v_mut_z_log__": np.full(chain.J, -40.0)})
    a, b = np.log(0.5) + ll1.sum(axis=0), np.log(0.5) + ll0.sum(axis=0)
    half = point | {"v_mut_slab_logodds__": np.array(0.0)}
    mid = likelihood_at(spike, half)
    assert mid == pytest.approx(np.logaddexp(a, b).sum(), abs=1e-6)
    # the pointwise log-likelihood of an entry is its density given the cell's other
    # entries (the choice shared): the cell's log-likelihood less the same without it;
    # with pi -> 1 it is the default's pointwise one
    expect = np.logaddexp(a, b) - np.logaddexp(a - ll1, b - ll0)
    np.testing.assert_allclose(pointwise_at(spike, half), expect, atol=1e-6)
    np.testing.assert_allclose(
        pointwise_at(spike, point | {"v_mut_slab_logodds__": np.array(30.0)}), ll1, atol=1e-6)


def test_forecasts_draw_each_cells_choice(tmp_path):
    # with every noise off, a forecast's first generation has V = lambda s2 + V_m where a
    # draw's cell has V_m on and lambda s2 where it is off: v_mut_on 1 gives the first,
    # 0 the second, and 0.5 a share of draws with V_m on within 4 binomial SEs of 0.5
    S = 4000
    spec, cd, draws = noiseless_draws(tmp_path, S)
    base = spec.forward(draws, cd, 1, 1, np.random.default_rng(0))["guided_var"][:, 0]
    for p in (1.0, 0.0, 0.5):
        d = draws | {"v_mut_on": np.full_like(draws["v_mut"], p)}
        v = spec.forward(d, cd, 1, 1, np.random.default_rng(0))["guided_var"][:, 0]
        on = np.isclose(v, base)
        assert np.all(on | np.isclose(v, base - 0.05))
        assert abs(on.mean() - p) <= 4 * np.sqrt(0.25 / on.size)
