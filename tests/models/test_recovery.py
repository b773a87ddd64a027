"""Parameter recovery on simulated chains, >= 20 seeds per model, with a binomial test of
the 90% interval coverage (theory.md section 6).

Each seed draws its own true parameters, simulates a chain with the simulator (whose
generation map the models share), fits, and records whether each central 90% interval
contains the truth. Per parameter, across seeds x traits, the coverage should be at least
0.9: the test is a one-sided exact binomial test at level 0.001 against coverage below
0.9, for each parameter on its own (over-confident intervals; a model that is right fails it once in a thousand runs).
Over-coverage is not a failure here. The truths are drawn from ranges narrower than the
priors, and a weakly identified parameter's posterior then stays near its prior and
covers nearly always: the breeder's gamma without an unconditional probe (its 90%
intervals are about 0.38 wide against truths in +-0.08 on these 8-generation runs) covers
60 of 60. Exact calibration, with truths drawn from the prior, is what the
simulation-based calibration (analyses/sbc, tests/test_calibration_slow.py) checks. The
intervals of one seed are correlated, so the effective sample is smaller than the count,
which is why the level is strict and the count large.
Fits use 2 chains x 500 draws (enough for 90% intervals whose endpoints are stable to a
few % of their width) and reuse the compiled model across seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qtrait.fit import SamplerSettings, fit
from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from qtrait.theory.schedules import GuidanceSchedule

pytest.importorskip("nutpie")

SEEDS = 20
SETTINGS = SamplerSettings(chains=2, draws=500, tune=500, seed=0)


def covered(post, name, cell, truth):
    v = post[name].sel(cell=cell).values.ravel()
    lo, hi = np.quantile(v, [0.05, 0.95])
    return lo <= truth <= hi


def assert_coverage(hits: dict[str, list[bool]]):
    """Each parameter on its own (pooled, an always-covering parameter would hide one that
    never covers): one-sided binomial test against coverage below 0.9 at level 0.001."""
    failed = []
    for name, h in hits.items():
        n, k = len(h), int(np.sum(h))
        p = stats.binomtest(k, n, 0.9, alternative="less").pvalue
        if p <= 0.001:
            failed.append(f"{name}: 90% intervals covered {k}/{n} = {k / n:.2f} "
                          f"(binomial p = {p:.2g})")
    assert not failed, "; ".join(failed)


def add(hits: dict, name: str, hit: bool) -> None:
    hits.setdefault(name, []).append(bool(hit))


def g0_var(run, trait):
    """Generation-0 sample variance: the fits' unit of variance."""
    return float(run.table(0, "guided")[trait].var(ddof=1))


def tilt_traits(rng, k: int) -> tuple[TraitTruth, ...]:
    """Random true h2 and V_m per trait; the base model reproduces the data (m_b = 0,
    V_b = 1), the unconditional branch is wider and offset."""
    return tuple(TraitTruth(f"t{i}", h2=rng.uniform(0.6, 0.95), v_mut=rng.uniform(0.0, 0.1),
                            m_base=0.0, v_base=1.0, m_uncond=rng.uniform(-1.5, -0.5),
                            v_uncond=rng.uniform(1.5, 3.0)) for i in range(k))


def tilt_family_coverage(tmp_path, model: str, rng_base: int, n_traits: int,
                         **design) -> dict[str, list[bool]]:
    """Simulate SEEDS chains of ``model`` with random truths and ``design``, fit each,
    and return whether the 90% intervals cover h2, kappa (the simulator guides with
    exactly w: kappa = 1) and V_m of every trait."""
    hits: dict = {}
    for seed in range(SEEDS):
        traits = tilt_traits(np.random.default_rng(rng_base + seed), n_traits)
        truth = ChainTruth(traits=traits, model=model, generations=6, images=400,
                           probe_w1=100, probe_uncond=100, seed=seed, **design)
        run = open_run(write_simulated_run(tmp_path / f"{model}{seed}", truth))
        post = fit(run, model, SETTINGS, save=False).idata.posterior
        for t in traits:
            cell = f"all/{t.name}"
            add(hits, "h2", covered(post, "h2", cell, t.h2))
            add(hits, "kappa", covered(post, "kappa", cell, 1.0))
            add(hits, "v_mut", covered(post, "v_mut", cell, t.v_mut / g0_var(run, t.name)))
    return hits


def test_breeder_recovery(tmp_path):
    hits: dict = {}
    for seed in range(SEEDS):
        rng = np.random.default_rng(100 + seed)
        traits = tuple(TraitTruth(f"t{k}", lam=rng.uniform(0.55, 0.95),
                                  gamma=rng.uniform(-0.08, 0.08), v_mut=rng.uniform(0.02, 0.2),
                                  m_uncond=rng.choice([-1.0, 1.0]))
                       for k in range(3))
        truth = ChainTruth(traits=traits, model="breeder", generations=8, images=400,
                           probe_w1=0, probe_uncond=0, seed=seed)
        run = open_run(write_simulated_run(tmp_path / f"b{seed}", truth))
        post = fit(run, "breeder", SETTINGS, save=False).idata.posterior
        for t in traits:
            cell = f"all/{t.name}"
            add(hits, "lambda", covered(post, "lambda", cell, t.lam))
            add(hits, "gamma", covered(post, "gamma", cell, t.gamma))
            add(hits, "v_mut", covered(post, "v_mut", cell, t.v_mut / g0_var(run, t.name)))
    assert_coverage(hits)


def test_tilt_recovery(tmp_path):
    assert_coverage(tilt_family_coverage(tmp_path, "tilt", 200, 3,
                                         guidance=GuidanceSchedule("constant", 2.5)))


@pytest.mark.slow
def test_exact_recovery(tmp_path):
    """The exact model on chains simulated with the exact map and a decaying schedule
    (10 DDIM steps keep the fits to tens of seconds each)."""
    from qtrait.theory.schedules import Sampler

    assert_coverage(tilt_family_coverage(tmp_path, "exact", 300, 2,
                                         sampler=Sampler("ddim", 10),
                                         guidance=GuidanceSchedule("linear", 4.0)))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 13: hier's a_gamma (the gamma intercept at "
                   "w = 5) covered 6 of 20 when checked per parameter (2026-12-05); the "
                   "pooled count had hidden it. Remove this mark when hier is fixed")
def test_hier_recovery(tmp_path):
    """20 seeds of 6 breeder chains each (3 CFG scales x 2 replicates), random true design
    slopes: coverage of the slopes of log lambda and gamma on the CFG scale, and of the
    intercepts."""
    hits: dict = {}
    for seed in range(SEEDS):
        rng = np.random.default_rng(400 + seed)
        a_ll, b_ll = np.log(rng.uniform(0.6, 0.85)), rng.uniform(-0.1, 0.0)
        a_g, b_g = rng.uniform(-0.03, 0.03), rng.uniform(-0.02, 0.02)
        runs = []
        for i, w in enumerate([2.0, 5.0, 8.0] * 2):
            lam = float(np.exp(a_ll + b_ll * (w - 5.0)))
            traits = tuple(TraitTruth(f"t{k}", lam=lam, gamma=a_g + b_g * (w - 5.0),
                                      v_mut=0.05, m_uncond=-1.0 if k else 1.0)
                           for k in range(2))
            truth = ChainTruth(traits=traits, model="breeder", generations=8, images=400,
                               probe_w1=0, probe_uncond=0,
                               guidance=GuidanceSchedule("constant", w), seed=1000 * seed + i)
            runs.append(open_run(write_simulated_run(tmp_path / f"h{seed}_{i}", truth)))
        post = fit(runs, "hier", SETTINGS, save=False).idata.posterior
        for name, true in (("b_log_lambda", b_ll), ("b_gamma", b_g)):
            v = post[name].sel(covariate="cfg_scale").values.ravel()
            lo, hi = np.quantile(v, [0.05, 0.95])
            add(hits, name, lo <= true <= hi)
        for name, true in (("a_log_lambda", a_ll), ("a_gamma", a_g)):
            v = post[name].values.ravel()
            lo, hi = np.quantile(v, [0.05, 0.95])
            add(hits, name, lo <= true <= hi)
    assert_coverage(hits)
