"""Calibrations of the zero-shot theory (qtrait.theory.calibration): what kappa does to a
schedule, which runs get which profile, that the shipped profile is the one the
calibration study fitted, and that `qtrait theory horizon --run` applies and reports it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qtrait.theory.calibration import (BY_PRODUCER, MINIATURE, NONE, Calibration,
                                       calibration_for)
from qtrait.theory.schedules import GuidanceSchedule

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine", "step", "interval"])
def test_kappa_scales_every_steps_distance_from_one(kind):
    g = GuidanceSchedule(kind, scale=7.5, end=1.0, start=0.2, until=0.6)
    cal = Calibration("t", 0.1, "test")
    np.testing.assert_allclose(cal.guidance(g).values(50) - 1.0, 0.1 * (g.values(50) - 1.0),
                               atol=1e-12)
    assert NONE.guidance(g) is g


def test_custom_schedules_are_scaled_too():
    g = GuidanceSchedule("custom", fn=lambda p: 3.0 - 2.0 * np.asarray(p))
    out = Calibration("t", 0.5, "test").guidance(g).values(11)
    np.testing.assert_allclose(out, 1.0 + 0.5 * (g.values(11) - 1.0))


def test_profiles_by_producer_and_by_name():
    assert calibration_for("chain_runner (toy)") is MINIATURE
    assert calibration_for("chain_runner (sd)") is NONE      # not learned on SD chains
    assert calibration_for(None) is NONE
    assert calibration_for("chain_runner (toy)", "none") is NONE
    assert calibration_for(None, "miniature") is MINIATURE
    with pytest.raises(ValueError, match="calibration must be"):
        calibration_for(None, "sd")
    with pytest.raises(ValueError, match="kappa"):
        Calibration("bad", 0.0, "")
    assert set(BY_PRODUCER.values()) <= {MINIATURE}


def test_the_shipped_profile_is_the_studys_fit():
    """MINIATURE is copied by hand from analyses/zeroshot_calibration (the fit the study
    chose by its rule: the lowest training error); it must match the record, rounded."""
    rec = json.loads((ROOT / "analyses" / "zeroshot_calibration" / "record.json").read_text())
    chosen = rec[rec["chosen"]]
    assert chosen["loss"] == min(v["loss"] for k, v in rec.items()
                                 if isinstance(v, dict) and "loss" in v and k != "held_out")
    assert MINIATURE.kappa == pytest.approx(chosen["kappa"], abs=0.001)
    assert MINIATURE.h2 == pytest.approx(chosen["h2"], abs=0.005)
    assert MINIATURE.retention == pytest.approx(chosen.get("retention", 1.0), abs=0.005)


def test_theory_horizon_applies_the_runs_calibration(cli):
    run = ROOT / "data" / "runs" / "chain_042"         # the miniature chain, w = 7.5
    auto = json.loads(cli("theory", "horizon", "--run", run, "--t-max", "5", "--json").out)
    raw = json.loads(cli("theory", "horizon", "--run", run, "--t-max", "5",
                         "--calibration", "none", "--json").out)
    assert auto["design"]["calibration"].startswith("miniature")
    assert auto["design"]["h2"] == MINIATURE.h2 and raw["design"]["h2"] == 1.0
    assert auto["design"]["guidance"] == raw["design"]["guidance"]   # the nominal design

    def gen1(out):
        return np.nanmedian([row["var"][1] / row["var"][0] for row in out["traits"]
                             if row["var"][0] is not None and row["var"][1] is not None])
    # the derived theory's selection all but erases the variance at generation 1; the
    # calibrated one keeps most of it, as the chain does (observed about 0.8)
    assert gen1(raw) < 0.05 < 0.3 < gen1(auto) < 1.0
    res = cli("theory", "horizon", "--run", run, "--calibration", "sd")
    assert res.code == 2 and "calibration must be" in res.err


def test_retention_closed_form_against_simulation():
    """With h2 = 1 and no selection (w = 1) the map with retention r is V' = r V, so the
    guided variance after t generations is r^t V_0; a chain fed the sample variances of
    n draws a generation (ddof = 1, unbiased) has that expectation too."""
    from qtrait.theory.generation import Generation0, MapParams, generation_step, predict
    r, n, T, reps = 0.8, 50, 5, 4000
    params = MapParams(model="tilt", h2=1.0, guidance=GuidanceSchedule("constant", 1.0),
                       retention=r)
    g0 = Generation0.of(mean0=0.0, var0=1.0, m_base=0.0, v_base=1.0, m_uncond=0.0,
                        v_uncond=4.0)
    traj = predict(g0, params, T)
    np.testing.assert_allclose(traj["guided_var"][:, ...].ravel(), r ** np.arange(T + 1),
                               rtol=1e-12)
    rng = np.random.default_rng(3)
    mean, var = np.zeros(reps), np.ones(reps)
    prev = (np.zeros(reps), np.ones(reps))
    for _ in range(T):
        x = mean[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((reps, n))
        s = generation_step(x.mean(1), x.var(1, ddof=1), prev, g0, params)
        mean, var, prev = s.guided_mean, s.guided_var, (s.learned_mean, s.learned_var)
    # 4 standard errors of the mean over the replicates: a false failure about 1 in 16000
    se = var.std(ddof=1) / np.sqrt(reps)
    assert abs(var.mean() - r ** T) < 4 * se


def test_calibration_apply_sets_guidance_and_retention():
    from qtrait.theory.generation import MapParams
    p = MapParams(model="exact", h2=0.5, guidance=GuidanceSchedule("constant", 7.5))
    out = MINIATURE.apply(p)
    assert out.retention == MINIATURE.retention and out.h2 == 0.5
    assert out.guidance.scale == pytest.approx(1 + MINIATURE.kappa * 6.5)
    assert NONE.apply(p).retention == 1.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="retention"):
            Calibration("bad", 0.1, "", retention=bad)
        with pytest.raises(ValueError, match="retention"):
            MapParams(retention=bad)
