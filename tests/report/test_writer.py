"""The report writers and the small pure pieces of the report (no fits)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from qtrait.errors import QtraitError
from qtrait.report import Figure, Report, Section, Table, Text, prepare_out, write_report
from qtrait.report.figures import _figure, png
from qtrait.report.sensitivity import criteria_grid, diagnosis, scaled_priors
from qtrait.report.writer import check_names, fmt, to_html, to_markdown
from qtrait.theory.horizon import Criteria


def tiny_png() -> bytes:
    fig = _figure(1, 1)
    fig.subplots().plot([0, 1], [1, 0])
    return png(fig)


def sample_report(extra: str = "") -> Report:
    df = pd.DataFrame({"check": ["a", "b"], "value": [1.23456789, np.nan],
                       "status": ["pass", "fail"]})
    return Report("t <&>", ["meta line"], [
        Section("one", "First").add(Text("plain"), Text("careful", "warn"),
                                    Table("checks" + extra, "Checks", df, status="status")),
        Section("two", "Second").add(Figure("plot" + extra, "A plot", tiny_png()),
                                     Text("missing", "note")),
    ])


def test_html_is_self_contained_and_escaped():
    page = to_html(sample_report())
    assert [m for m in re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', page)] == \
        [("one", "First"), ("two", "Second")]
    assert "<title>t &lt;&amp;&gt;</title>" in page
    assert '<tr class="pass">' in page and '<tr class="fail">' in page
    assert "<td>1.235</td>" in page and "<td>-</td>" in page
    src = re.search(r'<img src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(src)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_markdown_links_figure_files_and_tables():
    md = to_markdown(sample_report())
    assert md.startswith("# t <&>\n")
    assert '<a id="two"></a>' in md and "## Second" in md
    assert "![A plot](figures/plot.png)" in md
    assert "| a | 1.235 | pass |" in md and "| b | - | **FAIL** |" in md
    assert "> **Warning:** careful" in md and "> Note: missing" in md
    assert "[tables/checks.csv](tables/checks.csv)" in md


def test_write_report_replaces_an_earlier_one(tmp_path):
    out = prepare_out(tmp_path / "r")
    write_report(sample_report("_old"), out)
    assert (out / "figures" / "plot_old.png").exists()
    paths = write_report(sample_report(), out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["plot.png"]
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["checks.csv"]
    got = pd.read_csv(out / "tables" / "checks.csv")
    assert got["value"].iloc[0] == 1.23456789 and np.isnan(got["value"].iloc[1])
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    # the folder of an earlier report is accepted again; a folder with other files is not
    prepare_out(out)
    (out / "mine.txt").write_text("x")
    with pytest.raises(QtraitError, match="holds other files"):
        prepare_out(out)


def test_duplicate_names_are_a_bug():
    r = sample_report()
    r.sections[1].add(Table("checks", "again", pd.DataFrame({"a": [1]})))
    with pytest.raises(ValueError, match="duplicate table name"):
        check_names(r)


def test_fmt():
    assert [fmt(v) for v in (None, np.nan, np.inf, 3, np.int64(4), 0.000123456, True,
                             "x")] == ["-", "-", "inf", "3", "4", "0.0001235", "yes", "x"]


def test_power_scaling_helpers():
    assert scaled_priors(["gamma_mu", "gamma_z", "tau", "learn_z_mean", "m_base"]) == \
        ["gamma_mu", "tau", "m_base"]
    assert diagnosis(0.2, 0.3) == "prior-data conflict"
    assert diagnosis(0.2, 0.01) == "weak likelihood: the prior decides"
    assert diagnosis(0.01, 0.3) == "-"
    assert diagnosis(np.nan, 0.3) == "not computed"


def test_criteria_grid_stays_valid():
    g = criteria_grid(Criteria())
    assert g == {"q": [0.4, 0.5, 0.6], "d": [1.5, 2.0, 2.5], "alpha": [0.01, 0.05, 0.1]}
    g = criteria_grid(Criteria(q=0.05, d=0.4, r=0.95, alpha=0.2))
    assert g == {"q": [0.05, 0.15], "d": [0.4, 0.9], "alpha": [0.01, 0.05, 0.1, 0.2]}
    for name, values in g.items():
        for v in values:      # every value is a valid criterion
            Criteria(**{name: v})
