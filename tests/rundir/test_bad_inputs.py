"""One test per bad input: the message names the problem, and nothing is modified.

Each test damages a valid run (or writes a bad table), then runs ``qtrait validate``
and ``qtrait summarize`` and checks (a) a non-zero exit, (b) a one-line message naming
file, generation and column where they apply, (c) no traceback, (d) the run's files are
byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qtrait.rundir.io import sha256_file
from tests.helpers import snapshot


def rehash(run: Path, g: int) -> None:
    """Update a completion record after editing a file, as a buggy writer would."""
    gdir = run / "generations" / f"gen_{g:04d}"
    record_path = gdir / "COMPLETE.json"
    record = json.loads(record_path.read_text())
    for p in gdir.rglob("*"):
        if p.is_file() and p.name != "COMPLETE.json":
            rel = p.relative_to(gdir).as_posix()
            record["files"][rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    record_path.write_text(json.dumps(record))


def edit_csv(run: Path, g: int, set_name: str, fn, fix_hash: bool = True) -> None:
    path = run / "generations" / f"gen_{g:04d}" / f"{set_name}.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")
    if fix_hash:
        rehash(run, g)


def set_cell(line_no: int, col: int, value: str):
    def fn(lines):
        cells = lines[line_no - 1].split(",")
        cells[col] = value
        lines[line_no - 1] = ",".join(cells)
        return lines
    return fn


def check_rejected(cli, run: Path, *expected: str) -> str:
    """validate and summarize both fail with the expected text; the run is unchanged."""
    before = snapshot(run)
    res = cli("validate", run)
    assert res.code == 1, res
    text = res.out + res.err
    for e in expected:
        assert e in text, f"{e!r} not in:\n{text}"
    assert "Traceback" not in text
    res2 = cli("summarize", run)
    assert res2.code == 2
    assert res2.err.startswith("error: invalid run directory")
    for e in expected:
        assert e in res2.err
    assert "Traceback" not in res2.err
    assert snapshot(run) == before
    return text


def test_valid_run_passes(cli, tiny_run):
    res = cli("validate", tiny_run)
    assert res.code == 0
    assert "valid (0 error(s), 0 notice(s))" in res.out


def test_missing_manifest(cli, tiny_run):
    (tiny_run / "manifest.json").unlink()
    check_rejected(cli, tiny_run, "manifest.json: missing manifest")


def test_unreadable_manifest(cli, tiny_run):
    (tiny_run / "manifest.json").write_text("{not json")
    check_rejected(cli, tiny_run, "manifest.json: unreadable manifest")


def test_binary_manifest(cli, tiny_run):
    (tiny_run / "manifest.json").write_bytes(b"\x89PNG\x00\x00")
    check_rejected(cli, tiny_run, "unreadable manifest: binary data")


def test_unsupported_schema_version(cli, tiny_run):
    m = json.loads((tiny_run / "manifest.json").read_text())
    m["schema_version"] = 99
    (tiny_run / "manifest.json").write_text(json.dumps(m))
    check_rejected(cli, tiny_run, "unsupported schema version 99")


def test_bad_design_field(cli, tiny_run):
    m = json.loads((tiny_run / "manifest.json").read_text())
    m["design"]["anchor"] = "parent"
    m["design"]["p_drop"] = 1.5
    m["design"]["training_data"] = "all"
    (tiny_run / "manifest.json").write_text(json.dumps(m))
    check_rejected(cli, tiny_run, "design field 'anchor': must be 'base' or 'previous'",
                   "design field 'p_drop': must be a number in [0, 1]",
                   "design field 'training_data': must be 'replace' or 'accumulate'")


def test_missing_generation(cli, tiny_run):
    shutil.rmtree(tiny_run / "generations" / "gen_0001")
    check_rejected(cli, tiny_run, "generation 1: missing generation 1 (present: 0, 2)")


def test_duplicated_generation(cli, tiny_run):
    shutil.copytree(tiny_run / "generations" / "gen_0001", tiny_run / "generations" / "gen_1")
    check_rejected(cli, tiny_run, "generation 1: duplicated generation: "
                   "generations/gen_0001, generations/gen_1")


def test_negative_generation(cli, tiny_run):
    shutil.copytree(tiny_run / "generations" / "gen_0001",
                    tiny_run / "generations" / "gen_-001")
    check_rejected(cli, tiny_run, "generations/gen_-001: negative generation number -1")


def test_incomplete_last_generation_is_a_notice(cli, tiny_run):
    (tiny_run / "generations" / "gen_0002" / "COMPLETE.json").unlink()
    before = snapshot(tiny_run)
    res = cli("validate", tiny_run)
    assert res.code == 0
    assert ("notice: generations/gen_0002, generation 2: incomplete (no completion record)"
            in res.out)
    res = cli("summarize", tiny_run, "--json")
    assert res.code == 0
    assert {r["generation"] for r in json.loads(res.out)["traits"]} == {0, 1}
    assert snapshot(tiny_run) == before


def test_incomplete_generation_before_complete_ones(cli, tiny_run):
    (tiny_run / "generations" / "gen_0001" / "COMPLETE.json").unlink()
    check_rejected(cli, tiny_run, "error: generations/gen_0001, generation 1: incomplete "
                   "(no completion record) although later generations are complete")


def test_non_numeric_trait_value(cli, tiny_run):
    edit_csv(tiny_run, 1, "guided", set_cell(4, 2, "blurry"))
    check_rejected(cli, tiny_run, "generations/gen_0001/guided.csv, generation 1, column "
                   "'t1': non-numeric values (line 4, e.g. 'blurry')")


@pytest.mark.parametrize("value,kind", [("nan", "missing or NaN values"),
                                        ("", "missing or NaN values"),
                                        ("inf", "infinite values"),
                                        ("-inf", "infinite values")])
def test_nan_and_inf_trait_values(cli, tiny_run, value, kind):
    edit_csv(tiny_run, 2, "probe_w1", set_cell(3, 3, value))
    check_rejected(cli, tiny_run, f"generations/gen_0002/probe_w1.csv, generation 2, column "
                   f"'t2': {kind} (line 3)")


def test_fewer_than_two_images_in_a_set(cli, tiny_run):
    # keep the header and one row of concept 'a', drop concept 'b' except one row
    edit_csv(tiny_run, 0, "probe_uncond", lambda lines: [lines[0], lines[1], lines[-1]])
    check_rejected(cli, tiny_run, "generations/gen_0000/probe_uncond.csv, generation 0: "
                   "set 'probe_uncond', concept 'a' has 1 image; at least 2 are needed")


def test_trait_columns_differ_between_generations(cli, tiny_run):
    def rename(lines):
        lines[0] = lines[0].replace("t2", "t2_renamed")
        return lines
    edit_csv(tiny_run, 2, "guided", rename)
    check_rejected(cli, tiny_run, "generations/gen_0002/guided.csv, generation 2: trait "
                   "columns differ from the run's traits: missing ['t2']; unexpected "
                   "['t2_renamed']")


def test_unknown_set_name(cli, tiny_run):
    gdir = tiny_run / "generations" / "gen_0001"
    shutil.copy(gdir / "probe_w1.csv", gdir / "probe_w2.csv")
    rehash(tiny_run, 1)
    check_rejected(cli, tiny_run, "generations/gen_0001/probe_w2.csv, generation 1: unknown "
                   "set 'probe_w2'")


def test_binary_table(cli, tiny_run):
    path = tiny_run / "generations" / "gen_0001" / "guided.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00binary zip content")
    rehash(tiny_run, 1)
    check_rejected(cli, tiny_run, "generations/gen_0001/guided.csv, generation 1: "
                   "unreadable table: binary data, not a CSV table")


def test_unreadable_table(cli, tiny_run):
    path = tiny_run / "generations" / "gen_0001" / "guided.csv"
    path.write_bytes(b"\xff\xfe latin-1 \xe9t\xe9\n")
    rehash(tiny_run, 1)
    check_rejected(cli, tiny_run, "generations/gen_0001/guided.csv, generation 1: "
                   "unreadable table: not UTF-8 text")


def test_file_changed_after_completion(cli, tiny_run):
    edit_csv(tiny_run, 1, "guided", set_cell(2, 2, "0.5"), fix_hash=False)
    check_rejected(cli, tiny_run, "generations/gen_0001/guided.csv, generation 1: changed "
                   "after completion (sha256 mismatch)")


def test_file_added_after_completion(cli, tiny_run):
    (tiny_run / "generations" / "gen_0000" / "notes.txt").write_text("hello")
    check_rejected(cli, tiny_run, "generations/gen_0000/notes.txt, generation 0: file added "
                   "after the generation was completed")


def test_not_a_run_directory(cli, tmp_path):
    res = cli("validate", tmp_path / "nope")
    assert res.code == 1
    assert "no such run directory" in res.err
    res = cli("summarize", tmp_path / "nope")
    assert res.code == 2 and "Traceback" not in res.err


def test_validate_json_lists_every_problem(cli, tiny_run):
    edit_csv(tiny_run, 1, "guided", set_cell(4, 2, "blurry"))
    edit_csv(tiny_run, 2, "probe_w1", set_cell(3, 3, "inf"))
    res = cli("validate", tiny_run, "--json")
    assert res.code == 1
    report = json.loads(res.out)
    assert report["valid"] is False
    got = {(p["file"], p["generation"], p["column"]) for p in report["problems"]}
    assert got == {("generations/gen_0001/guided.csv", 1, "t1"),
                   ("generations/gen_0002/probe_w1.csv", 2, "t2")}
