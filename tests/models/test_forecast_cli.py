"""`qtrait predict`, `qtrait backtest`, `qtrait fit --compare` and `--prior-predictive` on
simulated runs: the JSON contract, and numbers that mean what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from qtrait.theory.horizon import Criteria
from qtrait.theory.schedules import GuidanceSchedule

pytest.importorskip("nutpie")

FAST = ["--chains", "2", "--draws", "400", "--tune", "400"]


@pytest.fixture(scope="module")
def tilt_run(tmp_path_factory):
    traits = tuple(TraitTruth(f"t{k}", h2=0.9, v_mut=0.01, m_uncond=-1.0, v_uncond=2.0)
                   for k in range(2))
    truth = ChainTruth(traits=traits, model="tilt", generations=8, images=300, probe_w1=60,
                       probe_uncond=60, guidance=GuidanceSchedule("constant", 2.5),
                       criteria=Criteria(t_max=20), seed=4)
    return write_simulated_run(tmp_path_factory.mktemp("fc") / "tilt", truth)


def test_predict_json_contract(cli, tilt_run):
    res = cli("predict", tilt_run, "--from-generations", "3", "--t-max", "20", *FAST,
              "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    h = out["horizon"]
    assert set(h) == {"median", "lo90", "hi90", "p_no_collapse", "p_collapse_by", "observed"}
    assert out["criteria"] == {"q": 0.5, "d": 2.0, "r": 0.5, "t_max": 20}
    by = h["p_collapse_by"]
    assert len(by) == 21 and by[0] == 0.0 and np.all(np.diff(by) >= 0)
    assert by[-1] + h["p_no_collapse"] == pytest.approx(1.0)
    assert h["lo90"] <= h["median"] <= h["hi90"] or h["hi90"] is None
    assert set(out["traits"]) == {"t0", "t1"}
    assert set(out["diagnostics"]) == {"rhat_max", "ess_bulk_min", "ess_tail_min",
                                       "divergences", "ebfmi_min"}
    # the realised horizon of this chain (from the simulator's latent moments: generation
    # 2, inside the fitted window) is inside the forecast's 90% interval, which is a point
    # mass when the crossing is observed -- one chain; calibration over many is analyses/
    truth = json.loads((tilt_run / "manifest.json").read_text())["truth"]["horizon"]
    assert truth["t_star"] == 2
    hi = h["hi90"] if h["hi90"] is not None else 10 ** 6
    assert h["lo90"] <= truth["t_star"] <= hi, h


def test_predict_reports_an_observed_crossing(cli, tmp_path):
    """A chain whose variance halves in the first generation: the crossing is in the data,
    reported as observed with certainty, not forecast."""
    traits = (TraitTruth("a", lam=0.3, v_mut=0.0, m_uncond=-1.0),)
    truth = ChainTruth(traits=traits, model="breeder", generations=4, images=400,
                       probe_w1=0, probe_uncond=0, seed=2)
    run = write_simulated_run(tmp_path / "obs", truth)
    res = cli("predict", run, "-k", "3", *FAST, "--json")
    out = json.loads(res.out)
    assert out["horizon"]["observed"] is True and out["horizon"]["median"] == 1
    assert out["horizon"]["p_collapse_by"][1] == 1.0


def test_backtest_scores(cli, tilt_run):
    res = cli("backtest", tilt_run, "-k", "3", "--t-max", "20", *FAST, "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["last_generation"] == 7 and out["from_generations"] == 3
    rows = {r["horizon"]: r for r in out["scores"]}
    assert set(rows) == {"run", "t0", "t1"}
    for r in rows.values():
        assert isinstance(r["covered"], bool) and r["log_score"] <= 0.0
    assert set(out["baselines"]) == {"linear", "exponential"}
    res = cli("backtest", tilt_run, "-k", "8", *FAST)
    assert res.code == 2 and "needs generations after the first K" in res.err


def test_prior_predictive_check_passes_on_data_from_the_model(cli, tilt_run):
    for model in ("breeder", "tilt"):
        res = cli("fit", tilt_run, "--model", model, "--prior-predictive", "--json")
        assert res.code == 0, res.err
        out = json.loads(res.out)
        assert out["passed"] and out["inside_logvar"] >= 0.9 and out["inside_mean"] >= 0.9
        # weakly informative, not flat: the prior predictive variance ratio after 7
        # generations spans less than 8 orders of magnitude
        v = out["variance_ratio_last"]
        assert 0 < v["q05"] < v["median"] < v["q95"] < 1e8 * v["q05"]


def test_compare_models(cli, tilt_run):
    """breeder against tilt (exact compiles for minutes: `qtrait fit --compare` without
    --models includes it; the slow suite runs that)."""
    res = cli("fit", tilt_run, "--compare", "--models", "breeder,tilt", *FAST, "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    rows = {r["model"]: r for r in out["models"]}
    assert {"breeder", "tilt"} == set(rows)
    for r in rows.values():
        assert np.isfinite(r["elpd_loo"]) and np.isfinite(r["elpd_lfo"])
        assert [s["score"] for s in r["lfo_steps"]] == list(range(3, 8))
    assert max(r["d_lfo"] for r in rows.values()) == 0.0
