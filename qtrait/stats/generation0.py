"""Generation 0 of a run as the zero-shot theory needs it (``qtrait theory horizon --run``,
the report, the zero-shot baseline of the forecasts): moments of the guided set and of
the base model's probes, and the traits' correlation per concept (the drift metric)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import QtraitError
from ..theory.generation import MapParams
from ..theory.zeroshot import generation0_from_moments


def gen0_from_run(run, params: MapParams):
    """Generation-0 moments of an opened run for the zero-shot theory: (Generation0,
    concepts, traits, axes mask, skipped cells, correlation per concept). The guided set
    and the base model's probes; a trait constant within a concept is left out."""
    g = run.generations[0]
    missing = [s for s in ("probe_w1", "probe_uncond") if s not in run.sets(g)]
    if missing:
        raise QtraitError(f"zero-shot predictions need the base model's probes at generation "
                          f"{g}; run {run.run_id} has no {' or '.join(missing)} there",
                          hint="give the generation-0 moments as options instead")
    concepts = sorted(run.table(g, "guided")["concept"].unique())
    stats = {}
    for s in ("guided", "probe_w1", "probe_uncond"):
        table = run.table(g, s)
        grouped = table.groupby("concept")[run.traits]
        # a concept without rows in a probe set uses the pooled probe's moments
        mean = grouped.mean().reindex(concepts).fillna(table[run.traits].mean())
        var = grouped.var(ddof=1).reindex(concepts).fillna(table[run.traits].var(ddof=1))
        if s == "probe_uncond":
            # one unconditional distribution p(x) serves every concept, and it is the
            # mixture over concepts: its mean and variance are those of all the probe's
            # images together (between-concept spread included), not a concept's few
            x = table[run.traits].to_numpy(dtype=float)
            mean = pd.DataFrame(np.broadcast_to(x.mean(axis=0), mean.shape),
                                columns=mean.columns)
            var = pd.DataFrame(np.broadcast_to(x.var(axis=0, ddof=1), var.shape),
                               columns=var.columns)
        stats[s] = (mean.to_numpy(), var.to_numpy())
    # a trait constant within a concept at generation 0 (e.g. all images classified
    # correctly) has no variance to lose: it gets no horizon and stays out of the run level
    degenerate = np.zeros((len(concepts), len(run.traits)), dtype=bool)
    for _, v in stats.values():
        degenerate |= ~(v > 0)
    clean = {s: tuple(np.where(degenerate, np.nan, a) for a in st) for s, st in stats.items()}
    g0 = generation0_from_moments(clean["guided"], clean["probe_w1"], clean["probe_uncond"],
                                  params)
    skipped = [f"{concepts[i]}/{run.traits[k]}" for i, k in zip(*np.nonzero(degenerate))]
    axes = np.array([t in run.axes for t in run.traits])
    return g0, concepts, run.traits, axes, skipped, gen0_correlation(run, concepts)


def gen0_correlation(run, concepts) -> np.ndarray:
    """Generation 0's correlation matrix of the guided set per concept (concept, trait,
    trait): the drift metric of the run's horizon. A constant trait gets an identity row."""
    table = run.table(run.generations[0], "guided")
    K = len(run.traits)
    out = np.empty((len(concepts), K, K))
    for i, c in enumerate(concepts):
        x = table.loc[table["concept"] == c, run.traits].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(x, rowvar=False).reshape(K, K)
        bad = ~np.isfinite(corr)
        corr[bad] = 0.0
        np.fill_diagonal(corr, 1.0)
        out[i] = corr
    return out
