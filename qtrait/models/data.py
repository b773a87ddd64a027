"""Per-generation sufficient statistics of a run, shaped for the models (numpy arrays).

Every model's likelihood uses these numbers, never per-image rows, so its cost does not
grow with the number of images. Traits are standardised per (concept, trait) by the
generation-0 guided mean and standard deviation; the collapse criteria are invariant
to that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import QtraitError
from ..rundir import Run
from ..stats import array


@dataclass
class SetStats:
    """Arrays (generation, concept, trait); NaN where the set is absent."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    kurt: np.ndarray     # excess kurtosis, floored at 0 (as in the variance intervals)


@dataclass
class FitData:
    """Sufficient statistics of one run for a fit: per set, (generation, concept, trait)
    arrays of n, mean, variance and excess kurtosis in generation-0 SD units, with the
    standardisation (centre, scale), the design and the traits left out."""
    run_id: str
    generations: list[int]
    concepts: list[str]
    traits: list[str]
    sets: dict[str, SetStats]
    center: np.ndarray   # (concept, trait) generation-0 guided mean (raw units)
    scale: np.ndarray    # (concept, trait) generation-0 guided SD (raw units)
    design: dict
    excluded: list[str]  # traits left out: constant within a concept at generation 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.generations), len(self.concepts), len(self.traits)

    def has(self, set_name: str) -> bool:
        return set_name in self.sets and np.isfinite(self.sets[set_name].mean).any()


def fit_data(run: Run, generations: slice | None = None) -> FitData:
    """Sufficient statistics of every set, generation, concept and trait of ``run``."""
    gens = run.select_generations(generations)
    if gens[0] != 0:
        raise QtraitError("a fit needs generation 0 (the real data and the base model's "
                          "probes); give a range starting at 0, e.g. --generations 0:5")
    if len(gens) < 2:
        raise QtraitError("a fit needs at least 2 generations (0 and 1)")
    traits = run.traits
    concepts = sorted(run.table(0, "guided")["concept"].unique())
    G, C, K = len(gens), len(concepts), len(traits)
    sets = {}
    for s in ("guided", "probe_w1", "probe_uncond"):
        st = SetStats(*(np.full((G, C, K), np.nan) for _ in range(4)))
        for gi, g in enumerate(gens):
            if s not in run.sets(g):
                continue
            table = run.table(g, s)
            for ci, c in enumerate(concepts):
                x = table.loc[table["concept"] == c, traits].to_numpy()
                if len(x) < 2:
                    continue
                m = array.moments(x)
                st.n[gi, ci], st.mean[gi, ci], st.var[gi, ci] = m["n"], m["mean"], m["var"]
                st.kurt[gi, ci] = np.maximum(np.nan_to_num(m["exkurt"]), 0.0)
        sets[s] = st
    center = sets["guided"].mean[0].copy()
    scale = np.sqrt(sets["guided"].var[0])
    # a trait constant within some concept at generation 0 (e.g. every image classified
    # correctly) has no variance to model: it is left out, and the fit says so
    keep = np.all(scale > 0, axis=0)
    if not keep.any():
        raise QtraitError("every trait is constant within some concept at generation 0; "
                          "nothing to fit")
    excluded = [t for t, k in zip(traits, keep) if not k]
    traits = [t for t, k in zip(traits, keep) if k]
    center, scale = center[:, keep], scale[:, keep]
    for st in sets.values():
        for f in ("n", "mean", "var", "kurt"):
            setattr(st, f, getattr(st, f)[..., keep])
    for st in sets.values():   # standardise
        st.mean = (st.mean - center) / scale
        st.var = st.var / scale ** 2
    return FitData(run.run_id, gens, concepts, traits, sets, center, scale, run.design,
                   excluded)


# --- the dense layout every model uses --------------------------------------------------

SETS = ("guided", "probe_w1", "probe_uncond")


@dataclass
class ChainData:
    """One or several runs as dense arrays (generation, cell), a cell being one
    (run, concept, trait). Runs shorter than the longest are padded with NaN; the models
    only ever touch finite entries. Values are in generation-0 SD units per cell."""

    runs: list[FitData]
    cells: list[tuple[int, str, str]]          # (run index, concept, trait)
    run_of_cell: np.ndarray                    # (J,) int
    generations: list[int]                     # 0..G-1 (the union of the runs')
    sets: dict[str, SetStats]                  # arrays (G, J)

    @property
    def G(self) -> int:
        return len(self.generations)

    @property
    def J(self) -> int:
        return len(self.cells)

    def has(self, set_name: str) -> bool:
        return set_name in self.sets and np.isfinite(self.sets[set_name].mean).any()

    def cell_labels(self) -> list[str]:
        multi = len(self.runs) > 1
        return [(f"{self.runs[r].run_id}/" if multi else "") + f"{c}/{t}"
                for r, c, t in self.cells]

    def valid(self, set_name: str) -> np.ndarray:
        """(G, J) boolean: where the set has a usable mean and variance."""
        s = self.sets[set_name]
        return np.isfinite(s.mean) & np.isfinite(s.var) & (s.var > 0) & (s.n >= 2)

    def design(self, r: int = 0) -> dict:
        return self.runs[r].design


def chain_data(runs: list[FitData]) -> ChainData:
    """Stack the sufficient statistics of one or several runs into (generation, cell)."""
    G = max(len(d.generations) for d in runs)
    cells, run_of, blocks = [], [], {s: [] for s in SETS}
    for r, d in enumerate(runs):
        g, c, k = d.shape
        for concept in d.concepts:
            for trait in d.traits:
                cells.append((r, concept, trait))
                run_of.append(r)
        for s in SETS:
            st = d.sets.get(s)
            arrays = []
            for f in ("n", "mean", "var", "kurt"):
                a = np.full((G, c * k), np.nan)
                if st is not None:
                    a[:g] = getattr(st, f).reshape(g, c * k)
                arrays.append(a)
            blocks[s].append(arrays)
    sets = {s: SetStats(*(np.concatenate([b[i] for b in blocks[s]], axis=1)
                          for i in range(4))) for s in SETS}
    return ChainData(runs, cells, np.array(run_of), list(range(G)), sets)


def design_schedule(design: dict):
    """The guidance schedule and sampler a run's manifest describes (theory objects)."""
    from ..theory.schedules import GuidanceSchedule, NoiseSchedule, Sampler

    sp = design.get("cfg_schedule_params") or {}
    guidance = GuidanceSchedule(kind=design.get("cfg_schedule") or "constant",
                                scale=float(design.get("cfg_scale", 7.5)),
                                end=float(sp.get("end", 1.0)), start=float(sp.get("start", 0.0)),
                                until=float(sp.get("until", 0.5)))
    s = design.get("sampler") or {}
    noise = NoiseSchedule.stable_diffusion() if s.get("beta_schedule") == "scaled_linear" \
        else NoiseSchedule()
    sampler = Sampler(scheduler=s.get("scheduler", "ddim"), steps=int(s.get("steps", 50)),
                      noise=noise, prediction_type=s.get("prediction_type", "epsilon"),
                      timestep_spacing=s.get("timestep_spacing", "leading"))
    return guidance, sampler
