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
    from qtrait.fit import EBFMI_MIN, ESS_MIN, RHAT_MAX
    from qtrait.rundir import open_run
    from qtrait.stats.collapse import run_collapse

    res = cli("predict", tilt_run, "--from-generations", "3", "--t-max", "20", *FAST,
              "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    h = out["horizon"]
    assert set(h) == {"median", "lo90", "hi90", "p_no_collapse", "p_collapse_by", "observed"}
    assert out["criteria"] == {"q": 0.5, "d": 2.0, "r": 0.5, "t_max": 20, "alpha": 0.05}
    assert "pooled" in out["definition"] and out["horizon_traits"] == ["t0", "t1"]
    by = h["p_collapse_by"]
    assert len(by) == 21 and by[0] == 0.0 and np.all(np.diff(by) >= 0)
    assert by[-1] + h["p_no_collapse"] == pytest.approx(1.0)
    assert h["lo90"] <= h["median"] <= h["hi90"] or h["hi90"] is None
    assert set(out["traits"]) == {"t0", "t1"}
    # per concept: one horizon per concept of the run, the same fields
    concepts = sorted(open_run(tilt_run).table(0, "guided")["concept"].unique())
    assert sorted(out["concepts"]) == concepts
    for c in out["concepts"].values():
        assert set(c) == set(h) and c["p_collapse_by"][0] == 0.0
    d = out["diagnostics"]
    assert set(d) == {"rhat_max", "ess_bulk_min", "ess_tail_min", "divergences",
                      "ebfmi_min", "ok"}
    assert d["ok"] == (d["rhat_max"] <= RHAT_MAX and min(d["ess_bulk_min"], d["ess_tail_min"])
                       >= ESS_MIN and d["divergences"] == 0 and d["ebfmi_min"] >= EBFMI_MIN)
    # the observed statistics of generations 0..2 are the run's own (not the fit's)
    stats = run_collapse(open_run(tilt_run), upto=3)
    np.testing.assert_allclose(out["observed_statistics"]["var_ratio"], stats.R, atol=1e-6)
    np.testing.assert_allclose(out["observed_statistics"]["drift2"], stats.D2, atol=1e-5)
    # the forecast targets the detected horizon, which never precedes the latent crossing
    # by more than sampling noise allows: its median is at or after the latent median
    lat = out["latent_horizon"]
    if not h["observed"] and lat["median"] is not None and h["median"] is not None:
        assert h["median"] >= lat["median"]


def test_strict_exits_non_zero_on_an_unconverged_fit(cli, tilt_run):
    # 30 draws of 2 chains cannot give 400 effective draws: diagnostics.ok is false
    args = ("predict", tilt_run, "-k", "3", "--chains", "2", "--draws", "30", "--tune", "30",
            "--json")
    res = cli(*args)
    assert res.code == 0 and json.loads(res.out)["diagnostics"]["ok"] is False
    assert "failed the diagnostics" in res.err
    res = cli(*args, "--strict")
    assert res.code == 3, (res.code, res.err)


def test_predict_reports_an_observed_crossing(cli, tmp_path):
    """A chain whose variance falls to 0.3 in the first generation: the crossing is in
    the data, beyond noise (400 images: se(log R) about 0.1), reported as observed with
    certainty, not forecast."""
    traits = (TraitTruth("a", lam=0.3, v_mut=0.0, m_uncond=-1.0),)
    truth = ChainTruth(traits=traits, model="breeder", generations=4, images=400,
                       probe_w1=0, probe_uncond=0, seed=2)
    run = write_simulated_run(tmp_path / "obs", truth)
    res = cli("predict", run, "-k", "3", *FAST, "--json")
    out = json.loads(res.out)
    assert out["horizon"]["observed"] is True and out["horizon"]["median"] == 1
    assert out["horizon"]["p_collapse_by"][1] == 1.0


_BACKTESTS: dict = {}


@pytest.fixture
def backtests(cli, tilt_run):
    """The one-process backtest of tilt_run from 2 and 3 generations (run once: the cli
    fixture captures output per test, so it cannot be module-scoped itself)."""
    if "records" not in _BACKTESTS:
        res = cli("backtest", tilt_run, "-k", "2,3", "--t-max", "20", *FAST, "--json")
        assert res.code == 0, res.err
        _BACKTESTS["records"] = json.loads(res.out)
    return _BACKTESTS["records"]


def test_backtest_scores(cli, tilt_run, backtests):
    recs = backtests
    assert [r["from_generations"] for r in recs] == [2, 3]
    for out in recs:
        assert out["last_generation"] == 7
        rows = {r["horizon"]: r for r in out["scores"]}
        assert set(rows) == {"run", "t0", "t1"}
        for r in rows.values():
            assert isinstance(r["covered"], bool) and r["log_score"] <= 0.0
            assert 0.0 <= r["pit"] <= 1.0 and r["rps"] >= 0.0
            # the scores agree with the interval and median they are reported beside,
            # on the censored scale (beyond the last generation, 7, is category 8)
            def cens(t):
                return 8 if t is None or t > 7 else t

            obs = cens(r["observed"])
            assert r["abs_error"] == abs(cens(r["median"]) - obs)
            assert r["covered"] == (cens(r["lo90"]) <= obs <= cens(r["hi90"]))
            # 8 categories: the RPS (a sum over 7 thresholds of squared errors) is at most 7
            assert r["rps"] <= 7
        assert set(out["baselines"]) == {"persistence", "linear", "exponential",
                                         "statespace", "refit", "zeroshot"}
        # per concept: each scored against that concept's own horizon
        assert [c["concept"] for c in out["concept_scores"]] == sorted(
            c["concept"] for c in out["concept_scores"])
        for c in out["concept_scores"]:
            assert c["rps"] >= 0.0 and 0.0 <= c["pit"] <= 1.0
        # the model and every baseline are scored against the same outcome
        run = rows["run"]
        assert run["observed"] == out["observed_horizon"]
        for b in out["baselines"].values():
            if b["available"]:
                assert b["observed"] == out["observed_horizon"] and b["rps"] >= 0.0
    res = cli("backtest", tilt_run, "-k", "8", *FAST)
    assert res.code == 2 and "needs generations after them" in res.err
    res = cli("backtest", tilt_run, "-k", "3", "--baselines", "linear,oracle", *FAST)
    assert res.code == 2 and "unknown baseline" in res.err


def test_backtest_in_processes_gives_the_same_records(cli, tilt_run, backtests):
    # two backtests in two spawned processes: every score equals the one-process run's
    # (each fit and forecast has its own seed; the processes sample on one core each)
    res = cli("backtest", tilt_run, "-k", "2,3", "--t-max", "20", *FAST, "--json",
              "--jobs", "2")
    assert res.code == 0, res.err
    par = json.loads(res.out)
    for a, b in zip(backtests, par):
        assert a["from_generations"] == b["from_generations"]
        assert a["scores"] == b["scores"] and a["baselines"] == b["baselines"]
        assert a["diagnostics"] == b["diagnostics"]


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
    # the comparison says what it compares and what each model conditions on
    assert "generation t+1" in out["target"]
    assert "no probes" in rows["breeder"]["conditions_on"]
    assert "probe" in rows["tilt"]["conditions_on"] and "no probes" not in \
        rows["tilt"]["conditions_on"]
