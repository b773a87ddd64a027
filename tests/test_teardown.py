"""tests/teardown.py: the plugin that ends the test process without the interpreter's
teardown keeps pytest's exit status and really skips the teardown."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

BODY = """
import atexit

atexit.register(lambda: print("ATEXIT RAN"))


def test_one():
    assert {value}
"""


def run_pytest(tmp_path, value: str, plugin: bool = True) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text(BODY.format(value=value))
    args = [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
            "--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(tmp_path / "test_x.py")]
    if plugin:
        args[3:3] = ["-p", "tests.teardown"]
    # cwd ROOT: `python -m` puts it on sys.path, so tests.teardown imports
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("value, code, summary", [("True", 0, "1 passed"),
                                                   ("False", 1, "1 failed")])
def test_the_exit_status_is_pytests(tmp_path, value, code, summary):
    res = run_pytest(tmp_path, value)
    assert res.returncode == code, res.stdout[-2000:] + res.stderr[-2000:]
    assert summary in res.stdout   # the summary was written before the process ended
    # the interpreter's teardown (where atexit handlers run) was skipped
    assert "ATEXIT RAN" not in res.stdout


def test_without_the_plugin_the_teardown_runs(tmp_path):
    # the control: the atexit probe above does print when the teardown runs
    res = run_pytest(tmp_path, "True", plugin=False)
    assert res.returncode == 0 and "ATEXIT RAN" in res.stdout
