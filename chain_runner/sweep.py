"""``qtrait chain sweep SWEEP.toml``: a grid of designs, one chain each, run with Ray (one
chain per GPU on a cluster, or a local Ray instance sized for the machine) or, without
Ray, one after another in this process. Resumable: complete chains are skipped, interrupted
ones resumed. The sweep file::

    name = "cfg-grid"             # chain names: <name>-<index>-<key=value...>
    engine = "auto"               # auto (ray if installed) | ray | local
    address = ""                  # Ray cluster address ("auto" joins a running cluster);
                                  # empty: a local Ray instance
    cpus = 0                      # CPUs of the local Ray instance (0: min(2, cores))
    gpus_per_chain = 1.0          # GPUs per chain on Ray (used only if the cluster has GPUs)
    base_config = "chain.toml"    # the chain config every grid point starts from (or [base])
    [grid]                        # dotted chain-config keys -> lists of values
    "design.cfg_scale" = [1.0, 3.0, 7.5]
    "design.cfg_schedule" = ["constant", "linear"]
    "design.p_drop" = [0.0, 0.2]
    seed = [1, 2]

Instead of a full product, a sweep may list **named designs**, each a table of dotted
keys; the grid is then crossed with them (typically ``seed = [1, 2, 3]``), and a chain is
named ``<name>-<design>-<key=value...>``, without an index, so that adding seeds or
designs later leaves the names (and the finished chains) of the others as they were::

    [designs.w1_5]
    "design.cfg_scale" = 1.5
    [designs.w7_5_linear]
    "design.cfg_scale" = 7.5
    "design.cfg_schedule" = "linear"
    [grid]
    seed = [1, 2, 3]
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrait.errors import QtraitError

from .config import ChainConfig, config_from_dict, read_toml

SWEEP_KEYS = {"name", "engine", "address", "cpus", "gpus_per_chain", "base_config", "base",
              "grid", "designs"}
STATUS_FILE = "sweep_status.json"


@dataclass
class Sweep:
    name: str
    engine: str
    address: str
    cpus: int
    gpus_per_chain: float
    chains: list[ChainConfig]


def _set(d: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    raw = read_toml(path, "sweep file")
    bad = [k for k in raw if k not in SWEEP_KEYS]
    if bad:
        raise QtraitError(f"unknown sweep key(s) {bad}", hint=f"known: {sorted(SWEEP_KEYS)}")
    base: dict = dict(raw.get("base", {}))
    if "base_config" in raw:
        base = {**read_toml(path.parent / raw["base_config"], "base config"), **base}
    grid = raw.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise QtraitError("[grid] must map chain-config keys to non-empty lists of values")
    name = str(raw.get("name", path.stem))
    designs = raw.get("designs")
    if designs is not None and (not isinstance(designs, dict) or not designs
                                or not all(isinstance(v, dict) for v in designs.values())):
        raise QtraitError("[designs] must hold one table of chain-config keys per design",
                          hint='e.g. [designs.w1_5] "design.cfg_scale" = 1.5')
    chains = []
    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    named = list(designs.items()) if designs else [(None, {})]
    for design_name, settings in named:
        for i, values in enumerate(points):
            d = copy.deepcopy(base)
            for k, v in settings.items():
                _set(d, k, v)
            for k, v in zip(keys, values):
                _set(d, k, v)
            label = "-".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values))
            head = f"{name}-{design_name}" if design_name else f"{name}-{i:03d}"
            d["name"] = head + (f"-{label}" if label else "")
            where = f"design {design_name!r}" if design_name else f"grid point {i}"
            try:
                chains.append(config_from_dict(d))
            except QtraitError as exc:
                raise QtraitError(f"{where} ({label}): {exc.message}", hint=exc.hint) from None
    engine = raw.get("engine", "auto")
    if engine not in ("auto", "ray", "local"):
        raise QtraitError(f"engine must be auto, ray or local, got {engine!r}")
    return Sweep(name, engine, str(raw.get("address", "")), int(raw.get("cpus", 0)),
                 float(raw.get("gpus_per_chain", 1.0)), chains)


def run_one(config_dict: dict, out: str) -> dict:
    """Run, resume or skip one chain; returns its status (never raises a QtraitError)."""
    from qtrait.rundir import open_run

    from .chain import resume_chain, run_chain

    config = config_from_dict(config_dict)
    out_path = Path(out)
    try:
        if out_path.exists() and any(out_path.iterdir()):
            before = len(open_run(out_path).generations)
            if before >= config.generations:
                return {"name": config.name, "status": "done", "generations": before}
            resume_chain(out_path, progress=False)
            status = "resumed"
        else:
            run_chain(config, out_path, progress=False)
            status = "ran"
        return {"name": config.name, "status": status,
                "generations": len(open_run(out_path).generations)}
    except QtraitError as exc:
        return {"name": config.name, "status": "failed", "error": exc.message,
                "generations": len(open_run(out_path).generations)
                if (out_path / "manifest.json").exists() else 0}


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_sweep(sweep: Sweep, out: str | Path, progress: bool = True,
              engine: str | None = None) -> list[dict]:
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine = engine or sweep.engine
    if engine == "auto":
        engine = "ray" if _ray_available() else "local"
    if engine == "ray" and not _ray_available():
        raise QtraitError("engine = \"ray\" but ray is not installed",
                          hint="pip install 'qtrait[sweep]', or use --engine local")
    jobs = [(c.to_dict(), str(out / c.name)) for c in sweep.chains]
    results = []
    bar = tqdm(total=len(jobs), desc=f"sweep {sweep.name} ({engine})", disable=not progress)
    if engine == "local":
        for cfg, path in jobs:
            results.append(run_one(cfg, path))
            bar.update(1)
    else:
        import ray

        started = False
        if not ray.is_initialized():
            if sweep.address:
                ray.init(address=sweep.address, log_to_driver=False)
            else:  # a local instance sized for small machines
                ray.init(num_cpus=sweep.cpus or min(2, os.cpu_count() or 1),
                         include_dashboard=False, log_to_driver=False)
            started = True
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            remote = ray.remote(num_cpus=1, num_gpus=sweep.gpus_per_chain if gpus else 0,
                                max_retries=0)(run_one)
            pending = [remote.remote(cfg, path) for cfg, path in jobs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                results.append(ray.get(done[0]))
                bar.update(1)
        finally:
            if started:
                ray.shutdown()
    bar.close()
    order = {c.name: i for i, c in enumerate(sweep.chains)}
    results.sort(key=lambda r: order[r["name"]])
    (out / STATUS_FILE).write_text(json.dumps({"sweep": sweep.name, "engine": engine,
                                               "chains": results}, indent=1))
    return results


def summary(results: list[dict]) -> str:
    width = max(len(r["name"]) for r in results)
    lines = [f"{'chain':<{width}}  status   generations"]
    for r in results:
        lines.append(f"{r['name']:<{width}}  {r['status']:<8} {r['generations']}"
                     + (f"  ({r['error']})" if "error" in r else ""))
    counts = {s: sum(r["status"] == s for r in results)
              for s in ("ran", "resumed", "done", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)
