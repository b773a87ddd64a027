"""`qtrait report data/runs/chain_042_redifine --baseline data/runs/chain_042` on the real
pair, as `make demo` writes it: two traits, breeder only, rho measured from the probes
and h2 from the miniature calibration for the theory column, so nothing but breeder is
fitted (tilt on this real chain takes many minutes; docs/cli.md section 14)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from qtrait.report.sections import SECTION_IDS
from qtrait.theory.calibration import MINIATURE
from tests.report.conftest import qtrait
from tests.report.test_report import outline

pytest.importorskip("nutpie")

QUICK = ("--chains", "1", "--draws", "200", "--tune", "200")
DEMO = ("--traits", "pc_1,pc_2", "--compare-models", "breeder")


def test_redifine_report_on_the_real_pair(shipped, tmp_path):
    out = tmp_path / "redifine"
    code, so, err = qtrait("report", shipped["chain_042_redifine"], "--baseline",
                           shipped["chain_042"], "--out", out, *DEMO, *QUICK)
    assert code == 0, err
    assert list(outline(out / "report.html").sections) == list(SECTION_IDS)
    r = pd.read_csv(out / "tables" / "redifine.csv")
    assert list(r["prediction"]) == [1, 2, 3, 4]
    assert r["p_direction"].between(0, 1).all()
    expect = ["yes" if p >= 0.95 else "no" if p <= 0.05 else "unclear"
              for p in r["p_direction"]]
    assert list(r["verdict"]) == expect
    assert (r["measured_sd"] > 0).all()
    # both runs have probes: the zero-shot theory's effects are there for 1 and 2
    assert np.isfinite(r.set_index("prediction").loc[[1, 2], "predicted_effect"]).all()
    # per trait: the traits' shrunk effects, with the same thresholds (no Bonferroni)
    per = pd.read_csv(out / "tables" / "redifine_per_trait.csv")
    assert len(per) == 4 * 2
    for _, row in per.iterrows():
        p = row["p_direction"]
        assert row["verdict"] == ("yes" if p >= 0.95 else "no" if p <= 0.05 else "unclear")
    html = (out / "report.html").read_text()
    assert re.search(r"rho = 0\.\d+ \(probes\)", html)   # measured from the probes
    # the theory column's assumption, said: the miniature chain's calibration (its h2)
    assert f"assumed h2 = {MINIATURE.h2:g}, no mutation; calibration miniature" in html
    assert set(per["trait"]) == {"pc_1", "pc_2"}   # the selection reaches the check
    assert (out / "figures" / "redifine.png").exists()
    # only breeder: RUN on all generations and on 0..2, the baseline once for the check
    assert err.count("fitting now") == 3 and "tilt" not in err and "exact" not in err, err
