"""``qtrait simulate``: a chain with known truth, written as a run directory."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Optional

import typer

from ..errors import QtraitError
from ..simulate import ChainTruth, TraitTruth, truth_from_config, write_simulated_run
from .common import JSON_HELP, print_json
from .options import (D, Q, R, BetaSchedule, CfgEnd, CfgSchedule, CfgScale, CfgStart, CfgUntil,
                      PDrop,
                      Prediction, Rho, SamplerName, Spacing, Steps, TMax, floats,
                      make_criteria, make_guidance, make_sampler)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)


def _per_trait(text: Optional[str], k: int, name: str) -> list[float] | None:
    if text is None:
        return None
    values = floats(text, name)
    if len(values) == 1:
        return values * k
    if len(values) != k:
        raise QtraitError(f"{name}: give one value or one per trait ({k}), got {len(values)}")
    return values


def simulate_cmd(
    out: Path = typer.Option(..., "--out", help="New run directory to create."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML or JSON file with the "
                                          "whole design (see docs/cli.md); the design "
                                          "options below are then not used."),
    model: str = typer.Option("tilt", help="breeder, tilt or exact."),
    generations: int = typer.Option(10, help="Generations to simulate (0..T-1)."),
    images: int = typer.Option(500, help="Guided images per generation and concept."),
    probe_w1: int = typer.Option(64, help="w=1 probe images per generation and concept."),
    probe_uncond: int = typer.Option(64, help="Unconditional probe images per generation "
                                     "and concept."),
    traits: int = typer.Option(3, help="Number of traits (parameters below apply to each, "
                               "or give comma-separated values per trait)."),
    h2: Optional[str] = typer.Option(None, help="Heritability (default 0.9)."),
    mutation: Optional[str] = typer.Option(None, "--mutation", help="Mutation variance V_m "
                                           "(default 0)."),
    m_uncond: Optional[str] = typer.Option(None, help="Unconditional mean (default -1)."),
    v_uncond: Optional[str] = typer.Option(None, help="Unconditional variance (default 2)."),
    lam: Optional[str] = typer.Option(None, "--lambda", help="Breeder: variance factor."),
    gamma: Optional[str] = typer.Option(None, help="Breeder: exaggeration rate."),
    concepts: str = typer.Option("all", help="Comma-separated concept names."),
    trait_correlation: float = typer.Option(0.0, help="Correlation between traits."),
    anchor: str = typer.Option("base", help="base or previous."),
    cfg_scale: CfgScale = 3.0, cfg_schedule: CfgSchedule = "constant", cfg_end: CfgEnd = 1.0,
    cfg_until: CfgUntil = 0.5, cfg_start: CfgStart = 0.0, rho: Rho = None,
    p_drop: PDrop = 0.0,
    sampler: SamplerName = "ddim", steps: Steps = 50, spacing: Spacing = "leading",
    prediction: Prediction = "epsilon", betas: BetaSchedule = "linear",
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50,
    seed: int = typer.Option(0, help="Random seed (the run is deterministic given it)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Simulate a Chain of Diffusion with known parameters and write it as a run.

    The manifest records the true parameters, the generating moments of every generation
    and the realised true horizon.
    """
    if config is not None:
        truth = _from_config(config)
    else:
        k = traits
        if k < 1:
            raise QtraitError("--traits must be >= 1")
        fields = {"h2": _per_trait(h2, k, "--h2"), "v_mut": _per_trait(mutation, k, "--mutation"),
                  "m_uncond": _per_trait(m_uncond, k, "--m-uncond"),
                  "v_uncond": _per_trait(v_uncond, k, "--v-uncond"),
                  "lam": _per_trait(lam, k, "--lambda"), "gamma": _per_trait(gamma, k, "--gamma")}
        trait_list = tuple(
            TraitTruth(f"trait_{i + 1}", **{f: v[i] for f, v in fields.items() if v is not None})
            for i in range(k))
        try:
            truth = ChainTruth(
                traits=trait_list, model=model, generations=generations, images=images,
                probe_w1=probe_w1, probe_uncond=probe_uncond,
                guidance=make_guidance(cfg_schedule, cfg_scale, cfg_end, cfg_until, cfg_start),
                sampler=make_sampler(sampler, steps, spacing, prediction, betas),
                rho=rho or 0.0, p_drop=p_drop, anchor=anchor,
                concepts=tuple(c.strip() for c in concepts.split(",") if c.strip()),
                trait_correlation=trait_correlation, criteria=make_criteria(q, d, r, t_max),
                seed=seed)
        except ValueError as exc:
            raise QtraitError(str(exc)) from None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QtraitError(f"{out} already exists and is not empty",
                          hint="choose a new --out folder; runs are never overwritten")
    try:
        path = write_simulated_run(out, truth, run_id=out.name, progress=not json_out)
    except ValueError as exc:
        raise QtraitError(str(exc)) from None
    from ..rundir import open_run

    horizon = open_run(path).manifest["truth"]["horizon"]
    if json_out:
        print_json({"run": str(path), "model": truth.model, "generations": truth.generations,
                    "true_horizon": horizon})
        return
    t = horizon["t_star"]
    where = (f"generation {t} ({horizon['reason']})" if t is not None
             else f"none within the simulated generations (censored at {horizon['censored_at']})")
    typer.echo(f"simulated {truth.model} chain -> {path}: {truth.generations} generations, "
               f"{len(truth.traits)} traits; true horizon: {where}")


def _from_config(path: Path) -> ChainTruth:
    if not path.is_file():
        raise QtraitError(f"--config: no such file {path}")
    try:
        text = path.read_text("utf-8")
        cfg = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise QtraitError(f"--config: cannot parse {path}: {exc}") from None
    try:
        return truth_from_config(cfg)
    except (TypeError, ValueError) as exc:
        raise QtraitError(f"--config {path}: {exc}") from None


