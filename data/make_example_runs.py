"""Regenerate the shipped example runs in data/runs/ (deterministic, seeded).

Real chains of the CPU miniature chain (chain_runner, backend ``toy``), one per config in
data/chains/:

* ``chain_042``: constant guidance w = 7.5 (the README's embedded default);
* ``chain_042_redifine``: ReDiFine at w = 7.5 (condition drop 0.2 + linear decay to 1);
* ``chain_w1``, ``chain_w3``: constant guidance at w = 1 and 3.

They ship as traits and image grids; the resume state (training images, LoRA weights) is
not committed. And one simulated run with known truth:

* ``sim_tilt_042``: :mod:`qtrait.simulate`, tilt selection at w = 3, two concepts.

    python data/make_example_runs.py                 # everything into data/runs
    python data/make_example_runs.py --only sim      # only the simulated run
    python data/make_example_runs.py --out DIR       # elsewhere
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from qtrait.rundir import layout
from qtrait.simulate import default_truth, write_simulated_run
from qtrait.theory.schedules import GuidanceSchedule

HERE = Path(__file__).resolve().parent
CHAINS = ("chain_042", "chain_042_redifine", "chain_w1", "chain_w3")

#: name -> design of each simulated example run
SIMULATED = {
    "sim_tilt_042": dict(generations=10, images=300, probe_w1=40, probe_uncond=40,
                         guidance=GuidanceSchedule("constant", 3.0), anchor="base",
                         concepts=("cat", "dog"), seed=42),
}


def make_simulated(out_root: Path) -> list[Path]:
    paths = []
    for name, design in SIMULATED.items():
        out = out_root / name
        if out.exists():
            shutil.rmtree(out)
        write_simulated_run(out, default_truth(**design), run_id=name)
        paths.append(out)
    return paths


def make_chains(out_root: Path, names=CHAINS) -> list[Path]:
    from chain_runner.chain import run_chain
    from chain_runner.config import load_config

    paths = []
    for name in names:
        out = out_root / name
        if out.exists():
            shutil.rmtree(out)
        run_chain(load_config(HERE / "chains" / f"{name}.toml"), out)
        shutil.rmtree(out / layout.STATE)  # private resume state: not shipped
        paths.append(out)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "runs")
    parser.add_argument("--only", choices=["sim", "chains"], default=None)
    args = parser.parse_args()
    made = []
    if args.only in (None, "sim"):
        made += make_simulated(args.out)
    if args.only in (None, "chains"):
        made += make_chains(args.out)
    for path in made:
        print(f"wrote {path}")
