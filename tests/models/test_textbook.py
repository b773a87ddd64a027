"""The textbook cases of model collapse, from a generator that shares nothing with qtrait's
models (qtrait.simulate.refit_chain_table): Gaussian refitting chains, imported as tables.

* Replace (each generation fitted to the last one's n samples): the variance keeps
  (n - 1)/n a generation in expectation, so the breeder's lambda should be (n - 1)/n with
  no mutation variance.
* Accumulate (fitted to every sample so far): no collapse. The run's design says so
  (``training_data = "accumulate"``), and the models read the pooled moments of every
  set so far as what the next generation is finetuned on.
"""

from __future__ import annotations

import numpy as np
import pytest

from qtrait.fit import SamplerSettings, fit
from qtrait.forecast import forecast
from qtrait.simulate import refit_chain_table, write_refit_run
from qtrait.theory.horizon import Criteria

pytest.importorskip("nutpie")

SETTINGS = SamplerSettings(chains=2, draws=500, tune=500, seed=0)

#: Where today's breeder still fails the issue's bars (issue 13 keeps them as targets;
#: strict: a fix makes these tests fail until the marks are removed).
#: * Replace: the variance map V_t = lambda s2_{t-1} + V_m regresses a near-unit-root
#:   series on its lag *with an intercept* (V_m), over 15 generations: with V_m free the
#:   maximum-likelihood lambda is below (n - 1)/n in all 27 cells, V_m taking the rest,
#:   and the posterior follows (20 of 27 intervals cover, median width 0.34).
#: * Divergences: where the parents' variance barely moves (Accumulate, or Replace at
#:   n = 200), only lambda s2 + V_m is identified, a ridge in (lambda, V_m) that the
#:   sampler diverges on (a few to tens per fit).
#: analyses/textbook/results.md has the figures and the priors tried: the spike at V_m = 0
#: (breeder.V_MUT_SLAB_PRIOR, not a default) meets the Replace bars, nothing the
#: divergences.
BREEDER_FAILS = pytest.mark.xfail(strict=True, reason="issue 13: the breeder's V_m trades "
                                  "against lambda on Gaussian refitting chains; see the "
                                  "comment above")


def test_the_generator_is_the_textbook_process():
    # Replace at n = 20: generation t's MLE variance (divisor n) is the variance of the
    # Gaussian generation t + 1 is drawn from, V_{t+1} = V_t chi2_{n-1} / n, so
    # log(v_t / v_0) = log(V_{t+1} / V_1) is a sum of t independent log(chi2_{n-1} / n):
    # over 200 chains its mean at t = 10 lies within 4 SEs of t E log(chi2_{n-1} / n).
    from scipy.special import digamma

    n, t = 20, 10
    per_gen = digamma((n - 1) / 2) + np.log(2 / n)       # E log(chi2_{n-1} / n)
    r = []
    for seed in range(200):
        tab = refit_chain_table("replace", n, traits=1, generations=t, seed=seed)
        v = tab.groupby("generation")["t0"].var(ddof=0)
        r.append(np.log(v[t] / v[0]))
    se = np.std(r, ddof=1) / np.sqrt(len(r))
    assert abs(np.mean(r) - t * per_gen) < 4 * se
    # Accumulate does not collapse: from generation 10 to 30 its mean log variance
    # ratio moves by less than 0.15 (measured +0.04, SE 0.04: the pooled fit's shrinkage
    # (N-1)/N fades as N = n (t+1) grows), while Replace's falls by 20 more steps of
    # E log(chi2_{n-1}/n) (about -2.1), within 4 SEs
    acc, rep = [], []
    for seed in range(100):
        for mode, out in (("accumulate", acc), ("replace", rep)):
            tab = refit_chain_table(mode, n, traits=1, generations=30, seed=seed)
            v = tab.groupby("generation")["t0"].var(ddof=0)
            out.append(np.log(v[30] / v[10]))
    assert abs(np.mean(acc)) < 0.15
    assert abs(np.mean(rep) - 20 * per_gen) < 4 * np.std(rep, ddof=1) / np.sqrt(len(rep))


@pytest.fixture(scope="module")
def replace_fits(tmp_path_factory):
    out = {}
    root = tmp_path_factory.mktemp("replace")
    for n in (20, 50, 200):
        for seed in range(3):
            run = write_refit_run(root / f"r{n}_{seed}", "replace", n, seed=seed)
            out[(n, seed)] = fit(run, "breeder", SETTINGS, save=False)
    return out


@BREEDER_FAILS
def test_breeder_recovers_the_replace_rate(replace_fits):
    # 27 cells (3 n x 3 seeds x 3 traits): lambda's 90% interval covers (n-1)/n in at
    # least 80% of them (the bar: exact calibration would give 90%, and the
    # cells of one chain share their population parameters), with median width <= 0.3
    hits, widths, divergences = [], [], 0
    for (n, _), res in replace_fits.items():
        lam = res.idata.posterior["lambda"]
        lo = lam.quantile(0.05, dim=("chain", "draw")).values
        hi = lam.quantile(0.95, dim=("chain", "draw")).values
        hits += list((lo <= (n - 1) / n) & ((n - 1) / n <= hi))
        widths += list(hi - lo)
        divergences += res.diagnostics["divergences"]
    assert np.mean(hits) >= 0.8, f"covered {np.sum(hits)}/{len(hits)}"
    assert np.median(widths) <= 0.3
    assert divergences == 0


@pytest.fixture(scope="module")
def accumulate_forecasts(tmp_path_factory):
    """(n, seed) -> (P(no collapse within T_max = 50), divergences) of breeder fitted to
    generations 0..4 of an Accumulate chain."""
    crit = Criteria(q=0.5, d=2.0, t_max=50)
    root = tmp_path_factory.mktemp("accumulate")
    out = {}
    for n in (20, 50, 200):
        for seed in range(3):
            run = write_refit_run(root / f"a{n}_{seed}", "accumulate", n, seed=seed)
            res = fit(run, "breeder", SETTINGS, generations=slice(0, 5), save=False)
            p = forecast(res, run, crit, seed=0).run.to_dict()["p_no_collapse"]
            out[(n, seed)] = (p, res.diagnostics["divergences"])
    return out


def test_accumulate_chains_are_not_forecast_to_collapse(accumulate_forecasts):
    # from generations 0..4 of an Accumulate chain, P(no collapse within T_max) >= 0.9
    # for every chain (n = 20, 50, 200; 3 seeds): the model must not invent a collapse.
    # (before the design field existed, the same chains got 0.32-0.79, 2026-12-04)
    bad = {k: round(p, 2) for k, (p, _) in accumulate_forecasts.items() if p < 0.9}
    assert not bad, f"(n, seed): P(no collapse) {bad}"


@BREEDER_FAILS
def test_accumulate_fits_do_not_diverge(accumulate_forecasts):
    bad = {k: d for k, (_, d) in accumulate_forecasts.items() if d}
    assert not bad, f"(n, seed): divergences {bad}"


def test_accumulate_runs_pool_every_guided_set_so_far(tmp_path):
    # the moments an Accumulate generation is finetuned on are those of the union of the
    # guided sets 0..t (exact pooling: equal to the sample moments of the concatenated
    # images, to rounding), and a Replace run's are the last set's
    from qtrait.models import chain_data, fit_data
    from qtrait.models.base import parent_moments

    for mode in ("accumulate", "replace"):
        run = write_refit_run(tmp_path / mode, mode, 20, traits=2, generations=6, seed=1)
        cd = chain_data([fit_data(run)])
        mean, var, n = parent_moments(cd)
        fd = cd.runs[0]
        for t in (0, 3, 6):
            x = np.concatenate([run.table(g, "guided")[fd.traits].to_numpy()
                                for g in (range(t + 1) if mode == "accumulate" else [t])])
            z = (x - fd.center[0]) / fd.scale[0]
            np.testing.assert_allclose(mean[t], z.mean(axis=0), atol=1e-10)
            np.testing.assert_allclose(var[t], z.var(axis=0, ddof=1), rtol=1e-10)
            assert np.all(n[t] == len(x))


def test_zero_shot_theory_refuses_accumulated_data(tmp_path, cli):
    # the zero-shot map assumes each generation replaces its data: on an accumulating
    # run it says so instead of predicting a collapse the run's design rules out
    run = write_refit_run(tmp_path / "acc", "accumulate", 20, traits=1, generations=3)
    r = cli("theory", "horizon", "--run", run.root)
    assert r.code != 0 and "training_data = accumulate" in r.err
    assert "Traceback" not in r.err
