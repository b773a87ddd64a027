"""``qtrait import``: long tables (CSV, Parquet) become run directories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qtrait.rundir import open_run
from tests.helpers import snapshot

META_TOML = """
name = "imported_chain"
cfg_scale = 7.5
cfg_schedule = "linear"
p_drop = 0.1
anchor = "previous"
base_model = "sd-1.5"
"""


def long_table(rng, generations=3, n=10, sets=("guided", "probe_w1"), concepts=("x", "y")):
    frames = []
    for g in range(generations):
        for s in sets:
            for c in concepts:
                frames.append(pd.DataFrame({
                    "generation": g, "set": s, "concept": c,
                    "image_id": [f"{g}-{s}-{c}-{i}" for i in range(n)],
                    "clip_pc1": rng.normal(size=n), "saturation": rng.uniform(size=n)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def table(tmp_path):
    df = long_table(np.random.default_rng(1))
    path = tmp_path / "traits.csv"
    df.to_csv(path, index=False)
    return path, df


@pytest.fixture
def meta(tmp_path):
    path = tmp_path / "meta.toml"
    path.write_text(META_TOML)
    return path


def test_import_csv_roundtrip(cli, tmp_path, table, meta):
    path, df = table
    out = tmp_path / "run"
    res = cli("import", path, "--out", out, "--meta", meta, "--json")
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["generations"] == [0, 1, 2]
    assert info["traits"] == ["clip_pc1", "saturation"]
    run = open_run(out)
    assert run.run_id == "imported_chain"
    assert run.design["cfg_scale"] == 7.5 and run.design["anchor"] == "previous"
    assert run.design["cfg_schedule"] == "linear" and run.design["p_drop"] == 0.1
    assert run.design["images_per_generation"] == 20
    assert run.design["probe_sizes"] == {"probe_w1": 20, "probe_uncond": 0}
    got = run.long_table().sort_values("image_id").reset_index(drop=True)
    want = df.sort_values("image_id").reset_index(drop=True)[got.columns]
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


def test_import_parquet_with_options_and_defaults(cli, tmp_path):
    df = long_table(np.random.default_rng(2), sets=("guided",), concepts=("x",))
    df = df.drop(columns=["set", "concept", "image_id"])
    path = tmp_path / "traits.parquet"
    df.to_parquet(path)
    out = tmp_path / "run"
    res = cli("import", path, "--out", out, "--name", "pq", "--cfg-scale", "2",
              "--cfg-schedule", "constant", "--p-drop", "0", "--anchor", "base")
    assert res.code == 0, res.err
    run = open_run(out)
    assert run.sets(0) == ["guided"]
    assert set(run.table(0, "guided")["concept"]) == {"all"}
    np.testing.assert_array_equal(run.table(1, "guided")["clip_pc1"].to_numpy(),
                                  df[df.generation == 1]["clip_pc1"].to_numpy())


def test_options_override_meta_json(cli, tmp_path, table):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"name": "j", "cfg_scale": 3, "cfg_schedule": "constant",
                                "p_drop": 0.0, "anchor": "base"}))
    res = cli("import", table[0], "--out", tmp_path / "run", "--meta", meta,
              "--cfg-scale", "5")
    assert res.code == 0, res.err
    assert open_run(tmp_path / "run").design["cfg_scale"] == 5.0


def import_fails(cli, tmp_path, table_path, *expected, args=()):
    out = tmp_path / "out_run"
    res = cli("import", table_path, "--out", out, "--name", "n", "--cfg-scale", "3",
              "--cfg-schedule", "constant", "--p-drop", "0", "--anchor", "base", *args)
    assert res.code == 2, res
    for e in expected:
        assert e in res.err, f"{e!r} not in {res.err}"
    assert "Traceback" not in res.err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out_run")]
    return res.err


def write(tmp_path, df, name="bad.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_import_rejects_negative_generation(cli, tmp_path):
    df = long_table(np.random.default_rng(0))
    df.loc[4, "generation"] = -1
    import_fails(cli, tmp_path, write(tmp_path, df), "column 'generation': negative "
                 "generation numbers (line 6)")


def test_import_rejects_non_integer_generation(cli, tmp_path):
    df = long_table(np.random.default_rng(0)).astype({"generation": object})
    df.loc[2, "generation"] = "first"
    import_fails(cli, tmp_path, write(tmp_path, df), "generation must be an integer (line 4)")


def test_import_rejects_unknown_set(cli, tmp_path):
    df = long_table(np.random.default_rng(0))
    df.loc[[3, 7], "set"] = "probe_w2"
    import_fails(cli, tmp_path, write(tmp_path, df), "column 'set': unknown set name(s) "
                 "['probe_w2'] (lines 5, 9)")


def test_import_rejects_non_numeric_and_nan(cli, tmp_path):
    df = long_table(np.random.default_rng(0)).astype({"saturation": object})
    df.loc[10, "saturation"] = "high"
    df.loc[11, "clip_pc1"] = np.nan
    err = import_fails(cli, tmp_path, write(tmp_path, df),
                       "column 'saturation': non-numeric values (line 12, e.g. 'high')",
                       "column 'clip_pc1': missing or NaN values (line 13)")
    assert err.count("\n") >= 3  # both problems reported, one line each


def test_import_rejects_inf(cli, tmp_path):
    df = long_table(np.random.default_rng(0))
    df.loc[0, "clip_pc1"] = np.inf
    import_fails(cli, tmp_path, write(tmp_path, df), "column 'clip_pc1': infinite values")


def test_import_rejects_single_image_set(cli, tmp_path):
    df = long_table(np.random.default_rng(0))
    keep = ~((df.generation == 1) & (df.set == "probe_w1") & (df.concept == "y"))
    df = pd.concat([df[keep], df[~keep].head(1)])
    import_fails(cli, tmp_path, write(tmp_path, df), "generation 1: set 'probe_w1', "
                 "concept 'y' has 1 image; at least 2 are needed")


def test_import_rejects_missing_generation(cli, tmp_path):
    df = long_table(np.random.default_rng(0))
    df = df[df.generation != 1]
    import_fails(cli, tmp_path, write(tmp_path, df), "missing generation(s) [1]")


def test_import_rejects_missing_generation_column(cli, tmp_path):
    df = long_table(np.random.default_rng(0)).drop(columns=["generation"])
    import_fails(cli, tmp_path, write(tmp_path, df), "missing required column 'generation'")


def test_import_rejects_binary_and_unreadable_tables(cli, tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    import_fails(cli, tmp_path, path, "unreadable CSV table: binary data")
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    import_fails(cli, tmp_path, path, "unreadable Parquet table")


def test_import_requires_design_fields(cli, tmp_path, table):
    res = cli("import", table[0], "--out", tmp_path / "run", "--name", "x")
    assert res.code == 2
    assert "design field 'cfg_scale': missing (required" in res.err
    assert not (tmp_path / "run").exists()


def test_import_rejects_unknown_meta_field(cli, tmp_path, table):
    meta = tmp_path / "meta.toml"
    meta.write_text(META_TOML + 'cfg_sclae = 3\n')
    res = cli("import", table[0], "--out", tmp_path / "run", "--meta", meta)
    assert res.code == 2
    assert "unknown meta field(s) ['cfg_sclae']" in res.err
    assert "hint: known fields:" in res.err


def test_import_never_touches_an_existing_run(cli, tmp_path, table, meta, tiny_run):
    before = snapshot(tiny_run)
    res = cli("import", table[0], "--out", tiny_run, "--meta", meta)
    assert res.code == 2 and "already exists and is not empty" in res.err
    assert snapshot(tiny_run) == before


def test_import_requires_the_anchor_explicitly(cli, tmp_path, table):
    res = cli("import", table[0], "--out", tmp_path / "run", "--name", "x", "--cfg-scale", "3",
              "--cfg-schedule", "constant", "--p-drop", "0")
    assert res.code == 2
    assert "design field 'anchor': missing (required; give it in --meta or as --anchor)" \
        in res.err


def test_import_rejects_duplicated_columns(cli, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("generation,pc1,pc1\n0,1,2\n0,3,4\n")
    import_fails(cli, tmp_path, path, "duplicated column name(s) ['pc1']")


def test_probe_sizes_are_the_largest_probe_sets(cli, tmp_path, meta):
    df = long_table(np.random.default_rng(4), sets=("guided", "probe_w1", "probe_uncond"))
    df = df[~((df.generation == 0) & (df.set != "guided"))]  # no base-model probes
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    assert cli("import", path, "--out", tmp_path / "run", "--meta", meta).code == 0
    assert open_run(tmp_path / "run").design["probe_sizes"] == {"probe_w1": 20,
                                                                 "probe_uncond": 20}


def test_source_producer_is_recorded_and_picks_the_calibration(cli, tmp_path, table, meta):
    """An imported table of a miniature chain keeps its maker as ``producer.source``, and
    the zero-shot calibration follows it; without it the run gets none."""
    from qtrait.theory.calibration import MINIATURE, NONE, for_run
    path, _ = table
    with_source = tmp_path / "meta_src.toml"
    with_source.write_text(META_TOML + 'source_producer = "chain_runner (toy)"\n')
    res = cli("import", path, "--out", tmp_path / "a", "--meta", with_source)
    assert res.code == 0, res.err
    a = open_run(tmp_path / "a").manifest["producer"]
    assert a["name"] == "qtrait import" and a["source"] == "chain_runner (toy)"
    assert for_run({"producer": a})[0] is MINIATURE
    res = cli("import", path, "--out", tmp_path / "b", "--meta", meta)
    b = open_run(tmp_path / "b").manifest["producer"]
    assert "source" not in b and for_run({"producer": b})[0] is NONE
    bad = tmp_path / "meta_bad.toml"
    bad.write_text(META_TOML + "source_producer = 3\n")
    res = cli("import", path, "--out", tmp_path / "c", "--meta", bad)
    assert res.code == 2 and "source_producer" in res.err
