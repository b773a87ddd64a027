"""Calibration of the Bayesian models (slow: `make test-slow`).

Smaller versions of the two studies in analyses/, running their code:

* analyses/horizon_calibration: 40 simulated tilt chains, forecasts from K = 3
  generations scored against the realised horizon;
* analyses/sbc: simulation-based calibration of the breeder model, 50 replications.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _analysis(name: str):
    path = ROOT / "analyses" / name / "run.py"
    spec = importlib.util.spec_from_file_location(f"analysis_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_horizon_forecast_calibration_40_chains():
    """40 tilt chains at one CFG scale (1.6: one compilation), the analysis' other ranges.

    Tolerances, from the binomial and multinomial sampling of 40 chains (the seeds are
    fixed, so the test is deterministic; these bounds say how far from calibration a
    result may be before it is a failure rather than chance):

    * coverage of the 90% interval >= 31/40: P(X <= 30) = 0.005 for X ~ Bin(40, 0.9);
      over-coverage is allowed (horizons are integers and the intervals include their
      end points, so a calibrated forecast covers at least 90%);
    * the randomized 90% interval (randomized PIT in [0.05, 0.95]), exactly 0.9 under
      calibration: between 31 and 39 of 40 (P(X <= 30) = 0.005, P(X = 40) = 0.015);
    * randomized PIT, 5 bins (8 expected per bin): chi-square p > 0.001;
    * the forecast median is no less accurate than either practitioners' baseline (linear
      and exponential extrapolation of the variance): its mean absolute error is no larger,
      and, chain by chain, it is closer to the realised horizon at least as often as
      farther (a paired sign comparison). Not the median absolute error: 16 of these 40
      chains do not collapse by T_max, so the median of 40 absolute errors is decided by
      a few chains near the middle (measured: model 4 vs 3 and 3, while the model is
      closer in 23 chains and farther in 9 against the line, 22 and 14 against the
      exponential, mean absolute error 7.4 vs 9.2 and 8.6).
    """
    hc = _analysis("horizon_calibration")
    cfg = hc.load_config()
    cfg["cfg_scales"] = [1.6]
    cfg["pit_bins"] = 5
    records = hc.run_chains(cfg, range(40), log=lambda _: None)
    s = hc.summarize(records, cfg)["all"]
    assert s["n"] == 40
    assert s["covered"] >= 31, s
    assert 31 <= s["covered_rand"] <= 39, s
    assert s["pit_p"] > 1e-3, s
    assert s["meanae"]["median"] <= min(s["meanae"]["linear"], s["meanae"]["exponential"]), s
    t = np.array([r["t_obs"] for r in records])
    model = np.abs(np.array([r["median"] for r in records]) - t)
    for baseline in ("linear", "exponential"):
        other = np.abs(np.array([r[baseline] for r in records]) - t)
        assert np.sum(model < other) >= np.sum(model > other), (baseline, model, other)


#: the breeder's core parameters: uniform SBC ranks since the intercept reparametrisation
#: (analyses/sbc/results.md; before it, gamma, gamma_mu and sigma_learn failed), and the
#: generation shock's SD and the first step's factor; the learning noise is the pooled
#: one's shared scale and the first trait's noise
BREEDER_CORE = ("lambda[0]", "gamma[0]", "intercept[0]", "v_mut[0]", "log_lambda_mu",
                "gamma_mu", "v_mut_scale", "sigma_learn_scale", "sigma_learn[0]", "tau",
                "gen_shock_sd", "first_step")


@pytest.fixture(scope="module")
def breeder_sbc():
    """SBC of the breeder model, 50 replications, ranks among 99 thinned draws:
    (per-parameter 5-bin uniformity, per-parameter ranks)."""
    sbc = _analysis("sbc")
    cfg = sbc.load_config()
    res = sbc.run_sbc("breeder", cfg, 50, log=lambda _: None)
    assert len(res["records"]) == 50
    names = cfg["breeder"]["parameters"]
    ranks = {n: [r["ranks"][n] for r in res["records"]] for n in names}
    return sbc.uniformity(res["records"], names, cfg["thin_to"], 5), ranks, cfg["thin_to"]


def _assert_uniform(sbc_result, names) -> None:
    u, ranks, L = sbc_result
    for name in names:
        assert u[name]["p"] > 1e-3, (name, u[name])
        assert abs(u[name]["mean_rank"] - 0.5) < 0.15, (name, u[name])
        extreme = sum(r in (0, L) for r in ranks[name])
        assert extreme <= 5, (name, extreme, u[name])


@pytest.mark.slow
def test_breeder_sbc_ranks_are_uniform(breeder_sbc):
    """Every core parameter of the breeder: uniform ranks.

    Under calibration each parameter's 5-bin rank histogram (10 expected per bin) passes
    a chi-square test at 0.001 with probability 0.999, so all twelve pass with
    probability >= 0.988; and the mean normalised rank of 50 uniform ranks has SD 0.041, so
    |mean - 0.5| < 0.15 (3.7 SD) flags a posterior that sits systematically above or
    below the truth; a rank of 0 or 99 (every posterior draw on one side of the truth)
    has probability 0.02, so more than 5 of 50 (P = 5e-4) flags a posterior that misses
    the truth altogether.
    """
    _assert_uniform(breeder_sbc, BREEDER_CORE)
