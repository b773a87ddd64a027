"""What the miniature-chain studies share (analyses/cfg_sweep, redifine_study, forecasting).

* running chains of the CPU miniature chain, one at a time, each in a ``nice``-d
  subprocess (``qtrait chain run``, or ``qtrait chain resume`` for an interrupted one),
  reusing a complete run of the same config from another study's folder;
* the **axes view** of a run: the same run re-imported (``qtrait.rundir.table.
  import_table``) with only its trait axes (``traits.axes`` of the manifest: pc_1..pc_8
  and concept_axis). The zero-shot theory's run level uses these axes; qtrait's fits and
  ``observed_horizons`` use every trait of a run, and on the miniature chain the image
  and classifier traits (``label_prob`` above all, nearly constant in generation 0) make
  every run "collapse" at generation 1. The axes view keeps the three horizons comparable;
* observed horizons and run-level statistics of a run (qtrait's criteria);
* the zero-shot horizon, from ``qtrait theory horizon --run RUN --json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QTRAIT = str(Path(sys.executable).with_name("qtrait"))


# --- chain configs and runs -------------------------------------------------------------------

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def chain_toml(config: dict) -> str:
    """A chain config as TOML: scalars at the top, one table per section."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for section, values in config.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def chain_config(base: dict, name: str, seed: int, design: dict) -> dict:
    """The study's base chain config with one design and seed."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    cfg["name"], cfg["seed"] = name, int(seed)
    cfg.setdefault("design", {}).update(design)
    return cfg


def is_complete(path: Path, generations: int) -> bool:
    """A run whose generations 0..generations-1 are all complete."""
    from qtrait.errors import QtraitError
    from qtrait.rundir import open_run

    if not (path / "manifest.json").exists():
        return False
    try:
        run = open_run(path)
    except QtraitError:
        return False
    return len(run.generations) >= generations and not run.incomplete


def ensure_chain(runs_dir: Path, config: dict, reuse_dirs=(), log=print) -> tuple[Path, float]:
    """Run (or resume, or reuse) one chain; returns its path and the seconds this call
    spent on it (0 when it was already there). The config is written beside the run as
    ``NAME.toml``; a complete run of another study with the same TOML text is linked
    instead of rerun (the chain is bit-reproducible on one machine, docs/chain.md 2)."""
    name, gens = config["name"], config["generations"]
    text = chain_toml(config)
    runs_dir.mkdir(parents=True, exist_ok=True)
    toml_path, out = runs_dir / f"{name}.toml", runs_dir / name
    if toml_path.exists() and toml_path.read_text() != text:
        raise SystemExit(f"{toml_path} differs from the config: delete {out} and its .toml "
                         "to rerun it with the new settings")
    toml_path.write_text(text)
    if is_complete(out, gens):
        return out, 0.0
    for other in reuse_dirs:
        cand = Path(other) / name
        if (Path(other) / f"{name}.toml").exists() and \
                (Path(other) / f"{name}.toml").read_text() == text and is_complete(cand, gens):
            if out.is_symlink():
                out.unlink()
            out.symlink_to(os.path.relpath(cand, out.parent))
            log(f"{name}: reused {cand}")
            return out, 0.0
    t0 = time.perf_counter()
    if out.exists() and any(out.iterdir()):
        cmd = [QTRAIT, "chain", "resume", str(out), "--quiet"]
    else:
        cmd = [QTRAIT, "chain", "run", str(toml_path), "--out", str(out), "--quiet"]
    # at nice 15 (not more when the caller is already niced); passive OpenMP waiting, so
    # that torch's threads do not spin while the shared machine is busy (numerics unchanged)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    subprocess.run(["nice", "-n", str(max(0, 15 - os.nice(0))), *cmd], check=True, env=env)
    secs = time.perf_counter() - t0
    log(f"{name}: chain done in {secs:.0f} s")
    return out, secs


def chain_seconds(path: Path) -> float:
    """Wall time of a chain from its manifest's ``created_at`` to the last generation's
    completion record (the generations' work; Python and torch start-up not included;
    an interrupted and resumed chain includes its pause)."""
    from datetime import datetime

    path = Path(path)
    start = json.loads((path / "manifest.json").read_text())["created_at"]
    last = sorted((path / "generations").glob("gen_*/COMPLETE.json"))[-1]
    end = json.loads(last.read_text())["completed_at"]
    parse = lambda x: datetime.fromisoformat(x.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


# --- the axes view ----------------------------------------------------------------------------

def axes_view(run_path: Path):
    """The run restricted to its trait axes, as a run directory beside it
    (``NAME.axes``); opened with qtrait. Made once."""
    from qtrait.rundir import open_run
    from qtrait.rundir.table import import_table

    run_path = Path(run_path)
    out = run_path.parent / f"{run_path.name}.axes"
    if (out / "manifest.json").exists():
        return open_run(out)
    run = open_run(run_path)
    table = run.long_table()[["generation", "set", "concept", "image_id", *run.axes]]
    csv = run_path.parent / f".{run_path.name}.axes.csv"
    table.to_csv(csv, index=False)
    meta = {k: v for k, v in run.design.items() if v is not None}
    meta["run_id"] = run.run_id
    meta["source_producer"] = run.manifest["producer"]["name"]
    try:
        return import_table(csv, out, meta)
    finally:
        csv.unlink()


# --- observed horizons and run statistics -----------------------------------------------------

def observed(run, t_max: int | None = None) -> dict:
    """The run's detected horizon (docs/theory.md 3.1, defaults; on the run's traits:
    these studies pass the axes view) with the criterion that fired, per-trait horizons,
    and the pooled statistics per generation: ``var_ratio`` (R_t), ``var_ratio_min`` (the
    lowest concept's ratio) and ``drift`` (sqrt of the pooled D2_t). Records made before
    the definition changed (the committed ones of cfg_sweep, redifine_study and
    forecasting) hold the earlier per-digit rule's values under the same keys."""
    from qtrait.forecast import observed_collapse
    from qtrait.stats.collapse import horizon_traits
    from qtrait.theory.horizon import Criteria

    traits = horizon_traits(run)
    stats = observed_collapse(run, traits)
    G = len(run.generations)
    crit = Criteria(t_max=max(1, G - 1) if t_max is None else t_max)
    cs = stats["run"]
    t_run, reason = cs.detected(crit)
    return {
        "t_obs": t_run, "reason": reason, "last_generation": G - 1,
        "definition": "run horizon, docs/theory.md 3.1",
        "trait_t_obs": {t: stats[t].detected(crit)[0] for t in traits},
        "var_ratio": np.round(cs.R, 5).tolist(),
        "var_ratio_min": np.round(cs.R_c.min(axis=1), 5).tolist(),
        "drift": np.round(np.sqrt(cs.D2), 5).tolist(),
    }


def image_traits(run, names=("saturation", "hf_energy", "sharpness", "contrast",
                             "label_correct")) -> dict:
    """Per generation, the mean of each image trait over the guided images (per digit,
    then averaged over the digits, as in analyses/toy_chain_phenomena)."""
    out = {n: [] for n in names}
    for gen in run.generations:
        t = run.table(gen, "guided")
        means = t.groupby("concept")[list(names)].mean().mean()
        for n in names:
            out[n].append(round(float(means[n]), 5))
    return out


def zero_shot(run_path: Path, h2: float, t_max: int, rho: float | None = None) -> dict:
    """``qtrait theory horizon --run RUN --json``: the zero-shot run horizon (over the
    trait axes) for an assumed h2; for condition drop without ``rho`` the horizon for
    each rho of qtrait's grid."""
    cmd = [QTRAIT, "theory", "horizon", "--run", str(run_path), "--h2", str(h2),
           "--t-max", str(t_max), "--json"]
    if rho is not None:
        cmd += ["--rho", str(rho)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    if out.get("rho_unknown"):
        return {"by_rho": {str(b["rho"]): b["horizon"]["t_star"] for b in out["by_rho"]},
                "t_star": None, "reason": None}
    return {"t_star": out["horizon"]["t_star"], "reason": out["horizon"]["reason"],
            "invalid_at": out["horizon"]["invalid_at"]}


def fitted(run, settings: dict, t_max: int, seed: int = 0) -> dict:
    """Breeder fit of the whole run: the horizon of the posterior's latent guided
    moments (generations 1..G-1 fitted, then forward to t_max), ignoring that the data
    already show a crossing, plus the per-generation variance factor lambda and the
    exaggeration rate gamma (posterior medians averaged over cells)."""
    from qtrait.fit import SamplerSettings, fit
    from qtrait.forecast import forecast
    from qtrait.theory.horizon import Criteria

    crit = Criteria(t_max=t_max)
    t0 = time.perf_counter()
    res = fit(run, "breeder", SamplerSettings(chains=settings["chains"],
                                              draws=settings["draws"],
                                              tune=settings["tune"], seed=seed), save=False)
    fc = forecast(res, run, crit, seed=seed)
    latent = fc.latent.to_dict()
    post = res.idata.posterior
    return {
        "median": latent["median"], "lo90": latent["lo90"], "hi90": latent["hi90"],
        "p_no_collapse": latent["p_no_collapse"],
        "lambda": round(float(post["lambda"].median(("chain", "draw")).mean()), 4),
        "gamma": round(float(post["gamma"].median(("chain", "draw")).mean()), 4),
        "diagnostics": {k: round(float(v), 4) for k, v in res.diagnostics.items()},
        "seconds": round(time.perf_counter() - t0, 1),
        "code": code_state(),
    }


def read_records(path: Path, key: str = "name") -> dict:
    """JSON lines as a dict by ``key`` (the last record of a key wins)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[r[key]] = r
    return out


def append_record(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def code_state() -> str:
    """The commit of the working tree and whether qtrait/ had uncommitted changes when a
    record was made (other people edit the same tree)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--", "qtrait"))
    return git("rev-parse", "--short", "HEAD") + (" (qtrait/ modified)" if dirty else "")


def software() -> str:
    import platform
    from importlib import metadata

    import qtrait

    versions = [f"qtrait {qtrait.__version__}", f"Python {sys.version.split()[0]}"]
    for mod in ("numpy", "pymc", "nutpie", "torch"):
        try:
            versions.append(f"{mod} {metadata.version(mod)}")
        except metadata.PackageNotFoundError:
            pass
    return f"{platform.machine()}, {os.cpu_count()} cores; " + ", ".join(versions)
