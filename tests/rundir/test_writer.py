"""The writer's rules: atomic generations, completion last, no rewrites, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from qtrait.errors import InvalidInputError, QtraitError
from qtrait.rundir import RunWriter, open_run, scan_run
from tests.helpers import set_table, snapshot, write_tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from qtrait.rundir import RunWriter
    from tests.helpers import set_table
    writer = RunWriter.resume(sys.argv[1])
    rng = np.random.default_rng(7)
    with writer.generation() as gw:
        gw.write_set("guided", set_table(rng, 12, ["t1", "t2"]))
        print("HALF-WRITTEN", flush=True)
        time.sleep(60)   # killed here, mid-generation
        gw.write_set("probe_w1", set_table(rng, 5, ["t1", "t2"]))
""")


def test_killed_writer_leaves_a_valid_run(tmp_path, cli):
    run = write_tiny_run(tmp_path / "run", generations=2)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    with proc:
        try:
            assert proc.stdout.readline().strip() == "HALF-WRITTEN"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert (run / "generations" / "gen_0002" / "guided.csv").exists()

    res = cli("validate", run)
    assert res.code == 0
    assert "generation 2: incomplete (no completion record)" in res.out
    opened = open_run(run)
    assert opened.generations == [0, 1] and opened.incomplete == [2]

    # a resuming writer discards the partial generation and writes it again
    writer = RunWriter.resume(run)
    assert writer.next_generation == 2 and writer.incomplete_generations == [2]
    with pytest.raises(QtraitError, match="incomplete folder from an interrupted writer"):
        writer.generation(2)
    writer.discard_incomplete(2)
    rng = np.random.default_rng(3)
    writer.write_generation(2, {"guided": set_table(rng, 12, ["t1", "t2"])})
    assert open_run(run).generations == [0, 1, 2]
    assert cli("validate", run).code == 0


def test_exception_inside_generation_leaves_it_incomplete(tmp_path):
    run = write_tiny_run(tmp_path / "run", generations=1)
    writer = RunWriter.resume(run)
    with pytest.raises(RuntimeError):
        with writer.generation(1) as gw:
            gw.write_set("guided", set_table(np.random.default_rng(0), 4, ["t1", "t2"]))
            raise RuntimeError("out of memory")
    r, problems = scan_run(run)
    assert r is not None and r.generations == [0] and r.incomplete == [1]


def test_completed_generations_are_never_rewritten(tiny_run):
    before = snapshot(tiny_run)
    writer = RunWriter.resume(tiny_run)
    rng = np.random.default_rng(0)
    with pytest.raises(QtraitError, match="generation 1 is complete"):
        writer.write_generation(1, {"guided": set_table(rng, 4, ["t1", "t2"])})
    with pytest.raises(QtraitError, match="is complete and is never removed"):
        writer.discard_incomplete(0)
    with pytest.raises(QtraitError, match="cannot be written next; expected 3"):
        writer.write_generation(5, {"guided": set_table(rng, 4, ["t1", "t2"])})
    assert snapshot(tiny_run) == before


def test_bad_tables_are_refused_before_anything_is_written(tiny_run):
    before = snapshot(tiny_run)
    writer = RunWriter.resume(tiny_run)
    df = set_table(np.random.default_rng(0), 4, ["t1", "t2"])
    df.loc[2, "t1"] = np.nan
    with pytest.raises(InvalidInputError, match="column 't1': missing or NaN values"):
        writer.write_generation(3, {"guided": df})
    with pytest.raises(InvalidInputError, match="trait columns differ"):
        writer.write_generation(3, {"guided": df.rename(columns={"t2": "t3"})})
    with pytest.raises(QtraitError, match="unknown set"):
        writer.write_generation(3, {"guided_w2": df})
    with pytest.raises(QtraitError, match=r"needs the set\(s\) \['guided'\]"):
        writer.write_generation(3, {"probe_w1": df.dropna()})
    assert snapshot(tiny_run) == before


def test_create_refuses_an_existing_folder(tiny_run):
    before = snapshot(tiny_run)
    run = open_run(tiny_run)
    with pytest.raises(QtraitError, match="already exists and is not empty"):
        RunWriter.create(tiny_run, run.manifest)
    assert snapshot(tiny_run) == before


def test_artifacts_are_hashed_and_guarded(tmp_path, cli):
    run = write_tiny_run(tmp_path / "run", generations=1)
    writer = RunWriter.resume(run)
    with writer.generation(1) as gw:
        gw.write_set("guided", set_table(np.random.default_rng(0), 4, ["t1", "t2"]))
        gw.write_artifact("grid.png", b"\x89PNG fake image bytes")
        with pytest.raises(QtraitError, match="leaves the generation folder"):
            gw.artifact_path("../../escape.bin")
    assert cli("validate", run).code == 0
    (run / "generations" / "gen_0001" / "artifacts" / "grid.png").write_bytes(b"changed")
    res = cli("validate", run)
    assert res.code == 1
    assert "generations/gen_0001/artifacts/grid.png, generation 1: changed after completion" \
        in res.err


def test_output_dirs_are_the_only_places_qtrait_writes(tiny_run):
    run = open_run(tiny_run)
    assert run.output_dir("fits") == tiny_run / "fits"
    with pytest.raises(ValueError, match="unknown output folder"):
        run.output_dir("generations")
    assert open_run(tiny_run).generations == [0, 1, 2]  # output folders don't disturb readers


def test_artifacts_with_a_relative_run_path_and_csv_names(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = write_tiny_run(tmp_path / "run", generations=1)
    writer = RunWriter.resume("run")  # relative root
    with writer.generation(1) as gw:
        gw.write_set("guided", set_table(np.random.default_rng(0), 4, ["t1", "t2"]))
        gw.write_artifact("stats.csv", b"a,b\n1,2\n")
    assert cli("validate", run).code == 0
    (run / "generations" / "gen_0001" / "artifacts" / "stats.csv").write_bytes(b"a,b\n9,9\n")
    res = cli("validate", run)
    assert res.code == 1 and "artifacts/stats.csv, generation 1: changed after completion" \
        in res.err
