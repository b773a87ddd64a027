"""Pack the benchmark's chains (run directories of ``qtrait chain sweep``) into
``data/benchmark/``: one Parquet file of per-image traits per chain, one JSON of
manifests.

    python data/benchmark/pack.py runs/benchmark [data/benchmark/sweep.toml]

* ``chains/<chain>.parquet``: columns generation, set, concept, and the traits of
  :data:`TRAITS` (float32: 7 significant digits, far below any sampling error here),
  every image of every set (guided 898, probes 112 + 112) of every generation; one file
  per chain, so that a batch of new chains adds files and rewrites none (about 1 MB each);
* ``chains.json``: per chain its design (the manifest's), trait axes, generations and
  wall time.

Given a sweep file, only its chains are packed (the benchmark's; the pilot's other
designs stay out). :func:`open_chain` turns one packed chain back into a run directory
(``qtrait import``), which every qtrait command reads. Only complete chains are packed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "chains"
CHAINS = HERE / "chains.json"
#: the trait axes (the horizon's traits) and the saturation (exaggeration)
TRAITS = ("pc_1", "pc_2", "pc_3", "pc_4", "pc_5", "pc_6", "pc_7", "pc_8", "concept_axis",
          "saturation")


def _wall_seconds(path: Path) -> float:
    from datetime import datetime

    start = json.loads((path / "manifest.json").read_text())["created_at"]
    last = sorted((path / "generations").glob("gen_*/COMPLETE.json"))[-1]
    end = json.loads(last.read_text())["completed_at"]

    def parse(x):
        return datetime.fromisoformat(x.replace("Z", "+00:00"))

    return round((parse(end) - parse(start)).total_seconds(), 1)


def pack(runs_dir: Path, sweep: Path | None = None, generations: int = 16) -> tuple[int, int]:
    from qtrait.errors import QtraitError
    from qtrait.rundir import open_run

    wanted = None
    if sweep is not None:
        from chain_runner.sweep import load_sweep

        wanted = {c.name for c in load_sweep(sweep).chains}
    FOLDER.mkdir(exist_ok=True)
    chains = json.loads(CHAINS.read_text()) if CHAINS.exists() else {}
    for path in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        if wanted is not None and path.name not in wanted:
            continue
        try:
            run = open_run(path)
        except QtraitError:
            continue
        if len(run.generations) < generations or run.incomplete:
            continue
        df = run.long_table()[["generation", "set", "concept", *TRAITS]].copy()
        for t in TRAITS:
            df[t] = df[t].astype(np.float32)
        df["generation"] = df["generation"].astype(np.int16)
        for c in ("set", "concept"):
            df[c] = df[c].astype("category")
        df.to_parquet(FOLDER / f"{run.run_id}.parquet", compression="zstd", index=False)
        m = run.manifest
        chains[run.run_id] = {"design": m["design"], "axes": m["traits"].get("axes"),
                              "generations": len(run.generations),
                              "wall_seconds": _wall_seconds(path),
                              "producer": m.get("producer", {}).get("name")}
    if wanted is not None:
        chains = {k: v for k, v in chains.items() if k in wanted}
        for stale in FOLDER.glob("*.parquet"):      # a design dropped from the sweep
            if stale.stem not in wanted:
                stale.unlink()
    CHAINS.write_text(json.dumps(chains, indent=1, sort_keys=True) + "\n")
    size = sum((FOLDER / f"{k}.parquet").stat().st_size for k in chains)
    return len(chains), size


def chain_names() -> list[str]:
    return sorted(json.loads(CHAINS.read_text()))


def open_chain(name: str, out: Path):
    """The packed chain ``name`` as a run directory at ``out`` (made once; reused)."""
    from qtrait.rundir import open_run
    from qtrait.rundir.table import import_table

    out = Path(out)
    if (out / "manifest.json").exists():
        return open_run(out)
    meta = json.loads(CHAINS.read_text())[name]
    rows = pd.read_parquet(FOLDER / f"{name}.parquet").astype({"set": str, "concept": str})
    tmp = out.with_suffix(".parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(tmp, index=False)
    design = {k: v for k, v in meta["design"].items() if v is not None}
    design["name"] = name
    try:
        return import_table(tmp, out, {**design, "run_id": name, "axes": meta["axes"],
                                       "source_producer": meta["producer"]})
    finally:
        tmp.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    n, size = pack(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
    print(f"packed {n} chains: {FOLDER} ({size / 1e6:.1f} MB), {CHAINS}")
