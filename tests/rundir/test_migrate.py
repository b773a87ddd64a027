"""Schema dispatch and the migration path, on the frozen version-1 fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qtrait.errors import QtraitError
from qtrait.rundir import Migration, migrate, open_run
from qtrait.rundir import manifest as manifest_mod
from tests.helpers import snapshot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_v1"


def v1_to_v2(m: dict) -> dict:
    """A plausible future change: guidance settings grouped under one key."""
    d = m["design"]
    d["guidance"] = {"scale": d["cfg_scale"], "schedule": d["cfg_schedule"]}
    return m


@pytest.fixture
def schema_v2(monkeypatch):
    """Pretend this qtrait writes schema version 2, with a registered 1 -> 2 step."""
    monkeypatch.setattr(manifest_mod, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(migrate, "MIGRATIONS", {})
    migrate.register(Migration(1, "group guidance settings under design.guidance", v1_to_v2))


@pytest.fixture
def run_v1(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "run_v1"))


def test_version_1_fixture_reads_with_the_current_reader():
    run = open_run(FIXTURE)
    assert run.schema_version == 1
    assert run.generations == [0, 1]
    assert run.traits == ["pc1", "contrast"]
    assert run.design["cfg_schedule"] == "linear"
    assert run.sets(0) == ["guided", "probe_w1", "probe_uncond"]


def test_reader_migrates_in_memory_without_touching_disk(schema_v2, run_v1):
    before = snapshot(run_v1)
    run = open_run(run_v1)
    assert run.schema_version == 2
    assert run.design["guidance"] == {"scale": 7.5, "schedule": "linear"}
    assert snapshot(run_v1) == before


def test_migrate_command_upgrades_on_disk(schema_v2, run_v1, cli):
    original = (run_v1 / "manifest.json").read_bytes()
    res = cli("migrate", run_v1, "--dry-run")
    assert res.code == 0 and "would migrate 1 -> 2" in res.out
    assert (run_v1 / "manifest.json").read_bytes() == original

    res = cli("migrate", run_v1)
    assert res.code == 0 and "migrated 1 -> 2" in res.out
    assert (run_v1 / "manifest.v1.json").read_bytes() == original
    on_disk = json.loads((run_v1 / "manifest.json").read_text())
    assert on_disk["schema_version"] == 2
    assert on_disk["design"]["guidance"]["scale"] == 7.5
    assert cli("validate", run_v1).code == 0
    assert "nothing to do" in cli("migrate", run_v1).out


def test_newer_schema_is_refused(run_v1, cli):
    m = json.loads((run_v1 / "manifest.json").read_text())
    m["schema_version"] = 2
    (run_v1 / "manifest.json").write_text(json.dumps(m))
    res = cli("validate", run_v1)
    assert res.code == 1
    assert "unsupported schema version 2: this qtrait reads versions up to 1" in res.err
    res = cli("migrate", run_v1)
    assert res.code == 2 and "hint: upgrade qtrait" in res.err


def test_missing_migration_step_is_refused(monkeypatch):
    monkeypatch.setattr(manifest_mod, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(migrate, "MIGRATIONS", {1: Migration(1, "x", v1_to_v2)})
    with pytest.raises(QtraitError, match="no migration from version 2 to 3"):
        migrate.path_to_current(1)
