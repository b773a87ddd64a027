"""Regenerate the shipped example runs in data/runs/ (deterministic, seeded).

Until the CPU miniature chain ships real runs, ``data/runs/chain_042`` is a simulated
chain from :mod:`qtrait.simulate` (tilt selection at w = 3, anchor = base, two concepts,
three traits with known heritability and mutation). Its manifest records the true
parameters and the generating moments of every generation.

    python data/make_example_runs.py            # writes data/runs/chain_042
    python data/make_example_runs.py --out DIR  # elsewhere (the tests compare the two)
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from qtrait.simulate import default_truth, write_simulated_run
from qtrait.theory.schedules import GuidanceSchedule

HERE = Path(__file__).resolve().parent

#: name -> design of each shipped example run
EXAMPLES = {
    "chain_042": dict(generations=10, images=300, probe_w1=40, probe_uncond=40,
                      guidance=GuidanceSchedule("constant", 3.0), anchor="base",
                      concepts=("cat", "dog"), seed=42),
}


def make(out_root: Path) -> list[Path]:
    paths = []
    for name, design in EXAMPLES.items():
        out = out_root / name
        if out.exists():
            shutil.rmtree(out)
        write_simulated_run(out, default_truth(**design), run_id=name)
        paths.append(out)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "runs")
    for path in make(parser.parse_args().out):
        print(f"wrote {path}")
