"""The shipped example runs are valid and regenerate exactly from their script."""

from __future__ import annotations

import json
import runpy

import pandas as pd

from qtrait.rundir import open_run
from tests.helpers import EXAMPLE_RUN, ROOT


def test_example_run_is_valid(cli):
    res = cli("validate", EXAMPLE_RUN)
    assert res.code == 0, res.err
    run = open_run(EXAMPLE_RUN)
    assert run.generations == list(range(10))
    assert run.manifest["truth"]["model"] == "tilt"


def test_example_run_regenerates_exactly(tmp_path):
    script = runpy.run_path(str(ROOT / "data" / "make_example_runs.py"))
    [fresh] = script["make"](tmp_path)
    shipped, regenerated = open_run(EXAMPLE_RUN), open_run(fresh)
    pd.testing.assert_frame_equal(shipped.long_table(), regenerated.long_table(),
                                  check_exact=True)
    strip = {"created_at", "producer"}
    a = {k: v for k, v in shipped.manifest.items() if k not in strip}
    b = {k: v for k, v in regenerated.manifest.items() if k not in strip}
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
