"""Reports made once per session and shared by the report tests (fits are the slow part:
the breeder model compiles once per data layout and process, ~20 s each here)."""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT

#: small sampler settings: the report's logic is under test, not the posterior's quality
SETTINGS = ("--chains", "2", "--draws", "300", "--tune", "300")


@dataclass
class Made:
    code: int
    out: str
    err: str
    folder: Path


def qtrait(*args) -> tuple[int, str, str]:
    """``qtrait ARGS`` in-process (usable in session fixtures, unlike capsys)."""
    from qtrait.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def copy_run(name: str, dest: Path) -> Path:
    """A shipped run copied without qtrait's own outputs (fits are written into the copy)."""
    return Path(shutil.copytree(ROOT / "data" / "runs" / name, dest / name,
                                ignore=shutil.ignore_patterns("fits", "reports", "summaries",
                                                              "chain_state")))


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {n: copy_run(n, base) for n in ("chain_042", "chain_042_redifine")}


@pytest.fixture(scope="session")
def chain_report(shipped, tmp_path_factory) -> Made:
    """The report of the real chain chain_042 (breeder only: tilt on its 150 cells takes
    many minutes; the report handles a compared tilt fit as any other, and the tilt model
    itself is tested in tests/models)."""
    out = tmp_path_factory.mktemp("report") / "chain_042"
    code, so, se = qtrait("report", shipped["chain_042"], "--out", out,
                          "--compare-models", "breeder", *SETTINGS)
    return Made(code, so, se, out)
