"""The adequacy check (qtrait/adequacy.py): its PIT uniformity test is calibrated under
within-generation dependence and has power against the misfits it is for; the one-step
predictive CDF is the likelihood's."""

import numpy as np
import pytest
from scipy import special, stats

from qtrait.adequacy import predictive_cdf, rao_scott_uniformity, trait_gaps, worst_cells


def clustered_pits(rng, clusters=8, size=150, rho=0.3, scale=1.0, shift=0.0):
    """PITs of ``clusters`` generations x ``size`` cells whose probits share a common
    shock within a generation (correlation rho). With scale 1 and shift 0 they are
    exactly uniform marginally; scale > 1 is an overconfident model (U-shaped PITs),
    shift a biased one."""
    shock = rng.normal(0, np.sqrt(rho), clusters)[:, None]
    z = shock + rng.normal(0, np.sqrt(1 - rho), (clusters, size))
    pit = special.ndtr(scale * z + shift)
    return pit.ravel(), np.repeat(np.arange(clusters), size)


def test_rao_scott_holds_its_level_where_the_plain_chi_square_does_not():
    # 400 replications of calibrated but within-generation-correlated PITs (the shape of
    # a 150-cell run with 8 predicted generations). The binomial SE of a 5% rate over 400
    # is 1.1%: the corrected test must stay below 8.5% (3 SEs; measured 4-7% across
    # cluster counts and correlations); the uncorrected Pearson test rejects in more
    # than half, which is why the correction is there.
    rng = np.random.default_rng(11)
    rs, plain = [], []
    for _ in range(400):
        pit, g = clustered_pits(rng)
        t = rao_scott_uniformity(pit, g)
        rs.append(t.p_value < 0.05)
        plain.append(stats.chi2.sf(t.raw, t.df) < 0.05)
    assert np.mean(rs) < 0.085
    assert np.mean(plain) > 0.5


def test_rao_scott_with_independent_pits_is_near_nominal():
    # independent uniform PITs in 20 clusters: the rejection rate at 5% over 400
    # replications lies within 3 binomial SEs (3.3%) of 5%
    rng = np.random.default_rng(12)
    rej = [rao_scott_uniformity(rng.uniform(size=600), np.repeat(np.arange(20), 30)).p_value
           < 0.05 for _ in range(400)]
    assert abs(np.mean(rej) - 0.05) < 0.033


@pytest.mark.parametrize("scale,shift", [(1.6, 0.0), (1.0, 0.5)])
def test_rao_scott_rejects_overconfident_and_biased_models(scale, shift):
    # an overconfident model (predictive SD 1/1.6 of the truth) or one biased by half an
    # SD, in the shape of a benchmark chain (13 predicted generations x 150 cells) with
    # within-generation correlation 0.1: rejected at p < 0.01 in at least 90% of 100
    # replications (measured: 1.0; with 7-8 generations the F test's few denominator
    # degrees of freedom cost power: about 0.7 for the SD ratio 1.6)
    rng = np.random.default_rng(13)
    rej = [rao_scott_uniformity(*clustered_pits(rng, clusters=13, rho=0.1, scale=scale,
                                                shift=shift)).p_value < 0.01
           for _ in range(100)]
    assert np.mean(rej) >= 0.9


def test_predictive_cdf_is_uniform_under_its_own_likelihood():
    # draws of (zbar, s2) from the likelihood given one latent (mean, var) per cell: the
    # PIT of each statistic is uniform (KS p > 0.01 over 4000 cells) and a 90% interval
    # covers 0.90 within 3 binomial SEs (0.014)
    rng = np.random.default_rng(14)
    J, n, kurt = 4000, 40.0, 0.5
    mean = rng.normal(size=J)
    var = rng.uniform(0.3, 2.0, J)
    shape = 1.0 / (2.0 / (n - 1) + kurt / n)
    x_mean = mean + np.sqrt(var / n) * rng.standard_normal(J)
    x_var = rng.gamma(shape, var / shape)
    p_mean, p_var = predictive_cdf(x_mean, x_var, n, kurt, mean[None], var[None])
    for p in (p_mean, p_var):
        assert stats.kstest(p, "uniform").pvalue > 0.01
        assert abs(np.mean((p >= 0.05) & (p <= 0.95)) - 0.9) < 0.014


def test_worst_cells_finds_the_biased_cell():
    rng = np.random.default_rng(15)
    cells = np.repeat(np.array(["a/x", "b/x", "c/x"], dtype=object), 8)
    pit = rng.uniform(size=24)
    pit[cells == "b/x"] = rng.uniform(0.9, 1.0, 8)      # always above its prediction
    worst = worst_cells(pit, cells, np.full(24, "mean", dtype=object))
    assert worst[0]["cell"] == "b/x" and worst[0]["z"] > 3


def test_trait_gaps_add_up_to_the_cell_averaged_gap_and_rank_the_trait_that_moved():
    # 3 traits x 5 cells, 400 replicates centred on 0 (SD 0.1 per cell); the observed
    # means of trait 1 sit 1.5 above, the others at 0: trait 1 ranks first with a gap
    # near 1.5 (the replicates' mean over 400 draws is within 0.03 of 0), its share 1/3,
    # and the contributions add up to the observed average less the replicates' mean
    # (exactly: both are linear in the cells)
    rng = np.random.default_rng(16)
    trait_of = np.repeat([0, 1, 2], 5)
    rep = rng.normal(0.0, 0.1, (400, 15))
    obs = np.where(trait_of == 1, 1.5, 0.0) + rng.normal(0.0, 0.01, 15)
    rows = trait_gaps(obs, rep, trait_of, ["a", "b", "c"])
    assert [r["trait"] for r in rows][0] == "b"
    assert rows[0]["share"] == pytest.approx(1 / 3)
    assert abs(rows[0]["gap"] - 1.5) < 0.05 and rows[0]["z"] > 20
    assert sum(r["contribution"] for r in rows) == pytest.approx(
        obs.mean() - rep.mean(axis=1).mean())
    assert all(abs(r["contribution"]) < 0.05 for r in rows[1:])


# --- the check on fitted chains ---------------------------------------------------------

def imported_chain(path, generations: int, draw, seed: int):
    """A run at ``path`` imported from a table of 4 concepts (a-d) x 3 traits (t0-t2):
    generation g of concept c holds the images ``draw(rng, g, c)``, (n, 3)."""
    import pandas as pd

    from qtrait.rundir.table import import_table

    rng = np.random.default_rng(seed)
    rows = [pd.DataFrame(draw(rng, g, c), columns=["t0", "t1", "t2"]).assign(
        generation=g, set="guided", concept=c)
        for g in range(generations) for c in ("a", "b", "c", "d")]
    csv = path.parent / f"{path.name}.csv"
    pd.concat(rows).to_csv(csv, index=False)
    import_table(csv, path, {"name": path.name, "cfg_scale": 1.0, "cfg_schedule": "constant",
                             "p_drop": 0.0, "anchor": "previous"})


FAST = ("--chains", "2", "--draws", "400", "--tune", "400")


def test_breeder_is_adequate_on_a_chain_from_its_own_model(cli, tmp_path):
    # a breeder chain (4 concepts x 4 traits, 10 generations, 400 images a concept, a
    # generation shock of SD 0.12, the prior's median): the one-step PITs of 16 cells x
    # 7 predicted generations x 2 statistics = 224 values are uniform (p >= 0.01), the
    # 90% coverage lies in [0.85, 0.95] (SE about 0.02 under calibration, so the band is
    # +-2.5 SE) and no per-generation PPC rejects
    import json

    from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run

    traits = tuple(TraitTruth(f"t{k}", lam=0.8 + 0.04 * k, gamma=0.02, v_mut=0.05,
                              m_uncond=-1.0) for k in range(4))
    truth = ChainTruth(traits=traits, model="breeder", generations=10, images=400,
                       probe_w1=0, probe_uncond=0, concepts=("a", "b", "c", "d"),
                       shock_sd=0.12, seed=3)
    run = write_simulated_run(tmp_path / "own", truth)
    res = cli("fit", run, *FAST, "--json")
    assert res.code == 0, res.err
    a = json.loads(res.out)["adequacy"]
    assert a["pit_test"]["n"] == 224 and a["refits"] == 7
    assert a["pit_test"]["p_value"] >= 0.01, a["pit_test"]
    assert 0.85 <= a["coverage90"] <= 0.95
    assert a["ppc_ok"] and a["ok"]


def test_a_misfitting_model_is_said_to_fail(cli, tmp_path):
    # a chain whose variance alternates (x0.4, then x2.5: no first-order map of the
    # previous generation's variance can predict it), in opposite phase in concepts a, b
    # and c, d (so the generation shock, which all cells share, cannot absorb it): the
    # check rejects the breeder, and the text output says so next to the diagnostics
    import json

    imported_chain(tmp_path / "alt", 10, lambda rng, g, c: rng.normal(
        0.0, 1.0 if (g + (c in "cd")) % 2 == 0 else np.sqrt(0.4), size=(300, 3)), seed=5)
    res = cli("fit", tmp_path / "alt", *FAST)
    assert res.code == 0, res.err
    assert "adequacy INADEQUATE" in res.out
    assert "the model does not describe this run" in res.out
    res = cli("fit", tmp_path / "alt", *FAST, "--generations", "0:4")
    assert res.code == 0 and "adequacy not checked" in res.err
    # one cell: 7 predicted generations x 2 statistics = 14 PITs, too few for 10 bins;
    # the verdict is withheld (JSON ok null), not faked
    res = cli("fit", tmp_path / "alt", *FAST, "--traits", "t0", "--concepts", "a", "--json")
    assert res.code == 0, res.err
    a = json.loads(res.out)["adequacy"]
    assert a["ok"] is None and a["pit_test"] is None and len(a["steps"]) == 7


def test_the_mean_check_names_the_trait_whose_means_jumped(tmp_path):
    # a chain of constant Gaussian cells (4 concepts x 3 traits, 300 images, 8
    # generations) in which every concept's t1 mean jumps by 2 SDs at generation 5 and
    # stays there: no first-order map of the previous generation's mean predicts the
    # jump, so the cell-averaged mean fails its check at generation 5, and t1 carries
    # most of the gap (its share is 1/3, so its contribution is near 2/3 of the jump's
    # 2 SDs over the whole average, the others' near 0: they did not move)
    from qtrait.adequacy import ppc_generations
    from qtrait.fit import SamplerSettings, fit
    from qtrait.rundir import open_run

    imported_chain(tmp_path / "jump", 8, lambda rng, g, c: rng.normal(
        0.0, 1.0, size=(300, 3)) + [0.0, 2.0 * (g >= 5), 0.0], seed=6)
    res = fit(open_run(tmp_path / "jump"), "breeder",
              SamplerSettings(chains=2, draws=400, tune=400), save=False)
    ppc = {p["generation"]: p for p in ppc_generations(res)}
    at5 = ppc[5]["mean"]
    assert at5["p"] < 0.01 / (2 * len(ppc))
    top = at5["by_trait"][0]
    assert top["trait"] == "t1" and 0.5 < top["contribution"] < 0.8
    assert all(abs(r["contribution"]) < 0.1 for r in at5["by_trait"][1:])


def test_a_failing_mean_check_is_reported_with_its_traits():
    # a verdict whose generation-2 mean check fails (p 1e-5, below 0.01 / 4) and whose
    # generation 1 passes: only generation 2 is listed, with its gap and its largest
    # contributions, in the verdict's mean_failures and in the report's adequacy table
    from qtrait.adequacy import Adequacy
    from qtrait.report.sections import adequacy_table

    by = [{"trait": "sharpness", "share": 0.1, "gap": 4.0, "z": 9.0, "contribution": 0.4},
          {"trait": "pc_1", "share": 0.1, "gap": 0.2, "z": 0.5, "contribution": 0.02}]

    def gen(t, p):
        return {"generation": t, "log_var": {"observed": 0.0, "replicated": 0.0, "p": 0.5},
                "mean": {"observed": 0.5, "replicated": 0.08, "p": p, "by_trait": by}}

    adq = Adequacy("breeder", np.full(4, 0.5), np.arange(4), np.array(["a/x"] * 4),
                   np.array(["mean"] * 4), None, 1.0, [], [gen(1, 0.3), gen(2, 1e-5)])
    (f,) = adq.mean_failures(most=1)
    assert f["generation"] == 2 and f["gap"] == pytest.approx(0.42)
    assert [r["trait"] for r in f["traits"]] == ["sharpness"]
    table = adequacy_table(adq)
    row = table[table["check"].str.startswith("generation 2")]
    assert len(row) == 1 and "sharpness (+0.40)" in row["value"].iloc[0]
    assert not table["check"].str.startswith("generation 1").any()
