"""`qtrait report` on the real chain chain_042: every section, CSV tables that agree with
`qtrait summarize --json` and with the forecast of the saved fit, and the reuse of saved
fits."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from qtrait.report.sections import SECTION_IDS
from tests.report.conftest import SETTINGS, qtrait

pytest.importorskip("nutpie")

SECTIONS = [s for s in SECTION_IDS if s != "redifine"]


class Outline(HTMLParser):
    """Section ids with their h2 titles, image sources, and whether any resource is
    loaded from outside the page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external = {}, [], []
        self._current, self._in_h2 = None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._current = a.get("id")
            self.sections[self._current] = ""
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "img":
            self.images.append((a.get("data-figure"), a.get("src", "")))
        if tag in ("img", "script", "link", "iframe") and \
                any(a.get(k, "").startswith(("http:", "https:", "//")) for k in ("src", "href")):
            self.external.append(a)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2 and self._current:
            self.sections[self._current] += data


def outline(path) -> Outline:
    p = Outline()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def table(made, name) -> pd.DataFrame:
    return pd.read_csv(made.folder / "tables" / f"{name}.csv")


def test_report_written(chain_report):
    assert chain_report.code == 0, chain_report.err
    html = chain_report.folder / "report.html"
    assert f"written to {html}" in chain_report.out
    page = outline(html)
    assert list(page.sections) == SECTIONS
    assert all(title.strip() for title in page.sections.values())
    assert not page.external
    # every figure embedded as base64, and also written for the Markdown version
    figures = sorted(p.stem for p in (chain_report.folder / "figures").iterdir())
    assert sorted(name for name, _ in page.images) == figures
    assert all(src.startswith("data:image/png;base64,") for _, src in page.images)
    md = (chain_report.folder / "report.md").read_text(encoding="utf-8")
    for s in SECTIONS:
        assert f'<a id="{s}"></a>' in md
    for f in (chain_report.folder / "figures").iterdir():
        assert f"](figures/{f.name})" in md
    # the run's image grids: one per generation
    assert [n for n in figures if n.startswith("images-")] == \
        [f"images-gen_{g:04d}-grid" for g in range(10)]


def test_progress_and_fitting_messages(chain_report):
    err = chain_report.err
    assert "no saved fit for breeder (generations 0..9) in" in err
    assert "no saved fit for breeder (generations 0..2) in" in err
    assert "fitting now (about" in err
    assert "report chain_042: done" in err


def test_selection_tables_are_summarize(chain_report, shipped):
    code, out, _ = qtrait("summarize", shipped["chain_042"], "--json")
    assert code == 0
    ref = json.loads(out)
    for name in ("selection", "heritability"):
        got = table(chain_report, name)
        want = pd.DataFrame(ref[name])
        assert list(got.columns) == list(want.columns)
        assert len(got) == len(want) > 0
        for col in want.columns:
            if not pd.api.types.is_numeric_dtype(want[col]):
                assert (got[col].astype(str) == want[col].astype(str)).all(), col
            else:
                g = got[col].astype(float).replace([np.inf, -np.inf], np.nan)  # JSON: null
                np.testing.assert_allclose(g, want[col].astype(float), rtol=1e-12,
                                           equal_nan=True, err_msg=col)


def test_variance_decay_observed_matches_summarize(chain_report, shipped):
    """The observed total variance ratio is the mean over (concept, trait) of V_t / V_0 of
    the fitted traits: those neither constant nor near-constant (one value in at least half
    of a concept's images) within a concept at generation 0."""
    from qtrait.rundir import open_run

    _, out, _ = qtrait("summarize", shipped["chain_042"], "--json")
    rows = pd.DataFrame(json.loads(out)["traits"])
    g = rows[rows["set"] == "guided"].pivot_table(index="generation",
                                                  columns=["concept", "trait"], values="var")
    v0 = g.loc[0]
    images = open_run(shipped["chain_042"]).table(0, "guided")
    tie = images.groupby("concept").agg(
        lambda x: x.round(6).value_counts(normalize=True).iloc[0]).max()
    fitted = [t for t in g.columns.levels[1]
              if (v0.xs(t, level="trait") > 0).all() and tie[t] < 0.5]
    assert "label_prob" not in fitted and "pc_1" in fitted
    ratio = (g / v0).loc[:, pd.IndexSlice[:, fitted]].mean(axis=1)
    got = table(chain_report, "variance_decay")
    np.testing.assert_allclose(got["observed"], ratio.to_numpy(), rtol=1e-9)
    q = got[["breeder_q05", "breeder_q25", "breeder_median", "breeder_q75",
             "breeder_q95"]].iloc[1:].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()          # ordered quantiles
    assert got.loc[0, ["breeder_q05"]].isna().all()  # generation 0 is not modelled


def test_trajectories(chain_report, shipped):
    t = table(chain_report, "trajectories")
    manifest = json.loads((shipped["chain_042"] / "manifest.json").read_text())
    assert list(t["trait"].unique()) == manifest["traits"]["axes"][:4]
    g0 = t[t["generation"] == 0]
    np.testing.assert_allclose(g0[g0["stat"] == "mean"]["observed"], 0, atol=1e-12)
    np.testing.assert_allclose(g0[g0["stat"] == "var"]["observed"], 1, rtol=1e-12)
    # the zero-shot theory starts from generation 0's moments, then moves
    np.testing.assert_allclose(g0[g0["stat"] == "var"]["zeroshot"], 1, rtol=1e-9)
    assert t[t["generation"] > 0]["zeroshot"].notna().all()
    q = t[t["generation"] > 0][["pp_q05", "pp_q25", "pp_median", "pp_q75", "pp_q95"]]
    assert (np.diff(q.to_numpy(), axis=1) >= 0).all()


def test_horizon_is_the_forecast_of_the_saved_fit(chain_report, shipped):
    """P(collapse by t) is non-decreasing from 0 to 1 - P(no collapse), and equals the
    forecast of the saved fit of generations 0..2 (same draws, same seed)."""
    from qtrait.fit import SamplerSettings
    from qtrait.forecast import forecast
    from qtrait.report.fits import FitStore
    from qtrait.rundir import open_run

    p = table(chain_report, "horizon")
    s = table(chain_report, "horizon_summary")
    assert list(p["generation"]) == list(range(51))
    for col in p.columns[1:]:
        assert p[col].iloc[0] == 0 and (np.diff(p[col]) >= 0).all(), col
        assert p[col].iloc[-1] == pytest.approx(
            1 - float(s.loc[s["horizon"] == col, "p_no_collapse"].iloc[0]), abs=1e-6)
    logs = []
    store = FitStore(SamplerSettings(chains=2, draws=300, tune=300), log=logs.append)
    run = open_run(shipped["chain_042"])
    fit = store.get(run, "breeder", slice(0, 3))
    assert logs and logs[0].startswith("using the saved fit")
    fc = forecast(fit, run, seed=0).run.to_dict()
    np.testing.assert_allclose(p["run"], fc["p_collapse_by"], atol=1e-6)
    # the backtest's observed crossing is in the figure's caption and table
    b = table(chain_report, "backtest")
    assert b["horizon"].iloc[0] == "run" and set(b["covered"]) <= {True, False}


def test_criteria_sensitivity(chain_report):
    """The default criteria reproduce the forecast; a larger q or alpha, or a smaller d,
    can only make the collapse earlier (the same simulated statistics, reread)."""
    c = table(chain_report, "criteria_sensitivity")
    s = table(chain_report, "horizon_summary").iloc[0]
    for _, row in c[c["default"]].iterrows():
        assert row["p_no_collapse"] == pytest.approx(s["p_no_collapse"])
        assert pd.isna(row["median"]) == pd.isna(s["median"])
    for name, sign in (("q", -1), ("d", 1), ("alpha", -1)):
        d = c[c["criterion"] == name].sort_values("value")
        assert len(d) == 3
        med = d["median"].fillna(51).to_numpy()
        assert (sign * np.diff(med) >= 0).all(), (name, med)
        pno = d["p_no_collapse"].to_numpy()
        assert (sign * np.diff(pno) >= -1e-12).all(), (name, pno)


def test_diagnostics_and_comparison(chain_report):
    from qtrait.fit import EBFMI_MIN, ESS_MIN, RHAT_MAX

    d = table(chain_report, "diagnostics")
    assert set(d["fit"]) == {"breeder, generations 0..9", "breeder, generations 0..2"}
    rule = {"max R-hat": lambda v: v <= RHAT_MAX, "min ESS bulk": lambda v: v >= ESS_MIN,
            "min ESS tail": lambda v: v >= ESS_MIN, "divergences": lambda v: v == 0,
            "min E-BFMI": lambda v: v >= EBFMI_MIN}
    for _, row in d.iterrows():
        assert row["status"] == ("pass" if rule[row["check"]](row["value"]) else "fail")
    html = (chain_report.folder / "report.html").read_text()
    assert '<tr class="fail">' in html or '<tr class="pass">' in html
    m = table(chain_report, "model_comparison")
    assert list(m["model"]) == ["breeder"] and m["d_loo"].iloc[0] == 0
    assert np.isfinite(m["elpd_loo"]).all()
    # the adequacy verdict beside the diagnostics: each check's status follows its value
    a = table(chain_report, "adequacy").set_index("check")
    pit = a.loc[[c for c in a.index if c.startswith("Rao-Scott")][0]]
    p = float(pit["value"].split("=")[1])
    assert pit["status"] == ("pass" if p >= 0.01 else "fail")
    cov = a.loc[[c for c in a.index if c.startswith("one-step 90%")][0]]
    assert cov["status"] == ("pass" if 0.85 <= float(cov["value"]) <= 0.95 else "fail")
    assert any(c.startswith("worst cell: ") for c in a.index)
    verdict = "does NOT describe" if (a["status"] == "fail").any() else "describes"
    assert "breeder (docs/models.md section 11)" in html and verdict in html


def test_prior_sensitivity(chain_report):
    p = table(chain_report, "prior_sensitivity")
    assert {"log_lambda_mu", "gamma_mu", "v_mut_scale", "lambda", "gamma", "v_mut",
            "sigma_learn", "tau"} <= set(p["parameter"])
    assert (p["prior"] >= 0).all() and (p["likelihood"] >= 0).all()
    flagged = (p["prior"] >= 0.05)
    assert ((p["status"] == "fail") == flagged).all()
    assert (p.loc[p["parameter"] == "lambda", "cells"] > 100).all()   # 10 concepts x traits


def test_second_report_reuses_saved_fits(chain_report, shipped, tmp_path):
    code, out, err = qtrait("report", shipped["chain_042"], "--out", tmp_path / "again",
                            "--compare-models", "breeder", "--no-adequacy", *SETTINGS)
    assert code == 0, err
    assert "fitting now" not in err
    assert err.count("using the saved fit") == 2
    a = table(chain_report, "horizon")
    b = pd.read_csv(tmp_path / "again" / "tables" / "horizon.csv")
    pd.testing.assert_frame_equal(a, b)
