"""Sweeps: a grid of designs, one chain each, on local Ray and without Ray."""

from __future__ import annotations

import json

import pytest

from chain_runner.sweep import load_sweep, run_sweep
from qtrait.errors import QtraitError
from qtrait.rundir import open_run


def write_sweep(tmp_path, cache_dir, engine):
    path = tmp_path / "sweep.toml"
    path.write_text(f'''name = "grid"
engine = "{engine}"
cpus = 2
[base]
generations = 2
images = 200
[base.sampler]
steps = 4
[base.finetune]
steps = 5
[base.base]
train_steps = 300
[base.traits]
classifier_steps = 200
[base.runtime]
threads = 1
cache_dir = "{cache_dir}"
[grid]
"design.cfg_scale" = [1.0, 5.0]
seed = [1, 2]
''')
    return path


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """Train the toy base model once, before chains run in parallel."""
    from chain_runner.config import config_from_dict
    from chain_runner.toy.backend import ToyBackend

    cache = tmp_path_factory.mktemp("sweep-cache")
    ToyBackend(config_from_dict({"base": {"train_steps": 300}, "runtime": {
        "threads": 1, "cache_dir": str(cache)}, "traits": {"classifier_steps": 200}}),
        progress=False).prepare()
    return cache


def check_runs(out, results):
    assert [r["name"] for r in results] == [
        "grid-000-cfg_scale=1.0-seed=1", "grid-001-cfg_scale=1.0-seed=2",
        "grid-002-cfg_scale=5.0-seed=1", "grid-003-cfg_scale=5.0-seed=2"]
    for r in results:
        run = open_run(out / r["name"])
        assert run.generations == [0, 1]
        assert run.design["cfg_scale"] == float(r["name"].split("=")[1].split("-")[0])
    status = json.loads((out / "sweep_status.json").read_text())
    assert [c["status"] for c in status["chains"]] == [r["status"] for r in results]


# ray's own start-up emits deprecation warnings from its dependencies
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_four_chain_sweep_on_local_ray(tmp_path, warm_cache):
    pytest.importorskip("ray")
    sweep = load_sweep(write_sweep(tmp_path, warm_cache, "ray"))
    results = run_sweep(sweep, tmp_path / "out", progress=False)
    assert all(r["status"] == "ran" for r in results)
    check_runs(tmp_path / "out", results)


def test_sweep_locally_is_resumable(tmp_path, warm_cache, cli):
    import shutil

    path = write_sweep(tmp_path, warm_cache, "local")
    sweep = load_sweep(path)
    first = run_sweep(sweep, tmp_path / "out", progress=False)
    check_runs(tmp_path / "out", first)
    # lose chain 1's last generation (as after a kill) and run the sweep again
    run1 = tmp_path / "out" / first[1]["name"]
    before = open_run(run1).long_table()
    shutil.rmtree(run1 / "generations" / "gen_0001")
    res = cli("chain", "sweep", path, "--out", tmp_path / "out", "--quiet")
    assert res.code == 0, res.err
    assert "1 resumed, 3 done" in res.out
    assert open_run(run1).long_table().equals(before)  # resumed to the same result


def test_sweep_errors(tmp_path, warm_cache):
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\n"design.cfg_scal" = [1.0]\n')
    with pytest.raises(QtraitError, match=r"grid point 0 .*unknown key\(s\) \['cfg_scal'\]"):
        load_sweep(bad)
    bad.write_text('nme = "x"\n')
    with pytest.raises(QtraitError, match=r"unknown sweep key\(s\) \['nme'\]"):
        load_sweep(bad)
    with pytest.raises(QtraitError, match="no such sweep file"):
        load_sweep(tmp_path / "missing.toml")


def test_named_designs_keep_their_chain_names_when_seeds_are_added(tmp_path):
    """[designs] crossed with the grid; names carry the design, not an index, so a sweep
    extended with seeds (the benchmark: pilot on seed 1, then seeds 2 and 3) finds the
    chains it already ran."""
    path = tmp_path / "d.toml"
    text = '''name = "b"
[base]
generations = 3
[designs.w1_5]
"design.cfg_scale" = 1.5
[designs.weak]
"design.cfg_scale" = 3.0
"finetune.steps" = 100
[grid]
seed = SEEDS
'''
    path.write_text(text.replace("SEEDS", "[1]"))
    one = load_sweep(path).chains
    path.write_text(text.replace("SEEDS", "[1, 2, 3]"))
    three = load_sweep(path).chains
    assert [c.name for c in one] == ["b-w1_5-seed=1", "b-weak-seed=1"]
    assert {c.name for c in one} <= {c.name for c in three} and len(three) == 6
    weak = next(c for c in three if c.name == "b-weak-seed=2")
    assert weak.design.cfg_scale == 3.0 and weak.finetune.steps == 100 and weak.seed == 2
    path.write_text('[designs]\nw1 = 1.5\n')
    with pytest.raises(QtraitError, match=r"\[designs\] must hold one table"):
        load_sweep(path)
    path.write_text('[designs.x]\n"design.cfg_scal" = 1.0\n')
    with pytest.raises(QtraitError, match=r"design 'x'.*unknown key"):
        load_sweep(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_crashed_chain_is_reported_with_its_log_and_resumes_on_retry(tmp_path, warm_cache,
                                                                        cli):
    """Local Ray, 4 chains, a crash injected into one chain's generation 1 (a worker setup
    hook): the other 3 finish, the failure is reported with its error and log, and the
    next run of the sweep resumes the crashed chain from its last complete generation."""
    pytest.importorskip("ray")
    from tests.helpers import ROOT

    path = write_sweep(tmp_path, warm_cache, "ray")
    path.write_text(path.read_text().replace('cpus = 2\n', 'cpus = 2\nretries = 0\n'))
    sweep = load_sweep(path)
    assert sweep.retries == 0 and sweep.cpus_per_chain == 1
    env = {"env_vars": {"PYTHONPATH": str(ROOT), "QTRAIT_TEST_CRASH_CHAIN": "-001-",
                        "QTRAIT_TEST_CRASH_MARKER": str(tmp_path / "crashed")},
           "worker_process_setup_hook": "tests.sd.crash_hook.install"}
    out = tmp_path / "out"
    first = run_sweep(sweep, out, progress=False, runtime_env=env)
    status = {r["name"]: r for r in first}
    crashed = status["grid-001-cfg_scale=1.0-seed=2"]
    assert [r["status"] for r in first].count("ran") == 3 and crashed["status"] == "failed"
    assert crashed["error"] == "RuntimeError: injected crash in generation 1"
    log = (out / crashed["name"] / "logs" / "attempt_1.log").read_text()
    assert crashed["log"].endswith("logs/attempt_1.log") and "Traceback" in log
    assert "injected crash in generation 1" in log and crashed["generations"] == 1
    assert open_run(out / crashed["name"]).generations == [0]      # generation 0 kept
    # the summary names the failure and its log
    from chain_runner.sweep import summary
    text = summary(first)
    assert "error: RuntimeError: injected crash" in text and "attempt_1.log" in text
    # the sweep again (the crash does not repeat): the failed chain resumes, the rest done
    res = cli("chain", "sweep", path, "--out", out, "--quiet")
    assert res.code == 0, res.err
    assert "1 resumed, 3 done" in res.out
    assert open_run(out / crashed["name"]).generations == [0, 1]
    assert (out / crashed["name"] / "logs" / "attempt_2.log").exists()


def test_a_crashed_chain_is_retried_within_the_sweep(tmp_path, warm_cache, monkeypatch):
    """retries = 1 (the default), local engine: the crashed chain is run again at once and
    resumes from generation 1; both attempts' logs are kept in its folder."""
    import chain_runner.chain as chain
    from tests.sd import crash_hook

    monkeypatch.setenv("QTRAIT_TEST_CRASH_CHAIN", "-002-")
    monkeypatch.setenv("QTRAIT_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    monkeypatch.setattr(chain, "_generation", chain._generation)   # restored afterwards
    crash_hook.install()
    sweep = load_sweep(write_sweep(tmp_path, warm_cache, "local"))
    results = run_sweep(sweep, tmp_path / "out", progress=False)
    r = next(x for x in results if "-002-" in x["name"])
    assert r["status"] == "resumed" and [a["status"] for a in r["attempts"]] == [
        "failed", "resumed"]
    assert sorted(p.name for p in (tmp_path / "out" / r["name"] / "logs").iterdir()) == [
        "attempt_1.log", "attempt_2.log"]
    check_runs(tmp_path / "out", results)
