"""Forward simulation of a Chain of Diffusion with known truth (numpy only).

Each generation follows the generation map of theory.md section 2, per trait and per
concept: inheritance from the *observed* moments of the previous guided set (so the
finite-sample error of the guided set is the drift), the CFG tilt as selection, and
mutation variance added at sampling time. Generation 0's guided set is the "real data";
its probes come from the base model. The output is a run directory whose manifest
records the true parameters and the latent (generating) moments of every generation.

This module is also qtrait's public source of synthetic data for users' and its own
tests (like ``arviz.testing``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .rundir import RunWriter, make_manifest
from .theory import inherit, tilt


@dataclass(frozen=True)
class TraitTruth:
    """True parameters of one trait (units: generation-0 standard deviations)."""

    name: str
    h2: float = 0.9
    mean0: float = 0.0          # mean of the real data D_0
    var0: float = 1.0           # variance of the real data D_0
    m_base: float = 0.0         # base model's conditional mean (w = 1)
    v_base: float = 1.0         # base model's conditional variance
    m_uncond: float = -1.0      # unconditional mean (frozen branch)
    v_uncond: float = 2.0       # unconditional variance
    v_mut: float = 0.0          # mutation variance added at sampling time
    learn_sd: float = 0.0       # learning noise of finetuning on the learned mean


@dataclass(frozen=True)
class ChainTruth:
    """Design and true parameters of a simulated chain (model: tilt selection)."""

    traits: tuple[TraitTruth, ...]
    generations: int = 10
    images: int = 500
    probe_w1: int = 64
    probe_uncond: int = 64
    cfg_scale: float = 3.0
    anchor: str = "base"
    concepts: tuple[str, ...] = ("all",)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def default_truth(**overrides: Any) -> ChainTruth:
    """A small, readable chain: three traits with different heritability and mutation."""
    traits = (
        TraitTruth("axis_1", h2=0.95, m_base=0.1, v_base=1.1, m_uncond=-1.0, v_uncond=2.0),
        TraitTruth("axis_2", h2=0.85, m_base=-0.1, v_base=0.9, m_uncond=0.8, v_uncond=1.8,
                   v_mut=0.05),
        TraitTruth("saturation", h2=0.9, m_base=0.05, v_base=1.0, m_uncond=-0.5,
                   v_uncond=2.5, learn_sd=0.02),
    )
    return ChainTruth(traits=traits, **overrides)


def simulate_tables(truth: ChainTruth) -> tuple[list[dict[str, pd.DataFrame]], dict]:
    """Simulate the per-image tables of every generation.

    Returns ``(tables, latent)`` where ``tables[g][set]`` is a DataFrame (``concept`` and
    one column per trait) and ``latent`` holds the generating moments per generation,
    trait and concept (``guided_mean``, ``guided_var``, ``learned_mean``, ``learned_var``).
    """
    rng = np.random.default_rng(truth.seed)
    K, C = len(truth.traits), len(truth.concepts)
    p = {f: np.array([getattr(t, f) for t in truth.traits])[None, :].repeat(C, 0)
         for f in ("h2", "mean0", "var0", "m_base", "v_base", "m_uncond", "v_uncond",
                   "v_mut", "learn_sd")}
    w = truth.cfg_scale
    shape = (truth.generations, C, K)
    latent = {k: np.full(shape, np.nan) for k in
              ("guided_mean", "guided_var", "learned_mean", "learned_var")}
    tables: list[dict[str, pd.DataFrame]] = []
    obs_mean = obs_var = None
    learned_prev = (p["m_base"], p["v_base"])
    for g in range(truth.generations):
        if g == 0:
            m, u = p["m_base"], p["v_base"]             # probes come from the base model
            gm, gv = p["mean0"], p["var0"]               # guided set = the real data
        else:
            if truth.anchor == "base":
                anchor_m, anchor_v = p["m_base"], p["v_base"]
            else:
                anchor_m, anchor_v = learned_prev
            m, u = inherit(obs_mean, obs_var, anchor_m, anchor_v, p["h2"])
            m = m + p["learn_sd"] * rng.standard_normal(m.shape)
            gm, gv, valid = tilt(m, u, p["m_uncond"], p["v_uncond"], w)
            if not valid.all():
                raise ValueError(f"generation {g}: the CFG tilt is invalid for w={w} "
                                 "(unconditional narrower than conditional)")
            gv = gv + p["v_mut"]
        learned_prev = (m, u)
        latent["guided_mean"][g], latent["guided_var"][g] = gm, gv
        latent["learned_mean"][g], latent["learned_var"][g] = m, u
        sets = {"guided": (gm, gv, truth.images), "probe_w1": (m, u, truth.probe_w1),
                "probe_uncond": (p["m_uncond"], p["v_uncond"], truth.probe_uncond)}
        gen_tables = {}
        for set_name, (mean, var, n) in sets.items():
            if n == 0:
                continue
            z = mean[None] + np.sqrt(var)[None] * rng.standard_normal((n, C, K))
            rows = z.transpose(1, 0, 2).reshape(C * n, K)
            df = pd.DataFrame(rows, columns=[t.name for t in truth.traits])
            df.insert(0, "concept", np.repeat(truth.concepts, n))
            gen_tables[set_name] = df
        guided = gen_tables["guided"]
        grouped = guided.groupby("concept", sort=False)[[t.name for t in truth.traits]]
        obs_mean = grouped.mean().loc[list(truth.concepts)].to_numpy()
        obs_var = grouped.var(ddof=1).loc[list(truth.concepts)].to_numpy()
        tables.append(gen_tables)
    return tables, {k: v.tolist() for k, v in latent.items()}


def write_simulated_run(out: str | Path, truth: ChainTruth, run_id: str | None = None,
                        progress: bool = False) -> Path:
    """Simulate a chain and write it as a run directory; returns its path."""
    out = Path(out)
    tables, latent = simulate_tables(truth)
    design = {
        "name": run_id or out.name,
        "base_model": "simulated",
        "dataset": "simulated",
        "cfg_scale": float(truth.cfg_scale),
        "cfg_schedule": "constant",
        "p_drop": 0.0,
        "anchor": truth.anchor,
        "images_per_generation": truth.images * len(truth.concepts),
        "probe_sizes": {"probe_w1": truth.probe_w1 * len(truth.concepts),
                        "probe_uncond": truth.probe_uncond * len(truth.concepts)},
        "seeds": {"run": truth.seed},
        "feature_extractor": "none (simulated traits)",
    }
    truth_record = {"model": "tilt", "parameters": _jsonable(asdict(truth)),
                    "latent": latent, "dims": ["generation", "concept", "trait"]}
    manifest = make_manifest(run_id or out.name, design, [t.name for t in truth.traits],
                             producer_name="qtrait.simulate",
                             basis={"kind": "simulated", "file": None}, truth=truth_record)
    writer = RunWriter.create(out, manifest)
    from tqdm.auto import tqdm

    for g, gen_tables in enumerate(tqdm(tables, desc="writing generations",
                                        disable=not progress)):
        writer.write_generation(g, gen_tables)
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
