"""The documentation agrees with the code.

* the version: ``qtrait --version``, ``qtrait.__version__``, the installed metadata,
  CITATION.cff and CHANGELOG.md say the same;
* docs/api.md is what tools/gen_api_docs.py writes from the docstrings today, and every
  public function and class of the documented modules has a docstring;
* every ``qtrait ...`` command line in a fenced code block of README.md and docs/*.md
  names a real command and only long options that command has (an example that shows
  the usage error of an unknown option or command must name one that does not exist);
* every relative link in those files points to an existing file (and heading).

Fast: nothing is fitted or compiled; the command tree is read from the Typer apps.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import shlex
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import typer
import yaml  # PyYAML: installed with the base package (nutpie -> zarr -> donfig)

import qtrait
import qtrait.errors
from qtrait.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Public functions/classes allowed to have no docstring (none now: keep it that way; the
# test below fails when a listed name gets one, so this list only shrinks)
KNOWN_UNDOCUMENTED: set[str] = set()


def _generator():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "tools/gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


# --- version, citation, changelog -------------------------------------------------------

def test_version_has_one_source(cli):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qtrait.__version__"}

    res = cli("--version")
    assert res.code == 0 and res.out == f"qtrait {qtrait.__version__}\n" and res.err == ""
    assert metadata.version("qtrait") == qtrait.__version__, (
        "the installed metadata is stale: reinstall with `pip install -e .` (a stale "
        "qtrait.egg-info in the working directory also shadows it)")


def test_citation_cff():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text("utf-8"))
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # required by the CFF 1.2.0 schema
        assert cff[key]
    assert str(cff["version"]) == qtrait.__version__
    assert cff["authors"] == [{"name": "qtrait developers"}]
    license_text = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert cff["license"] == license_text["project"]["license"]["text"] == "MIT"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))
    for ref in cff["references"]:  # a reference needs type, title and authors
        assert ref["type"] and ref["title"] and ref["authors"]
    # the paper the theory rests on (docs/theory.md) is cited
    assert any("2407.17493" in ref.get("url", "") for ref in cff["references"])


def test_changelog_has_this_release():
    text = (ROOT / "CHANGELOG.md").read_text("utf-8")
    releases = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert releases, "CHANGELOG.md has no '## [version] - date' headings"
    versions = [v for v, _ in releases]
    if ".dev" in qtrait.__version__:
        assert versions[0] == "Unreleased"
    else:
        assert qtrait.__version__ in versions, f"CHANGELOG.md has no [{qtrait.__version__}]"
        date = dict(releases)[qtrait.__version__]
        cff = yaml.safe_load((ROOT / "CITATION.cff").read_text("utf-8"))
        assert date == str(cff["date-released"])


# --- API reference --------------------------------------------------------------------

def test_api_reference_is_up_to_date(tmp_path):
    out = tmp_path / "api.md"
    assert GEN.main(["--out", str(out)]) == 0
    fresh, committed = out.read_text("utf-8"), (ROOT / "docs/api.md").read_text("utf-8")
    if fresh != committed:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True),
                                                 fresh.splitlines(True), "docs/api.md",
                                                 "regenerated", n=1))[:60])
        pytest.fail(f"docs/api.md is stale; regenerate it with `make docs`:\n{diff}")


def test_api_reference_is_deterministic():
    text = (ROOT / "docs/api.md").read_text("utf-8")
    assert not re.search(r" at 0x[0-9a-f]+", text), "a memory address in docs/api.md"
    assert str(ROOT) not in text and str(Path.home()) not in text, "an absolute path"
    for module in GEN.modules():
        assert f"\n## {module}\n" in text


def test_public_api_has_docstrings():
    missing = set(GEN.undocumented())
    new = sorted(missing - KNOWN_UNDOCUMENTED)
    assert not new, ("public functions/classes without a docstring (add one; "
                     "`python tools/gen_api_docs.py --check` lists them):\n  "
                     + "\n  ".join(new))
    fixed = sorted(KNOWN_UNDOCUMENTED - missing)
    assert not fixed, ("these have docstrings now; remove them from KNOWN_UNDOCUMENTED in "
                       "tests/test_docs.py:\n  " + "\n  ".join(fixed))


def test_docstring_check_sees_what_it_should():
    import dataclasses

    @dataclasses.dataclass
    class Bare:
        x: int

    @dataclasses.dataclass
    class Told:
        """Has one."""

        x: int

    class Child(Told):
        pass

    def f():
        pass

    assert GEN.own_doc(Bare) is None          # dataclasses' generated "Bare(x: int)"
    assert GEN.own_doc(Told) == "Has one."
    assert GEN.own_doc(Child) is None         # an inherited docstring is not its own
    assert GEN.own_doc(f) is None
    assert GEN.public_names(qtrait.errors) == ["InvalidInputError", "Problem", "QtraitError"]


# --- command lines in the docs ----------------------------------------------------------

@dataclass
class Invocation:
    where: str              # file:line
    argv: list[str]         # after the program name
    error: str | None       # the usage error the docs show for it, if any


_PROMPT = "$ "
_PROGRAMS = ("qtrait", "python -m qtrait")
_SHELL_BLOCKS = {"", "bash", "sh", "console", "shell", "text"}
_STOP = {"|", "||", "&&", ";", "&"}


def _fenced_blocks(text: str):
    """(info string, first line number, lines) of every fenced code block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).lower(), i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        yield info, start + 1, body
        i += 1


def _commands(line: str) -> list[list[str]]:
    """The qtrait command lines in one shell line (``a && qtrait b | head`` too)."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        tokens = line.split()
    segments, seg = [], []
    for tok in tokens:
        if tok in _STOP:
            segments.append(seg)
            seg = []
        else:
            seg.append(tok)
    segments.append(seg)
    out = []
    for seg in segments:
        while seg and re.fullmatch(r"[A-Z_]+=\S*", seg[0]):  # VAR=value qtrait ...
            seg = seg[1:]
        if seg and (seg[0] == "qtrait" or seg[0].endswith("/qtrait")):
            argv = seg[1:]
        elif seg[:3] == ["python", "-m", "qtrait"]:
            argv = seg[3:]
        else:
            continue
        # drop redirections and what follows them
        argv = [a for a in argv if not re.match(r"^\d?>", a)]
        out.append(argv)
    return out


def doc_invocations() -> list[Invocation]:
    found = []
    for path in DOCS:
        rel = path.relative_to(ROOT)
        for info, first, body in _fenced_blocks(path.read_text("utf-8")):
            if info not in _SHELL_BLOCKS:
                continue
            # join continuation lines
            joined, starts, buf, buf_start = [], [], "", None
            for k, line in enumerate(body):
                if buf_start is None:
                    buf_start = first + k
                if line.rstrip().endswith("\\"):
                    buf += line.rstrip()[:-1] + " "
                    continue
                joined.append(buf + line)
                starts.append(buf_start)
                buf, buf_start = "", None
            prompted = any(x.startswith(_PROMPT) for x in joined)
            for k, line in enumerate(joined):
                if prompted:
                    if not line.startswith(_PROMPT):
                        continue
                    line = line[len(_PROMPT):]
                    output = []
                    for nxt in joined[k + 1:]:
                        if nxt.startswith(_PROMPT):
                            break
                        output.append(nxt)
                    shown = "\n".join(output)
                    m = re.search(r"Error: (No such (?:option|command)[^\n]*)", shown)
                    error = m.group(1) if m else None
                else:
                    if not line.lstrip().startswith(_PROGRAMS):
                        continue
                    error = None
                for argv in _commands(line.strip()):
                    found.append(Invocation(f"{rel}:{starts[k]}", argv, error))
    return found


@functools.cache
def _root():
    return typer.main.get_command(app)


@functools.cache
def _forwarded():
    """The chain runner's command trees (``qtrait chain``, ``qtrait traits``); importing
    them is cheap and never imports torch."""
    from chain_runner import cli as chain_cli
    from chain_runner import traits_cli

    return {"chain": typer.main.get_command(chain_cli.app),
            "traits": typer.main.get_command(traits_cli.app)}


def _long_options(cmd) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(o for o in list(p.opts) + list(p.secondary_opts) if o.startswith("--"))
    return names


def resolve(argv: list[str]):
    """(command path, click command, remaining args) for ``qtrait ARGV``."""
    forwarded = _forwarded()
    cmd, path, rest = _root(), [], list(argv)
    while rest and hasattr(cmd, "commands"):
        tok = rest[0]
        if tok.startswith("-"):
            if path == [] and tok in ("-h", "--help", "--version"):
                return path, cmd, rest
            break
        if tok not in cmd.commands:
            break
        path.append(tok)
        cmd = cmd.commands[tok]
        rest = rest[1:]
        if path in (["chain"], ["traits"]):
            cmd = forwarded[tok]
    return path, cmd, rest


def check_invocation(inv: Invocation) -> str | None:
    """What is wrong with one documented command line, or None."""
    path, cmd, rest = resolve(inv.argv)
    shown = "qtrait " + " ".join(inv.argv)
    if inv.error and inv.error.startswith("No such command"):
        return None if rest and hasattr(cmd, "commands") else (
            f"{inv.where}: `{shown}` is shown as an unknown command, but it exists")
    if hasattr(cmd, "commands"):
        if rest and not rest[0].startswith("-"):
            return f"{inv.where}: `{shown}`: no command {' '.join(['qtrait', *path, rest[0]])}"
        if not rest:
            return None  # a group alone prints its help
    known = _long_options(cmd)
    if path == []:
        known |= {"--version"}
    options = {re.sub(r"[\[\]().,]+$", "", re.sub(r"^[\[(]+", "", a)).split("=")[0]
               for a in rest if re.match(r"^[\[(]*--[a-z]", a)}
    unknown = sorted(o for o in options if o not in known)
    if inv.error and inv.error.startswith("No such option"):
        return None if unknown else (
            f"{inv.where}: `{shown}` is shown as an unknown option, but every option exists")
    if unknown:
        return (f"{inv.where}: `{shown}`: qtrait {' '.join(path)} has no option(s) "
                f"{', '.join(unknown)}")
    return None


def test_docs_show_command_lines():
    # the scan finds the command lines it should: a guard against a parser that finds none
    invs = doc_invocations()
    assert len(invs) > 100
    paths = {" ".join(resolve(i.argv)[0]) for i in invs}
    assert {"validate", "summarize", "fit", "predict", "theory horizon", "chain run"} <= paths


def test_documented_commands_and_options_exist():
    problems = [p for p in map(check_invocation, doc_invocations()) if p]
    assert not problems, "command lines in the docs that qtrait does not accept:\n" + \
        "\n".join(problems)


def test_command_check_catches_mistakes():
    def bad(line, error=None):
        return check_invocation(Invocation("x.md:1", shlex.split(line), error))

    assert bad("fit data/runs/chain_042 --model breeder") is None
    assert bad("theory horizon --run R --h2 0.9") is None
    assert bad("chain run c.toml --out R") is None
    assert "no option(s) --no-such" in bad("fit R --no-such 3")
    assert "no command qtrait theory nope" in bad("theory nope")
    assert "no command qtrait nope" in bad("nope R")
    assert bad("summarize R --bogus", "No such option: --bogus") is None
    assert "but every option exists" in bad("summarize R --json", "No such option: --json")
    assert bad("import T --out R [--meta FILE] [--json]") is None


# --- links ------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    text = path.read_text("utf-8")
    fenced = {n for _, first, body in _fenced_blocks(text)
              for n in range(first - 1, first + len(body) + 1)}
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and n not in fenced:
            slug = _slug(m.group(1))
            k = seen.get(slug, 0)
            seen[slug] = k + 1
            out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every relative link outside code."""
    text = path.read_text("utf-8")
    fenced = {n for _, first, body in _fenced_blocks(text)
              for n in range(first - 1, first + len(body) + 1)}
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if n in fenced:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # https:, mailto:
            found.append((n, target))
    return found


def test_relative_links_resolve():
    problems, checked = [], 0
    for path in DOCS:
        for n, target in relative_links(path):
            checked += 1
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{n}"
            if not dest.exists():
                problems.append(f"{where}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{where}: {target}: no heading #{anchor} in {dest.name}")
    assert checked > 30
    assert not problems, "broken links in the docs:\n" + "\n".join(problems)


def test_link_check_catches_mistakes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `b` heading\n\n[ok](#a-b-heading) [x](missing.md) `[no](code.md)`\n"
                    "```\n[no](block.md)\n```\n[web](https://example.org) ![i](f.png)\n")
    assert relative_links(page) == [(3, "#a-b-heading"), (3, "missing.md"), (7, "f.png")]
    assert _anchors(page) == {"a-b-heading"}


def test_cli_docs_show_the_sampler_defaults():
    # the synopses' [--draws N] and the option table's rows show qtrait.sampler_defaults
    # (cli.md said 1,000 after 1,000 for a day after the defaults moved): every such
    # mention is checked, and at least one synopsis per fitting command and the table row
    # of each option must be found, so a reworded page cannot pass by matching nothing
    from qtrait import sampler_defaults as d

    text = (ROOT / "docs" / "cli.md").read_text("utf-8")
    want = {"--chains": d.CHAINS, "--draws": d.DRAWS, "--tune": d.TUNE,
            "--target-accept": d.TARGET_ACCEPT}
    for opt, value in want.items():
        shown = re.findall(rf"\[{opt} ([0-9.]+)\]", text)
        rows = re.findall(rf"^\| `{opt} [A-Z]+` \| `([0-9.]+)` \|", text, re.M)
        assert len(shown) >= 4 and len(rows) >= 1, (opt, shown, rows)
        wrong = [v for v in shown + rows if float(v) != value]
        assert not wrong, f"docs/cli.md shows {opt} {wrong}; the default is {value}"
