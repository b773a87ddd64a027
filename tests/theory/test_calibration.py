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
    chose by its rule: the lower training error); it must match the record, rounded."""
    rec = json.loads((ROOT / "analyses" / "zeroshot_calibration" / "record.json").read_text())
    assert MINIATURE.kappa == pytest.approx(rec["kappa_h2"]["kappa"], abs=0.001)
    assert MINIATURE.h2 == pytest.approx(rec["kappa_h2"]["h2"], abs=0.005)


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
