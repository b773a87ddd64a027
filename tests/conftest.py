"""Fixtures: a CLI runner and a small run on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from qtrait.cli.main import main
from tests.helpers import write_tiny_run

#: ends the test process without the interpreter's teardown (tests/teardown.py says why)
pytest_plugins = ["tests.teardown"]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``qtrait ARGS...`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    return write_tiny_run(tmp_path / "tiny")


