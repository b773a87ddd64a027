"""The ``qtrait`` command: conventions shared by every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qtrait.cli.common import parse_generations
from qtrait.errors import QtraitError
from tests.helpers import EXAMPLE_RUN, ROOT, snapshot


def test_summarize_human_output(cli, tiny_run):
    res = cli("summarize", tiny_run)
    assert res.code == 0, res.err
    for section in ("run tiny", "Diversity over the 2 trait axes", "total variance tr(S)",
                    "Guided set: variance relative to generation 0",
                    "Selection: variance ratio guided / w=1 probe",
                    "Realized heritability (regression from base"):
        assert section in res.out


def test_summarize_json_is_one_object(cli, tiny_run):
    res = cli("summarize", tiny_run, "--json")
    assert res.code == 0
    out = json.loads(res.out)
    assert set(out) == {"run_id", "anchor", "ci", "traits", "selection", "heritability",
                        "diversity", "notes"}
    row = out["traits"][0]
    assert set(row) >= {"generation", "set", "concept", "trait", "n", "mean", "mean_lo",
                        "mean_hi", "var", "var_lo", "var_hi", "exkurt"}
    # 3 generations x 3 sets x 2 concepts x 2 traits
    assert len(out["traits"]) == 36


def test_generation_ranges_use_slice_meaning(cli, tiny_run):
    out = json.loads(cli("summarize", tiny_run, "--generations", ":2", "--json").out)
    assert {r["generation"] for r in out["traits"]} == {0, 1}
    out = json.loads(cli("summarize", tiny_run, "--generations", "1:", "--json").out)
    assert {r["generation"] for r in out["traits"]} == {1, 2}


@pytest.mark.parametrize("text,message", [("3", "expected 'A:B'"), ("a:b", "integers"),
                                          ("2:1", "empty range"), ("-1:2", ">= 0")])
def test_bad_generation_ranges(text, message):
    with pytest.raises(QtraitError, match=message):
        parse_generations(text)


def test_generation_range_outside_the_run(cli, tiny_run):
    res = cli("summarize", tiny_run, "--generations", "5:9")
    assert res.code == 2
    assert "no complete generation in 5:9 (run tiny has generations 0..2)" in res.err


def test_save_writes_only_into_summaries(cli, tiny_run):
    before = snapshot(tiny_run)
    assert cli("summarize", tiny_run, "--save").code == 0
    after = snapshot(tiny_run)
    added = set(after) - set(before)
    assert added == {f"summaries/{n}.csv" for n in ("traits", "selection", "heritability",
                                                    "diversity")}
    assert {k: after[k] for k in before} == before
    assert cli("validate", tiny_run).code == 0


def test_env_json(cli):
    info = json.loads(cli("env", "--json").out)
    assert info["python"] == sys.version.split()[0]
    assert info["packages"]["qtrait"] is not None
    assert info["packages"]["numpy"] is not None


def test_usage_errors_are_one_line_without_traceback(cli, tmp_path):
    res = cli("summarize", tmp_path, "--ci", "1.5")
    assert res.code == 2 and res.err.startswith("error: --ci must be in (0, 1)")
    res = cli("no-such-command")
    assert res.code == 2 and "No such command" in res.err
    assert "Traceback" not in res.err


def test_qtrait_never_imports_torch():
    """The statistics CLI runs with torch made unimportable."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'torchvision', 'diffusers'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from qtrait.cli.main import main\n"
            f"rc = main(['summarize', {str(EXAMPLE_RUN)!r}, '--json'])\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'torch']\n"
            "sys.exit(rc)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["run_id"] == "chain_042"


def test_console_script_and_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "qtrait", "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0
    for command in ("import", "validate", "summarize", "env", "migrate"):
        assert command in res.stdout
