"""docs/results.md quotes only measured numbers: every decimal number in its hand-written
text appears in one of its generated blocks (analyses/results_summary.py) or in a study's
generated results.md (analyses/<study>/run.py), so a number cannot drift from the
scripts that produce it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- begin generated.*?<!-- end generated[^>]*-->", re.S)
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def unsourced(page: str, sources: str) -> list[str]:
    """Decimal numbers of the hand-written text that are not, as whole numbers, in the
    generated blocks or the sources ("0.5" is not sourced by "0.55" nor by "10.5")."""
    hand = BLOCK.sub("", page)
    known = set(DECIMAL.findall("\n".join(BLOCK.findall(page)) + "\n" + sources))
    return sorted({n for n in DECIMAL.findall(hand) if n not in known})


def test_results_page_numbers_come_from_the_studies():
    page = (ROOT / "docs" / "results.md").read_text()
    studies = "".join(p.read_text() for p in sorted(ROOT.glob("analyses/*/results.md")))
    assert BLOCK.search(page), "docs/results.md has no generated block"
    missing = unsourced(page, studies)
    assert not missing, ("numbers in docs/results.md's hand-written text that no generated "
                         f"table or study results.md contains: {missing}")


def test_the_check_catches_an_invented_number():
    page = ("text 0.25 and 1.5\n<!-- begin generated: x -->\n| 0.25 |\n"
            "<!-- end generated: x -->\n")
    assert unsourced(page, "") == ["1.5"]
    assert unsourced(page, "1.5 measured") == []
    assert unsourced("Python 3.11.7, qtrait 0.1.0", "") == []   # versions are not numbers
    # whole numbers only: a substring of a longer number does not count as its source
    assert unsourced("text 0.5", "0.55 and 10.5 and v0.5.1") == ["0.5"]


def test_theory_calibration_section_quotes_the_study():
    """docs/theory.md section 4.6 copies the calibration study's numbers by hand; each of
    them must be one analyses/zeroshot_calibration/results.md printed."""
    page = (ROOT / "docs" / "theory.md").read_text()
    start = page.index("### 4.6 ")
    section = page[start:page.index("\n## ", start)]
    section = re.sub(r"(###|section) \d+\.\d+", "", section)     # references, not numbers
    study = (ROOT / "analyses" / "zeroshot_calibration" / "results.md").read_text()
    missing = unsourced(section, study)
    assert not missing, f"numbers in theory.md 4.6 that the study did not print: {missing}"


def test_the_optional_breeder_terms_in_models_md_quote_measured_numbers():
    # docs/models.md 4.1 reports what each optional breeder term did on the benchmark and
    # the shipped runs (from "**Momentum" to the shock's sampling note): the same rule,
    # those numbers must stand in a study's generated results.md
    page = (ROOT / "docs" / "models.md").read_text()
    start, end = page.index("**Momentum (off by default).**"), \
        page.index("*How the shocks are sampled.*")
    studies = "".join(p.read_text() for p in sorted(ROOT.glob("analyses/*/results.md")))
    missing = unsourced(page[start:end], studies)
    assert not missing, ("numbers in docs/models.md 4.1's optional terms that no study "
                         f"results.md contains: {missing}")
