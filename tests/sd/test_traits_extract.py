"""``qtrait traits extract`` on a folder chain written by "another tool"."""

from __future__ import annotations

import json
import shutil

import numpy as np

from qtrait.rundir import open_run
from tests.sd.conftest import make_image_folder


def folder_chain(root, n_gen=3):
    """gen_0: an imagefolder whose metadata labels 2 images per concept as probe_w1;
    gen_1...: sub-folders guided/ and probe_w1/ (captions in metadata.jsonl)."""
    g0 = make_image_folder(root / "gen_0000", seed=0)
    rows = [json.loads(line) for line in (g0 / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        if r["file_name"].endswith(("_04.png", "_05.png")):
            r["set"] = "probe_w1"
    (g0 / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for g in range(1, n_gen):
        make_image_folder(root / f"gen_{g}" / "guided", n_per=4, seed=g)
        make_image_folder(root / f"gen_{g}" / "probe_w1", n_per=2, seed=100 + g)
    (root / "notes").mkdir()  # a folder without a number is not a generation
    return root


def test_traits_extract_folder_chain(sd_assets, tmp_path, cli):
    chain = folder_chain(tmp_path / "chain")
    cfg = tmp_path / "extract.toml"
    cfg.write_text(f'[features]\nclip_config = "{sd_assets["clip_config"]}"\n'
                   f'clip_pretrained = "{sd_assets["clip_ckpt"]}"\ndevice = "cpu"\n'
                   '[design]\nname = "other-tool"\ncfg_scale = 7.5\n')
    res = cli("traits", "extract", chain, "--out", tmp_path / "run", "--config", cfg,
              "--pca-axes", "3", "--quiet")
    assert res.code == 0, res.err
    run = open_run(tmp_path / "run")
    assert run.generations == [0, 1, 2]
    assert run.design["cfg_scale"] == 7.5 and run.run_id == "other-tool"
    # no unconditional probe at generation 0, so no concept axis
    assert run.traits[:4] == ["pc_1", "pc_2", "pc_3", "saturation"]
    assert run.traits[-1] == "clip_score"
    assert len(run.table(0, "guided")) == 8 and len(run.table(0, "probe_w1")) == 4
    assert len(run.table(2, "guided")) == 8 and run.sets(2) == ["guided", "probe_w1"]
    np.testing.assert_allclose(run.table(0, "guided")[["pc_1", "pc_2"]].var(), 1.0, rtol=1e-4)
    assert sorted(set(run.table(1, "guided")["concept"])) == ["blue disc", "red square"]
    m = json.loads((tmp_path / "run" / "generations" / "gen_0002" / "artifacts"
                    / "metrics.json").read_text())
    assert m["frechet_distance"] > 0 and "clip_score_variant" in m
    # same images, same traits: the extraction is deterministic
    res = cli("traits", "extract", chain, "--out", tmp_path / "run2", "--config", cfg,
              "--pca-axes", "3", "--quiet")
    assert res.code == 0
    assert open_run(tmp_path / "run2").long_table().equals(run.long_table())


def test_traits_extract_errors(tmp_path, cli):
    res = cli("traits", "extract", tmp_path / "none", "--out", tmp_path / "r",
              "--extractor", "efficientnet_lite0")
    assert res.code == 2 and res.err.startswith("error: no such chain folder")
    chain = folder_chain(tmp_path / "chain", n_gen=2)
    shutil.rmtree(chain / "gen_0000")
    res = cli("traits", "extract", chain, "--out", tmp_path / "r", "--extractor",
              "efficientnet_lite0")
    assert res.code == 2 and "has no generation 0" in res.err
    res = cli("traits", "extract", chain, "--out", tmp_path / "r", "--extractor", "vgg")
    assert res.code == 2 and "features.extractor must be one of" in res.err
