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

#: the finished session's exit status, kept on the config for pytest_unconfigure
STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    session.config.stash[STATUS] = int(session.exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if STATUS not in config.stash:
        return   # pytest stopped before its session began: let it exit its own way
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[STATUS])
