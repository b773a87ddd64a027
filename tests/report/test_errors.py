"""Bad requests to `qtrait report` are refused with one clear line and exit status 2,
before any fit and before anything is written."""

from __future__ import annotations

import pytest

from tests.helpers import write_tiny_run


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_run(tmp_path / "tiny", generations=4)


@pytest.mark.parametrize("args, message", [
    (["--model", "hier"], "--model hier: a report is per run"),
    (["--model", "nope"], "--model nope: unknown model 'nope'"),
    (["--compare-models", "breeder,nope"], "--compare-models nope: unknown model"),
    (["--compare-models", " , "], "--compare-models: give at least one model"),
    (["-k", "1"], "--from-generations must be >= 2"),
    (["-k", "9"], "--from-generations 9: run tiny has only 4 complete generations"),
    (["--h2", "1.5"], "--h2 must be in [0, 1], got 1.5"),
    (["--rho", "-0.1"], "--rho must be in [0, 1], got -0.1"),
    (["--q", "2"], "q must be in (0, 1), got 2.0"),
    (["--chains", "0"], "need --chains >= 1"),
])
def test_bad_options(cli, tiny, tmp_path, args, message):
    out = tmp_path / "out"
    res = cli("report", tiny, "--out", out, *args)
    assert res.code == 2, res.err
    assert res.err.startswith("error: ") and message in res.err, res.err
    assert "Traceback" not in res.err and "fitting now" not in res.err
    assert not out.exists()


def test_model_that_does_not_apply(cli, tmp_path):
    run = write_tiny_run(tmp_path / "noprobe", generations=3, probes=False)
    res = cli("report", run, "--out", tmp_path / "out", "--model", "tilt")
    assert res.code == 2
    assert "--model tilt: model 'tilt' needs the probe sets" in res.err
    res = cli("report", run, "--out", tmp_path / "out", "--compare-models", "breeder,exact")
    assert res.code == 2 and "--compare-models exact: model 'exact' needs the probe" in res.err


def test_missing_runs(cli, tiny, tmp_path):
    res = cli("report", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert res.code == 2 and res.err.startswith("error: ")
    res = cli("report", tiny, "--baseline", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert res.code == 2 and res.err.startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_baseline_must_be_another_run_of_the_same_cells(cli, tiny, tmp_path):
    res = cli("report", tiny, "--baseline", tiny / ".", "--out", tmp_path / "out")
    assert res.code == 2
    assert f"error: --baseline {tiny} is the run itself" in res.err
    assert "hint: give the baseline chain" in res.err
    other = write_tiny_run(tmp_path / "other", generations=4, traits=("t1", "t3"))
    res = cli("report", tiny, "--baseline", other, "--out", tmp_path / "out")
    assert res.code == 2 and "must have the same traits and concepts" in res.err


def test_unusable_out(cli, tiny, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    res = cli("report", tiny, "--out", a_file)
    assert res.code == 2 and f"--out {a_file}: exists and is not a folder" in res.err
    res = cli("report", tiny, "--out", a_file / "sub")
    assert res.code == 2 and f"--out {a_file / 'sub'}: cannot write there" in res.err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    res = cli("report", tiny, "--out", busy)
    assert res.code == 2 and "the folder holds other files (notes.txt)" in res.err
    assert (busy / "notes.txt").read_text() == "mine"


def test_same_run_twice(cli, tiny, tmp_path):
    res = cli("report", tiny, tiny, "--out", tmp_path / "out")
    assert res.code == 2 and "run id(s) tiny given twice" in res.err
