"""``qtrait chain sweep SWEEP.toml``: a grid of designs, one chain each, run with Ray (one
chain per GPU on a cluster, or a local Ray instance sized for the machine) or, without
Ray, one after another in this process. Resumable: complete chains are skipped, interrupted
ones resumed. The sweep file::

    name = "cfg-grid"             # chain names: <name>-<index>-<key=value...>
    engine = "auto"               # auto (ray if installed) | ray | local
    address = ""                  # Ray cluster address ("auto" joins a running cluster);
                                  # empty: a local Ray instance
    cpus = 0                      # CPUs of the local Ray instance (0: min(2, cores))
    cpus_per_chain = 1            # CPUs reserved per chain on Ray
    gpus_per_chain = 1.0          # GPUs per chain on Ray (used only if the cluster has GPUs)
    retries = 1                   # a failed chain is run again (resumed from its last
                                  # complete generation) up to this many times

Each attempt's output (stdout, stderr, warnings, logging, and the traceback of a crash)
goes to ``<chain>/logs/attempt_N.log`` once the chain's run directory exists (before,
to ``<out>/.logs/<chain>/``). A chain that fails after its retries is reported, with its
error and log, without stopping the others; the sweep ends with a summary table (also in
``sweep_status.json``).
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

import contextlib
import copy
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from qtrait.errors import QtraitError

from .config import ChainConfig, config_from_dict, read_toml, set_dotted

SWEEP_KEYS = {"name", "engine", "address", "cpus", "cpus_per_chain", "gpus_per_chain",
              "retries", "base_config", "base", "grid", "designs"}
LOGS = "logs"
STATUS_FILE = "sweep_status.json"


@dataclass
class Sweep:
    name: str
    engine: str
    address: str
    cpus: int
    gpus_per_chain: float
    chains: list[ChainConfig]
    cpus_per_chain: float = 1.0
    retries: int = 1


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
                set_dotted(d, k, v)
            for k, v in zip(keys, values):
                set_dotted(d, k, v)
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
    cpus_per_chain = float(raw.get("cpus_per_chain", 1))
    retries = raw.get("retries", 1)
    if cpus_per_chain <= 0 or float(raw.get("gpus_per_chain", 1.0)) < 0:
        raise QtraitError("cpus_per_chain must be > 0 and gpus_per_chain >= 0")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise QtraitError(f"retries must be an integer >= 0, got {retries!r}")
    return Sweep(name, engine, str(raw.get("address", "")), int(raw.get("cpus", 0)),
                 float(raw.get("gpus_per_chain", 1.0)), chains, cpus_per_chain, retries)


def run_one(config_dict: dict, out: str, attempt: int = 1) -> dict:
    """Run, resume or skip one chain; returns its status. Never raises: a crash of any
    kind is a "failed" status with its error, and the attempt's output and traceback are
    in its log (:func:`_keep_log`)."""
    import logging
    import time
    import traceback

    from qtrait.rundir import open_run

    from .chain import resume_chain, run_chain

    config = config_from_dict(config_dict)
    out_path = Path(out)
    pending = out_path.parent / ".logs" / config.name / f"attempt_{attempt}.log"
    pending.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with pending.open("w") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        try:
            if out_path.exists() and any(out_path.iterdir()):
                before = len(open_run(out_path).generations)
                if before >= config.generations:
                    result = {"status": "done"}
                else:
                    resume_chain(out_path, progress=False)
                    result = {"status": "resumed"}
            else:
                run_chain(config, out_path, progress=False)
                result = {"status": "ran"}
        except Exception as exc:  # noqa: BLE001  a chain's crash must not stop the sweep
            message = exc.message if isinstance(exc, QtraitError) else \
                f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=log)
            result = {"status": "failed", "error": message.splitlines()[0]}
        finally:
            logging.getLogger().removeHandler(handler)
    log_path = _keep_log(pending, out_path, attempt)
    generations = (len(open_run(out_path).generations)
                   if (out_path / "manifest.json").exists() else 0)
    return {"name": config.name, **result, "generations": generations, "attempt": attempt,
            "seconds": round(time.perf_counter() - t0, 1), "log": str(log_path)}


def _keep_log(pending: Path, run: Path, attempt: int) -> Path:
    """Move an attempt's log into the chain's run directory (``logs/attempt_N.log``, N
    counting every attempt on that chain, over sweeps) when the run directory exists."""
    if not (run / "manifest.json").exists():
        return pending
    (run / LOGS).mkdir(exist_ok=True)
    n = len(list((run / LOGS).glob("attempt_*.log")))   # earlier sweeps' attempts stay
    dest = run / LOGS / f"attempt_{n + 1}.log"
    pending.replace(dest)
    return dest


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _ray_context(sweep: Sweep, runtime_env: dict | None = None):
    """Ray started (or joined) for the sweep; yields a function that runs a list of
    (config, out, attempt) jobs as Ray tasks with the sweep's per-chain resources and
    returns their statuses in completion order."""
    import ray

    started = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False}
        if runtime_env:
            kw["runtime_env"] = runtime_env
        if sweep.address:
            ray.init(address=sweep.address, **kw)
        else:  # a local instance sized for small machines
            ray.init(num_cpus=sweep.cpus or min(2, os.cpu_count() or 1), **kw)
        started = True
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        # max_retries: a worker process that dies (OOM-killed, segfault) is restarted and
        # the chain resumed; an exception inside a chain comes back as a "failed" status
        remote = ray.remote(num_cpus=sweep.cpus_per_chain,
                            num_gpus=sweep.gpus_per_chain if gpus else 0,
                            max_retries=sweep.retries)(run_one)

        def run(batch):
            pending = [remote.remote(*job) for job in batch]
            out = []
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                out.append(ray.get(done[0]))
            return out
        yield run
    finally:
        if started:
            ray.shutdown()


def run_sweep(sweep: Sweep, out: str | Path, progress: bool = True,
              engine: str | None = None, runtime_env: dict | None = None) -> list[dict]:
    """Run every chain of ``sweep`` under ``out`` (one run directory each), retrying failed
    ones; returns each chain's status, attempts and log. ``runtime_env``: Ray's, for the
    workers (environment variables, a setup hook) when this call starts Ray."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine = engine or sweep.engine
    if engine == "auto":
        engine = "ray" if _ray_available() else "local"
    if engine == "ray" and not _ray_available():
        raise QtraitError("engine = \"ray\" but ray is not installed",
                          hint="pip install 'qtrait[sweep]', or use --engine local")
    jobs = {c.name: (c.to_dict(), str(out / c.name)) for c in sweep.chains}
    final: dict[str, dict] = {}
    history: dict[str, list] = {name: [] for name in jobs}
    bar = tqdm(total=len(jobs), desc=f"sweep {sweep.name} ({engine})", disable=not progress)
    todo = list(jobs)
    ray_ctx = (_ray_context(sweep, runtime_env) if engine == "ray"
               else contextlib.nullcontext())
    with ray_ctx as runner:
        for attempt in range(1, sweep.retries + 2):
            if not todo:
                break
            if engine == "local":
                outcomes = [run_one(*jobs[n], attempt) for n in todo]
            else:
                outcomes = runner([(*jobs[n], attempt) for n in todo])
            todo = []
            for r in outcomes:
                history[r["name"]].append({k: r[k] for k in ("attempt", "status", "log")
                                           if k in r} | ({"error": r["error"]}
                                                         if "error" in r else {}))
                final[r["name"]] = r
                if r["status"] == "failed" and attempt <= sweep.retries:
                    todo.append(r["name"])        # run again: resumes where it stopped
                else:
                    bar.update(1)
    results = []
    for name in jobs:
        r = dict(final[name])
        r["attempts"] = history[name]
        if r["status"] != "failed" and len(history[name]) > 1:
            r["status"] = "resumed"              # finished on a retry
        results.append(r)
    bar.close()
    (out / STATUS_FILE).write_text(json.dumps({"sweep": sweep.name, "engine": engine,
                                               "chains": results}, indent=1))
    return results


def summary(results: list[dict]) -> str:
    """The sweep's table: per chain its status, generations, attempts and seconds, and for
    a failed chain its error and log."""
    width = max(len(r["name"]) for r in results)
    lines = [f"{'chain':<{width}}  status   generations  attempts  seconds"]
    for r in results:
        lines.append(f"{r['name']:<{width}}  {r['status']:<8} {r['generations']:<12} "
                     f"{len(r.get('attempts', [1])):<9} {r.get('seconds', 0):g}")
        if r["status"] == "failed":
            lines.append(f"{'':<{width}}  error: {r.get('error')}; log: {r.get('log')}")
    counts = {s: sum(r["status"] == s for r in results)
              for s in ("ran", "resumed", "done", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)
