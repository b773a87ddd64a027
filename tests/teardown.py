"""A pytest plugin, loaded by tests/conftest.py: once pytest has finished (every result,
the summary and the report files written), the test process ends with pytest's own exit
status, without the interpreter's teardown.

Why: CI's run of 2026-12-08 (stop 35) passed every test, printed its summary and then died
in the interpreter's teardown with a segmentation fault (exit 139), which failed CI. The
crash comes from a native library's clean-up at exit (the suite loads torch, numba,
PyTensor's compiled modules, nutpie's Rust threads and OpenBLAS in one process); it did
not recur in the runs since and its cause is not known. Nothing the tests check happens
in that teardown, so skipping it loses nothing. tests/test_teardown.py checks that a
failing test still fails the process and that the teardown is really skipped.
"""

from __future__ import annotations

import os
import sys

import pytest

_SESSION: list = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    _SESSION.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if not _SESSION:
        return   # pytest stopped before its session began: let it exit its own way
    status = int(_SESSION[-1].exitstatus)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
