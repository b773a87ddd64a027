"""Labelled per-generation statistics of a run: pandas tables and an xarray Dataset.

Thin wrappers over :mod:`qtrait.stats.array`; every dimension is named
(``generation``, ``set``, ``concept``, ``trait``), nothing relies on axis positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..rundir import Run
from . import array

#: Per-trait statistics of a set, in the column order of the tables.
TRAIT_STATS = ("n", "mean", "mean_lo", "mean_hi", "var", "var_lo", "var_hi",
               "exkurt", "exkurt_lo", "exkurt_hi")
SELECTION_STATS = ("S", "S_lo", "S_hi", "var_ratio", "var_ratio_lo", "var_ratio_hi")
DIVERSITY_STATS = ("n", "k", "total_var", "total_var_lo", "total_var_hi",
                   "logdet_raw", "logdet", "logdet_lo", "logdet_hi")


@dataclass
class RunSummary:
    """Per-generation statistics of a run (see ``qtrait summarize``)."""

    run_id: str
    anchor: str
    ci: float
    traits: pd.DataFrame        # generation, set, concept, trait, TRAIT_STATS
    selection: pd.DataFrame     # generation, concept, trait, SELECTION_STATS
    heritability: pd.DataFrame  # concept, trait, h2, h2_lo, h2_hi, n_pairs, method
    diversity: pd.DataFrame     # generation, set, DIVERSITY_STATS (over the trait axes)
    notes: list[str] = field(default_factory=list)

    def to_xarray(self) -> xr.Dataset:
        """The per-trait statistics as a Dataset with dims (generation, set, concept, trait)."""
        idx = ["generation", "set", "concept", "trait"]
        ds = xr.Dataset.from_dataframe(self.traits.set_index(idx)[list(TRAIT_STATS)])
        if not self.selection.empty:
            sel = xr.Dataset.from_dataframe(
                self.selection.set_index(["generation", "concept", "trait"]))
            ds = ds.merge(sel, join="outer")
        ds.attrs.update(run_id=self.run_id, anchor=self.anchor, ci=self.ci)
        return ds

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN becomes None)."""
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: _py(v) for k, v in row.items()} for row in df.to_dict("records")]

        return {
            "run_id": self.run_id,
            "anchor": self.anchor,
            "ci": self.ci,
            "traits": records(self.traits),
            "selection": records(self.selection),
            "heritability": records(self.heritability),
            "diversity": records(self.diversity),
            "notes": self.notes,
        }


def summarize(run: Run, ci: float = 0.90, generations: slice | None = None) -> RunSummary:
    """Per-generation statistics of every set, concept and trait of a run.

    Parameters
    ----------
    run : Run
        An opened run (:func:`qtrait.rundir.open_run`).
    ci : float
        Coverage of the intervals (default 0.90).
    generations : slice, optional
        Generation numbers to use, with Python slice meaning (``slice(0, 3)`` is
        generations 0, 1, 2). Default: all complete generations.
    """
    gens = run.select_generations(generations)
    traits = run.traits
    axes = run.axes
    anchor = run.design.get("anchor", "base")
    notes: list[str] = []

    trait_rows, sel_rows, div_rows = [], [], []
    # per (generation, concept): guided mean and w=1 probe mean, for heritability
    guided_means: dict[str, dict[int, np.ndarray]] = {}
    w1_means: dict[str, dict[int, np.ndarray]] = {}
    for g in gens:
        by_set = {s: run.table(g, s) for s in run.sets(g)}
        for set_name, df in by_set.items():
            d = array.diversity(df[axes].to_numpy(), ci=ci)
            div_rows.append({"generation": g, "set": set_name,
                             **{k: d[k] for k in DIVERSITY_STATS}})
            for concept, sub in df.groupby("concept", sort=True):
                m = array.moments(sub[traits].to_numpy(), ci=ci)
                for j, trait in enumerate(traits):
                    trait_rows.append({"generation": g, "set": set_name, "concept": concept,
                                       "trait": trait, **{k: m[k][j] for k in TRAIT_STATS}})
                if set_name == "guided":
                    guided_means.setdefault(concept, {})[g] = m["mean"]
                if set_name == "probe_w1":
                    w1_means.setdefault(concept, {})[g] = m["mean"]
        # generation 0's guided set is the real data, not a selected sample: no selection
        if g > 0 and "probe_w1" in by_set:
            w1 = by_set["probe_w1"].groupby("concept", sort=True)
            for concept, guided in by_set["guided"].groupby("concept", sort=True):
                if concept not in w1.groups:
                    continue
                s = array.selection(guided[traits].to_numpy(),
                                    w1.get_group(concept)[traits].to_numpy(), ci=ci)
                for j, trait in enumerate(traits):
                    sel_rows.append({"generation": g, "concept": concept, "trait": trait,
                                     **{k: s[k][j] for k in SELECTION_STATS}})

    herit_rows = []
    for concept, w1 in sorted(w1_means.items()):
        rows = _heritability(concept, guided_means.get(concept, {}), w1, gens, anchor,
                             traits, ci, notes)
        herit_rows.extend(rows)
    if not w1_means:
        notes.append("no probe_w1 sets: selection quantities and realized heritability "
                     "need the w=1 probe")

    return RunSummary(
        run_id=run.run_id, anchor=anchor, ci=ci,
        traits=pd.DataFrame(trait_rows, columns=["generation", "set", "concept", "trait",
                                                 *TRAIT_STATS]),
        selection=pd.DataFrame(sel_rows, columns=["generation", "concept", "trait",
                                                  *SELECTION_STATS]),
        heritability=pd.DataFrame(herit_rows, columns=["concept", "trait", "h2", "h2_lo",
                                                       "h2_hi", "n_pairs", "method"]),
        diversity=pd.DataFrame(div_rows, columns=["generation", "set", *DIVERSITY_STATS]),
        notes=notes,
    )


def _heritability(concept, guided: dict, w1: dict, gens: list[int], anchor: str,
                  traits: list[str], ci: float, notes: list[str]) -> list[dict]:
    """Realized h2 from the probes, the way the anchor requires (theory.md section 1)."""
    nan = np.full(len(traits), np.nan)
    # pairs (t, t+1): parents = guided set of t, learned = w=1 probe of t+1
    pairs = [t for t in gens[:-1] if t + 1 in gens and t in guided and t + 1 in w1]
    parent = np.array([guided[t] for t in pairs]) if pairs else np.empty((0, len(traits)))
    learned_next = np.array([w1[t + 1] for t in pairs]) if pairs else parent
    if anchor == "base":
        if 0 not in w1:
            notes.append(f"concept {concept}: realized h2 (anchor = base) needs the "
                         "generation-0 w=1 probe (the base model's mean)")
            return []
        r = array.realized_h2(parent, learned_next, "base", base_mean=w1[0], ci=ci)
    else:
        learned = np.array([w1.get(t, nan) for t in pairs]) if pairs else parent
        r = array.realized_h2(parent, learned_next, "previous", learned_mean=learned, ci=ci)
    return [{"concept": concept, "trait": trait, "h2": r["h2"][j], "h2_lo": r["h2_lo"][j],
             "h2_hi": r["h2_hi"][j], "n_pairs": int(r["n_pairs"][j]), "method": r["method"]}
            for j, trait in enumerate(traits)]


def _py(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    return v
