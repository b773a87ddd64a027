"""The report's finetuning section: each generation's artifacts/training.json (written by
the chain runner's SD backend) as a table and loss curves; no section without records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qtrait.report.sections import training_section
from qtrait.rundir import RunWriter, make_manifest, open_run


def write_run(root, records: dict) -> None:
    rng = np.random.default_rng(0)
    w = RunWriter.create(root, make_manifest("t", {"name": "t", "cfg_scale": 3.0,
                                                   "anchor": "base"}, ["a"],
                                             producer_name="test"))
    for g in range(3):
        table = pd.DataFrame({"concept": ["c"] * 5, "image_id": [f"{g}-{i}" for i in range(5)],
                              "a": rng.normal(size=5)})
        arts = {"training.json": records[g]} if g in records else {}
        w.write_generation(g, {"guided": table}, arts)


def test_training_records_become_a_table_and_a_figure(tmp_path):
    loss = list(np.linspace(1.0, 0.1, 20))
    rec = {"steps": 20, "batch_size": 4, "loss": loss, "learning_rate": [1e-4] * 20,
           "lora_rank": 4, "lora_alpha": 8.0, "mixed_precision": "bf16", "seconds": 2.5}
    write_run(tmp_path / "r", {1: json.dumps(rec).encode(), 2: b"{not json"})
    sec = training_section(open_run(tmp_path / "r"))
    tables = [b for b in sec.blocks if type(b).__name__ == "Table"]
    figs = [b for b in sec.blocks if type(b).__name__ == "Figure"]
    notes = [b.text for b in sec.blocks if type(b).__name__ == "Text"]
    row = tables[0].data.iloc[0]
    assert len(tables[0].data) == 1 and row["generation"] == 1
    # final loss: the mean of the last 10% of the steps (2 of 20)
    assert row["final loss"] == pytest.approx(np.mean(loss[-2:]))
    assert row["first loss"] == 1.0 and row["peak learning rate"] == 1e-4
    assert figs and figs[0].data[:4] == b"\x89PNG"
    assert any("generations 2" in t for t in notes)      # the unreadable record is named


def test_no_records_no_section(tmp_path):
    write_run(tmp_path / "r", {})
    assert training_section(open_run(tmp_path / "r")) is None
