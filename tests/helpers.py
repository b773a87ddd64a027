"""Helpers shared by the tests: small runs on disk and folder snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from qtrait.rundir import RunWriter, make_manifest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RUN = ROOT / "data" / "runs" / "chain_042"      # a real toy chain (w = 7.5)
SIM_RUN = ROOT / "data" / "runs" / "sim_tilt_042"       # a simulated run with known truth

DESIGN = {"name": "tiny", "cfg_scale": 3.0, "cfg_schedule": "constant", "p_drop": 0.0,
          "anchor": "base"}


def set_table(rng, n: int, traits: list[str], concepts=("a", "b"), shift=0.0) -> pd.DataFrame:
    rows = n * len(concepts)
    df = pd.DataFrame(rng.normal(shift, 1.0, size=(rows, len(traits))), columns=traits)
    df.insert(0, "concept", np.repeat(concepts, n))
    return df


def write_tiny_run(path: Path, generations: int = 3, traits=("t1", "t2"), seed: int = 0,
                   probes: bool = True) -> Path:
    """A small valid run: ``generations`` generations, two concepts, probes."""
    rng = np.random.default_rng(seed)
    traits = list(traits)
    writer = RunWriter.create(path, make_manifest(path.name, DESIGN, traits,
                                                  producer_name="tests"))
    for g in range(generations):
        tables = {"guided": set_table(rng, 12, traits, shift=0.1 * g)}
        if probes:
            tables["probe_w1"] = set_table(rng, 5, traits)
            tables["probe_uncond"] = set_table(rng, 5, traits)
        writer.write_generation(g, tables)
    return path


def snapshot(path: Path) -> dict[str, str]:
    """Every file below ``path`` with the hash of its bytes (to assert nothing changed)."""
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}



_KILLER = textwrap.dedent("""
    import json, os, signal, sys
    import chain_runner.chain as chain
    from chain_runner.config import config_from_dict
    real = chain.make_backend

    def make_backend(config, progress):
        backend = real(config, progress)
        original, calls = backend.sample, {"n": 0}

        def sample(*args, **kwargs):
            calls["n"] += 1
            # generation 0 samples 2 probe sets; generations 1, 2 sample 3 sets each:
            # call 7 is generation 2's w = 1 probe, after its guided set
            if calls["n"] == 7:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        backend.sample = sample
        return backend

    chain.make_backend = make_backend
    chain.run_chain(config_from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)
""")


def run_chain_killed_mid_generation_2(raw_config: dict, out: Path):
    """Run a chain in a subprocess that SIGKILLs itself in generation 2 (after its guided
    set, before its probes); returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", _KILLER, json.dumps(raw_config), str(out)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
