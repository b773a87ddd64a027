"""`qtrait report` on simulated breeder chains, which have no probe sets and no images:
the sections say what they cannot show, and the ReDiFine check (--baseline) runs on the
fits alone (predictions 3 and 4)."""

from __future__ import annotations

import pandas as pd
import pytest

from qtrait.report.sections import SECTION_IDS
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from tests.report.conftest import SETTINGS, qtrait
from tests.report.test_report import outline

pytest.importorskip("nutpie")

GENERATIONS = 5


def breeder_run(path, v_mut: float, seed: int):
    traits = tuple(TraitTruth(f"t{k}", lam=0.7, gamma=0.05, v_mut=v_mut, m_uncond=-1.0)
                   for k in range(2))
    return write_simulated_run(path, ChainTruth(traits=traits, model="breeder",
                                                generations=GENERATIONS, images=300,
                                                probe_w1=0, probe_uncond=0, seed=seed))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A baseline without mutation and a "mitigated" run with mutation (same layout, so
    one compiled model serves all four fits). -k = all generations: one fit per run."""
    root = tmp_path_factory.mktemp("noprobes")
    base = breeder_run(root / "base", 0.0, 1)
    mit = breeder_run(root / "mit", 0.15, 2)
    out = root / "report"
    code, so, se = qtrait("report", mit, "--baseline", base, "--out", out,
                          "-k", str(GENERATIONS), *SETTINGS)
    return base, mit, out, code, so, se


def test_sections_without_probes(pair):
    _, mit, out, code, _, err = pair
    assert code == 0, err
    page = outline(out / "report.html")
    assert list(page.sections) == list(SECTION_IDS)
    html = (out / "report.html").read_text()
    assert "has no probe sets (probe_w1)" in html
    assert "has no images" in html
    assert "No zero-shot theory: zero-shot predictions need the base model&#x27;s probes" \
        in html
    assert "tilt is not compared: it needs both probe sets" in html
    assert not (out / "tables" / "selection.csv").exists()
    traj = pd.read_csv(out / "tables" / "trajectories.csv")
    assert traj["zeroshot"].isna().all() and traj["pp_median"].notna().sum() > 0
    # K = every generation: the forecast cannot be scored against later generations
    assert not (out / "tables" / "backtest.csv").exists()
    # one fit per run (the K fit is the full fit), the baseline's served to the check
    assert err.count("fitting now") == 2


def test_redifine_without_probes(pair):
    _, _, out, _, _, _ = pair
    r = pd.read_csv(out / "tables" / "redifine.csv")
    assert list(r["prediction"]) == [3, 4]
    assert r["p_direction"].between(0, 1).all()
    expect = ["yes" if p >= 0.95 else "no" if p <= 0.05 else "unclear"
              for p in r["p_direction"]]
    assert list(r["verdict"]) == expect
    # the mitigated run was simulated with mutation, the baseline without: it keeps more
    # variance 10 generations on
    v = r.set_index("prediction").loc[3]
    assert v["mitigated"] > v["baseline"] and v["measured_effect"] > 0
    per = pd.read_csv(out / "tables" / "redifine_per_trait.csv")
    assert len(per) == 2 * 2 and set(per["trait"]) == {"t0", "t1"}
    assert per["verdict"].isin(["yes", "no", "unclear"]).all()


def test_several_runs_one_report_each_and_an_index(pair, tmp_path):
    base, mit, _, _, _, _ = pair
    out = tmp_path / "both"
    code, so, err = qtrait("report", base, mit, "--out", out, "-k", str(GENERATIONS),
                           *SETTINGS)
    assert code == 0, err
    assert "fitting now" not in err and err.count("using the saved fit") == 2
    for name in ("base", "mit"):
        assert (out / name / "report.html").exists() and (out / name / "report.md").exists()
        assert f"written to {out / name / 'report.html'}" in so
    index = (out / "index.html").read_text()
    assert 'href="base/report.html"' in index and 'href="mit/report.html"' in index
    assert "failed diagnostic check(s)" in index
    assert "[mit](mit/report.md)" in (out / "index.md").read_text()
    # a second report into the same folder replaces the first
    code, _, err = qtrait("report", base, mit, "--out", out, "-k", str(GENERATIONS),
                          *SETTINGS)
    assert code == 0, err
