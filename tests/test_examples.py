"""The shipped example runs are valid and regenerate exactly from their script."""

from __future__ import annotations

import json
import runpy

import pandas as pd
import pytest

from qtrait.rundir import open_run
from tests.helpers import EXAMPLE_RUN, ROOT, SIM_RUN

SHIPPED = ("chain_042", "chain_042_redifine", "chain_w1", "chain_w3", "sim_tilt_042")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_runs_are_valid(cli, name):
    res = cli("validate", ROOT / "data" / "runs" / name)
    assert res.code == 0, res.err
    run = open_run(ROOT / "data" / "runs" / name)
    assert run.generations == list(range(10))


def test_the_default_example_is_a_real_chain():
    run = open_run(EXAMPLE_RUN)
    assert run.manifest["producer"]["name"] == "chain_runner (toy)"
    assert run.design["cfg_scale"] == 7.5 and run.sets(0) == ["guided", "probe_w1",
                                                               "probe_uncond"]


def test_simulated_example_regenerates_exactly(tmp_path):
    script = runpy.run_path(str(ROOT / "data" / "make_example_runs.py"))
    [fresh] = script["make_simulated"](tmp_path)
    shipped, regenerated = open_run(SIM_RUN), open_run(fresh)
    assert shipped.manifest["truth"]["model"] == "tilt"
    pd.testing.assert_frame_equal(shipped.long_table(), regenerated.long_table(),
                                  check_exact=True)
    strip = {"created_at", "producer"}
    a = {k: v for k, v in shipped.manifest.items() if k not in strip}
    b = {k: v for k, v in regenerated.manifest.items() if k not in strip}
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.slow
def test_toy_example_regenerates_exactly(tmp_path):
    """Bit-identical on the machine that made it (same torch build and thread count);
    other CPUs may differ in the last bits of float arithmetic."""
    pytest.importorskip("torch")
    script = runpy.run_path(str(ROOT / "data" / "make_example_runs.py"))
    [fresh] = script["make_chains"](tmp_path, names=("chain_042",))
    pd.testing.assert_frame_equal(open_run(EXAMPLE_RUN).long_table(),
                                  open_run(fresh).long_table(), check_exact=True)
