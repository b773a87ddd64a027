"""The chain_042 report rendered by a real headless Chromium: every section and every
figure present in the rendered DOM, each image decoded, and a screenshot that is not
blank (saved under test-artifacts/report/ with the rendered DOM).

Without Chromium the test skips, except under CI (environment variable CI set), where
it fails: .ci/run installs Debian's chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from qtrait.report.sections import SECTION_IDS
from tests.helpers import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "report"

#: marks every image the browser decoded (naturalWidth > 0) once the page has loaded
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-decoded", img.complete && img.naturalWidth > 0 ? "yes" : "no");
  }
  document.body.setAttribute("data-probe", "done");
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = ("Chromium is not installed: the report's browser test needs it "
               "(apt-get install chromium; .ci/run installs it)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message + "; set CI=1 to make this a failure")


def browse(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium(chain_report):
    exe = chromium()
    assert chain_report.code == 0, chain_report.err
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = (chain_report.folder / "report.html").read_text(encoding="utf-8")
    probed = ARTIFACTS / "chain_042.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    url = probed.resolve().as_uri()

    dom = browse(exe, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    (ARTIFACTS / "chain_042.dom.html").write_text(dom.stdout, encoding="utf-8")
    assert 'data-probe="done"' in dom.stdout, "the page's load event never fired"
    sections = re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', dom.stdout)
    assert [s for s, _ in sections] == [s for s in SECTION_IDS if s != "redifine"]
    images = re.findall(r"<img [^>]*>", dom.stdout)
    figures = sorted(p.stem for p in (chain_report.folder / "figures").iterdir())
    names = sorted(re.search(r'data-figure="([^"]+)"', i).group(1) for i in images)
    assert names == figures and len(figures) == 5 + 10      # 5 plots, 10 image grids
    undecoded = [re.search(r'data-figure="([^"]+)"', i).group(1) for i in images
                 if 'data-decoded="yes"' not in i]
    assert not undecoded, f"images the browser could not decode: {undecoded}"

    shot = ARTIFACTS / "chain_042.png"
    shot.unlink(missing_ok=True)
    res = browse(exe, f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        hist = grey.histogram()
    assert hi - lo > 200                                   # text and figures, not one colour
    non_white = 1 - sum(hist[245:]) / sum(hist)
    assert non_white > 0.02, f"screenshot nearly blank ({non_white:.1%} non-white)"
