"""The likelihood of a set's (mean, variance): their joint law against simulation, the
pooled shape estimates, near-constant traits, and calibrated fits on skewed traits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

from qtrait.models import chain_data, fit_data
from qtrait.models.base import log_gamma, mean_var_law, sample_guided, set_loglik
from qtrait.models.data import NEAR_CONSTANT_TIE, pooled_shape
from qtrait.rundir import import_table, open_run
from qtrait.simulate import ChainTruth, TraitTruth, standard_noise, write_simulated_run


def skewed_sets(n: int, reps: int, skew: float, seed: int = 0):
    """reps sets of n draws with mean 0, variance 1 and the given skewness: (zbar, s2)."""
    rng = np.random.default_rng(seed)
    x = standard_noise(rng, (reps, n, 1), np.array([skew]))[..., 0]
    return x.mean(axis=1), x.var(axis=1, ddof=1)


@pytest.mark.parametrize("n", [30, 200])
def test_joint_law_matches_simulated_sets(n):
    # sets of n draws of a Gamma-shaped trait (skewness 1.5, excess kurtosis 3.375): the
    # simulator of the law (sample_guided) reproduces the variance of s2, its covariance
    # with zbar and zbar's variance. 40,000 sets: the SE of a correlation is < 0.005 and
    # of a variance ratio < 2% (s2's kurtosis at n = 30 included), so the tolerances
    # (0.03 on correlations, 8% on variances) fail a wrong factor of the law, not noise
    skew, kurt, reps = 1.5, 1.5 * 1.5 ** 2, 40_000
    zbar, s2 = skewed_sets(n, reps, skew)
    rng = np.random.default_rng(1)
    ones = np.ones(reps)
    z_m, s_m = sample_guided(rng, 0 * ones, ones, n * ones, kurt * ones, skew * ones)
    for a, b in ((zbar, z_m), (s2, s_m)):
        assert np.var(b) == pytest.approx(np.var(a), rel=0.08)
    assert np.corrcoef(z_m, s_m)[0, 1] == pytest.approx(np.corrcoef(zbar, s2)[0, 1], abs=0.03)
    # and the closed form: Cov(zbar, s2) = mu_3 / n = skew / n for unit variance
    assert np.cov(zbar, s2)[0, 1] == pytest.approx(skew / n, rel=0.1)


def test_independent_when_symmetric_and_the_density_integrates_to_one():
    r, b, v = mean_var_law(20.0, 0.0, 0.0, 2.0)
    assert b == 0 and v == pytest.approx(2.0 / 20) and r == pytest.approx(2 / 19)
    # the joint density over a grid of (zbar, s2) integrates to 1 (a skewed law: rho^2
    # 0.42); trapezoid sums on a 600 x 600 grid are accurate to ~1e-4
    zs, vs = np.linspace(-1.5, 1.5, 600), np.linspace(1e-4, 4.0, 600)
    Z, V = np.meshgrid(zs, vs, indexing="ij")
    dens = np.exp(set_loglik(Z, V, 30.0, 3.0, 0.0, 1.0, symbolic=False, skew=1.4))
    total = np.trapezoid(np.trapezoid(dens, vs, axis=1), zs)
    assert total == pytest.approx(1.0, abs=2e-3)


def test_log_gamma_and_its_gradient_match_scipy():
    # the graphs' log Gamma (elementary, so the compiled log-density caches on disk)
    # against scipy over eleven decades: relative error < 1e-10 in the value, as its
    # docstring says, and its PyTensor gradient is the digamma function to 1e-9
    import pytensor
    import pytensor.tensor as pt

    x = np.geomspace(1e-3, 1e8, 4001)
    ref = special.gammaln(x)
    rel = np.abs(log_gamma(x) - ref) / np.maximum(1.0, np.abs(ref))
    assert rel.max() < 1e-10
    xs = pt.dvector("x")
    grad = pytensor.function([xs], pytensor.grad(pt.sum(log_gamma(xs, pt)), xs))(x)
    dig = special.digamma(x)
    assert np.max(np.abs(grad - dig) / np.maximum(1.0, np.abs(dig))) < 1e-9
    # the symbolic likelihood (what the models sample) equals the numpy one (what
    # forecasts are scored with) on a skewed set
    args = (np.array([0.1, -0.3]), np.array([0.8, 1.7]), 30.0, 1.2, 0.0, 1.1, 0.01, 0.04)
    sym = set_loglik(*args, skew=0.9).eval()
    assert np.allclose(sym, set_loglik(*args, symbolic=False, skew=0.9), rtol=1e-10)


@pytest.mark.parametrize("model", ["breeder", "tilt"])
def test_model_data_are_one_container_and_the_log_density_caches_on_disk(model):
    # what keeps a new process's compile short (docs/models.md section 7): every data
    # array is a view of one pm.Data vector (nutpie unpacks each container in code it
    # compiles), the views hold the arrays exactly, and every node of the compiled
    # log-density and gradient has a numba cache key (one uncacheable node, such as
    # pt.gammaln's digamma gradient, keeps the whole graph out of the disk cache)
    import pymc as pm
    import pytensor
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    from qtrait.models import get_spec
    from qtrait.models.base import PACKED

    root = Path(__file__).resolve().parents[2] / "data" / "runs" / "chain_042"
    cd = chain_data([fit_data(open_run(root))])
    spec = get_spec(model)
    pm_model = spec.build(cd)
    assert [d.name for d in pm_model.data_vars] == [PACKED]
    arrays = spec.arrays(cd)
    with pm.Model():
        views = spec.data_vars(cd)
    for name, a in arrays.items():
        assert np.array_equal(views[name[len("data_"):]].eval(), a)
    logp = pm_model.logp()
    fn = pytensor.function(pm_model.value_vars,
                           [logp, *pytensor.grad(logp, pm_model.value_vars)], mode="NUMBA")
    with pytensor.config.change_flags(numba__cache=True):
        _, key = numba_funcify_and_cache_key(fn.maker.fgraph)
    assert key is not None


def test_pooled_shape_recovers_and_separates_cells(tmp_path):
    # 12 generations x 2 concepts of 200 images: concept "a" skewed (1.5), "b" Gaussian.
    # Pooled over 2,400 images a cell's skewness has SE about 0.05-0.1 (Gamma tails), so
    # 0.3 separates a wrong pooling (both cells near 0.75) from the truth
    truth = ChainTruth(traits=(TraitTruth("t", skew=1.5, lam=0.9),), model="breeder",
                       generations=12, images=200, probe_w1=0, probe_uncond=0, seed=3,
                       concepts=("a",))
    flat = ChainTruth(traits=(TraitTruth("t", lam=0.9),), model="breeder", generations=12,
                      images=200, probe_w1=0, probe_uncond=0, seed=4, concepts=("b",))
    cds = [chain_data([fit_data(open_run(write_simulated_run(tmp_path / k, t)))])
           for k, t in (("a", truth), ("b", flat))]
    sa, sb = pooled_shape(cds[0]), pooled_shape(cds[1])
    assert sa.skew[0] == pytest.approx(1.5, abs=0.3)
    assert sb.skew[0] == pytest.approx(0.0, abs=0.3)
    assert sa.kurt[0] > 1.0 and abs(sb.kurt[0]) < 0.5   # Gamma: 3.4 (G2 biased low); 0
    # leave-future-out: from generations < 3 only, the estimate uses those sets
    early = pooled_shape(cds[0], upto=3)
    assert early.skew_se[0] > sa.skew_se[0]


def test_near_constant_traits_are_left_out_and_listed(tmp_path):
    # a classifier probability saturated at 1 in most images of a concept: a point mass;
    # a trait tied in 30% of the images (a coarse pixel statistic) stays below the
    # threshold and is fitted
    rng = np.random.default_rng(0)
    rows = []
    for g in range(3):
        for c in ("a", "b"):
            n = 40
            prob = np.where(rng.uniform(size=n) < 0.7, 1.0, rng.uniform(0.3, 1.0, n))
            rows.append({"generation": np.full(n, g), "set": "guided", "concept": c,
                         "image_id": [f"{g}{c}{i}" for i in range(n)],
                         "x": rng.standard_normal(n), "label_prob": prob,
                         "coarse": np.where(np.arange(n) < 0.3 * n, 0.5,
                                            rng.uniform(0, 1, n))})
    import pandas as pd

    df = pd.concat([pd.DataFrame(r) for r in rows])
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    run = import_table(csv, tmp_path / "run", {"name": "t", "cfg_scale": 1.0, "p_drop": 0.0,
                                               "cfg_schedule": "constant",
                                               "anchor": "previous"})
    fd = fit_data(run)
    assert fd.traits == ["x", "coarse"]
    assert fd.near_constant == ["label_prob"] and "label_prob" in fd.excluded
    g0 = df[df["generation"] == 0]
    share = {t: max(g0.loc[g0["concept"] == c, t].value_counts(normalize=True).iloc[0]
                    for c in ("a", "b")) for t in ("label_prob", "coarse")}
    assert share["coarse"] < NEAR_CONSTANT_TIE <= share["label_prob"]


def test_breeder_is_calibrated_on_skewed_traits(tmp_path):
    """12 seeds x 2 concepts x 3 traits of 200 images with skewness 1.5 (saturation-like
    traits): each parameter's 90% intervals pass the recovery tests' binomial check
    (coverage not below 0.9 at level 0.001). Measured on 2026-12-05: lambda 62/72,
    gamma 70/72, V_m 63/72 (with the covariance switched off by hand, once, gamma covered
    59/72; no code path does that now)."""
    from qtrait.fit import SamplerSettings, fit

    pytest.importorskip("nutpie")
    hits: dict = {}
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        traits = tuple(TraitTruth(f"t{k}", lam=rng.uniform(0.55, 0.95),
                                  gamma=rng.uniform(-0.08, 0.08), v_mut=rng.uniform(0.02, 0.2),
                                  m_uncond=rng.choice([-1.0, 1.0]), skew=1.5)
                       for k in range(3))
        truth = ChainTruth(traits=traits, model="breeder", generations=8, images=200,
                           probe_w1=0, probe_uncond=0, seed=seed, concepts=("a", "b"))
        run = open_run(write_simulated_run(tmp_path / f"s{seed}", truth))
        v0 = run.table(0, "guided").groupby("concept")[[t.name for t in traits]].var(ddof=1)
        post = fit(run, "breeder", SamplerSettings(chains=2, draws=500, tune=500, seed=0),
                   save=False).idata.posterior
        for c in ("a", "b"):
            for t in traits:
                for name, true in (("lambda", t.lam), ("gamma", t.gamma),
                                   ("v_mut", t.v_mut / v0.loc[c, t.name])):
                    v = post[name].sel(cell=f"{c}/{t.name}").values.ravel()
                    lo, hi = np.quantile(v, [0.05, 0.95])
                    hits.setdefault(name, []).append(lo <= true <= hi)
    for name, h in hits.items():
        p = stats.binomtest(int(np.sum(h)), len(h), 0.9, alternative="less").pvalue
        assert p > 0.001, f"{name}: covered {np.sum(h)}/{len(h)}"
