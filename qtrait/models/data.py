"""Per-generation sufficient statistics of a run, shaped for the models (numpy arrays).

Every model's likelihood uses these numbers, never per-image rows, so its cost does not
grow with the number of images. Traits are standardised per (concept, trait) by the
generation-0 guided mean and standard deviation; the collapse criteria are invariant
to that.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

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
    kurt: np.ndarray     # the set's bias-corrected excess kurtosis G2 (NaN when N < 4)
    skew: np.ndarray     # the set's bias-corrected skewness G1 (NaN when N < 3)


#: a trait is *near-constant* in a run when, in some concept at generation 0, one value
#: holds at least this share of the images (a point mass: a classifier probability
#: saturated at 1, a 0/1 label). Its sample variance is then driven by the few images off
#: the mass, so neither the Gamma law of the variance nor the moment maps describe it;
#: it is left out of the fit and listed (``FitData.near_constant``)
NEAR_CONSTANT_TIE = 0.5


def tie_share(x: np.ndarray) -> np.ndarray:
    """Per column of ``x`` (N, K), the largest share of rows holding one value (values
    equal in single precision, about 7 significant digits)."""
    out = np.zeros(x.shape[1])
    for k in range(x.shape[1]):
        col = x[:, k][np.isfinite(x[:, k])]
        if len(col):
            _, counts = np.unique(np.float32(col), return_counts=True)
            out[k] = counts.max() / len(col)
    return out


SET_FIELDS = ("n", "mean", "var", "kurt", "skew")


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
    excluded: list[str]  # traits left out: constant or near-constant (below)
    near_constant: list[str] = field(default_factory=list)  # of which near-constant
    #: median over the guided sets of the median |correlation| between two fitted traits
    #: within a set (the likelihood treats traits as independent given the parameters)
    trait_dependence: float = float("nan")

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
    corr = []
    for s in ("guided", "probe_w1", "probe_uncond"):
        st = SetStats(*(np.full((G, C, K), np.nan) for _ in range(5)))
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
                st.kurt[gi, ci], st.skew[gi, ci] = m["exkurt"], m["skew"]
                if s == "guided" and x.shape[1] > 1 and len(x) > 2:
                    with np.errstate(all="ignore"):
                        corr.append(np.corrcoef(x, rowvar=False))
        sets[s] = st
    center = sets["guided"].mean[0].copy()
    scale = np.sqrt(sets["guided"].var[0])
    # a trait constant within some concept at generation 0 (e.g. every image classified
    # correctly) has no variance to model, and a near-constant one (NEAR_CONSTANT_TIE) no
    # variance the models describe: both are left out, and the fit lists them
    g0 = run.table(gens[0], "guided")
    ties = np.max([tie_share(g0.loc[g0["concept"] == c, traits].to_numpy(dtype=float))
                   for c in concepts], axis=0)
    constant = ~np.all(scale > 0, axis=0)
    near = ~constant & (ties >= NEAR_CONSTANT_TIE)
    keep = ~constant & ~near
    if not keep.any():
        raise QtraitError("every trait is constant or near-constant within some concept at "
                          "generation 0; nothing to fit")
    excluded = [t for t, k in zip(traits, keep) if not k]
    near_constant = [t for t, k in zip(traits, near) if k]
    traits = [t for t, k in zip(traits, keep) if k]
    center, scale = center[:, keep], scale[:, keep]
    for st in sets.values():
        for f in SET_FIELDS:
            setattr(st, f, getattr(st, f)[..., keep])
    dependence = float("nan")
    if keep.sum() > 1 and corr:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            meds = []
            for r in corr:
                r = r[keep][:, keep]
                meds.append(np.nanmedian(np.abs(r[np.triu_indices_from(r, 1)])))
            dependence = float(np.nanmedian(meds))
    for st in sets.values():   # standardise
        st.mean = (st.mean - center) / scale
        st.var = st.var / scale ** 2
    return FitData(run.run_id, gens, concepts, traits, sets, center, scale, run.design,
                   excluded, near_constant, dependence)


# --- the dense layout every model uses --------------------------------------------------

SETS = ("guided", "probe_w1", "probe_uncond")


@dataclass
class Shape:
    """Per cell, the shape of the trait's within-set distribution used by the likelihood:
    skewness and excess kurtosis with their standard errors (arrays (J,))."""

    skew: np.ndarray
    kurt: np.ndarray
    skew_se: np.ndarray
    kurt_se: np.ndarray


#: margin above Pearson's bound (excess kurtosis >= skewness^2 - 2, every distribution)
#: kept by the pooled estimates, so the (mean, variance) law stays proper
PEARSON_MARGIN = 0.2


def _shrunk(est: np.ndarray, n: np.ndarray, group: np.ndarray, normal_var: float):
    """Cell estimates pooled over generations and shrunk toward their group's.

    ``est`` (G, J) holds per-set estimates (NaN where none), ``n`` the set sizes and
    ``group`` (J,) the group of each cell (a trait of a run). Per cell: the n-weighted
    mean e_j over rows, with variance se2_j = the larger of its spread over rows and the
    normal-theory ``normal_var / sum(n)``. Per group: the between-cell variance tau^2 by
    DerSimonian-Laird, the location mu, and e_j* = mu + tau^2 / (tau^2 + se2_j) (e_j - mu)
    (mu for a cell without estimates; 0 for a group without any). Returns (estimate,
    standard error), arrays (J,)."""
    ok = np.isfinite(est) & np.isfinite(n) & (n >= 4)
    w = np.where(ok, n, 0.0)
    sw = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(ok, w * est, 0.0).sum(axis=0) / sw
        spread = np.where(ok, w ** 2 * (est - e) ** 2, 0.0).sum(axis=0) / sw ** 2
        se2 = np.maximum(spread, normal_var / sw)
    out, out_se = np.zeros(est.shape[1]), np.full(est.shape[1], np.inf)
    for grp in np.unique(group):
        cols = group == grp
        have = cols & (sw > 0)
        if not have.any():
            continue
        ej, vj = e[have], se2[have]
        wj = 1.0 / vj
        mu = np.sum(wj * ej) / wj.sum()
        denom = wj.sum() - np.sum(wj ** 2) / wj.sum()
        q = np.sum(wj * (ej - mu) ** 2)
        tau2 = max(0.0, (q - (len(ej) - 1)) / denom) if denom > 0 else 0.0
        w_tau = 1.0 / (vj + tau2)
        mu = np.sum(w_tau * ej) / w_tau.sum()
        out[cols], out_se[cols] = mu, np.sqrt(1.0 / w_tau.sum() + tau2)
        shrink = tau2 / (tau2 + vj)
        out[have] = mu + shrink * (ej - mu)
        out_se[have] = np.sqrt(shrink * vj + (1 - shrink) ** 2 / w_tau.sum())
    return out, out_se


def pooled_shape(cd: "ChainData", set_name: str = "guided", upto: int | None = None) -> Shape:
    """Skewness and excess kurtosis of each cell's within-set distribution, pooled over
    the set's generations < ``upto`` (all by default: a leave-future-out refit sees only
    its own past) and shrunk toward the trait's value over concepts (empirical Bayes,
    :func:`_shrunk`). A few images per set give noisy, biased moments of order 3 and 4;
    pooled, they are estimated from every image of the cell. The kurtosis is kept above
    Pearson's bound for the skewness (``PEARSON_MARGIN``)."""
    st = cd.sets[set_name]
    rows = slice(0, upto)
    keys = sorted({(r, t) for r, _, t in cd.cells})
    group = np.array([keys.index((r, t)) for r, _, t in cd.cells])
    n = st.n[rows]
    skew, skew_se = _shrunk(st.skew[rows], n, group, 6.0)     # Var G1 ~ 6/N (normal)
    kurt, kurt_se = _shrunk(st.kurt[rows], n, group, 24.0)    # Var G2 ~ 24/N (normal)
    kurt = np.maximum(kurt, skew ** 2 - 2.0 + PEARSON_MARGIN)
    return Shape(skew, kurt, skew_se, kurt_se)


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

    def traits(self) -> list[str]:
        """The traits of the cells, in the order they first appear among them."""
        return list(dict.fromkeys(t for _, _, t in self.cells))

    def trait_index(self) -> np.ndarray:
        """(J,) each cell's index in :meth:`traits`."""
        pos = {t: k for k, t in enumerate(self.traits())}
        return np.array([pos[t] for _, _, t in self.cells])

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
            for f in SET_FIELDS:
                a = np.full((G, c * k), np.nan)
                if st is not None:
                    a[:g] = getattr(st, f).reshape(g, c * k)
                arrays.append(a)
            blocks[s].append(arrays)
    sets = {s: SetStats(*(np.concatenate([b[i] for b in blocks[s]], axis=1)
                          for i in range(len(SET_FIELDS)))) for s in SETS}
    return ChainData(runs, cells, np.array(run_of), list(range(G)), sets)


def likelihood_summary(cd: ChainData) -> dict:
    """What the likelihood assumed, for the outputs: per trait the pooled skewness and
    excess kurtosis of the guided sets (median over concepts and runs, with the median
    standard error), the traits left out as near-constant, and the within-set dependence
    between traits that the likelihood ignores (it multiplies the traits' densities)."""
    law = pooled_shape(cd)
    shape, index = {}, cd.trait_index()
    for k, t in enumerate(cd.traits()):
        m = index == k
        shape[t] = {"skew": float(np.median(law.skew[m])),
                    "skew_se": float(np.median(law.skew_se[m])),
                    "kurt": float(np.median(law.kurt[m])),
                    "kurt_se": float(np.median(law.kurt_se[m]))}
    dep = [d.trait_dependence for d in cd.runs if np.isfinite(d.trait_dependence)]
    return {"law": "joint (mean, variance) per set: Gamma variance, Normal mean given it",
            "shape": shape,
            "near_constant": sorted({t for d in cd.runs for t in d.near_constant}),
            "trait_dependence": float(np.median(dep)) if dep else None,
            "traits_independent": True}


def likelihood_line(summary: dict) -> str:
    """One line of :func:`likelihood_summary` for the text outputs."""
    sk = np.array([v["skew"] for v in summary["shape"].values()])
    ku = np.array([v["kurt"] for v in summary["shape"].values()])
    out = (f"likelihood: joint law of each set's mean and variance, skewness and kurtosis "
           f"pooled over generations and concepts (per trait: |skewness| up to "
           f"{np.max(np.abs(sk)):.2f}, excess kurtosis {np.min(ku):.2f}..{np.max(ku):.2f})")
    if summary["trait_dependence"] is not None:
        out += (f"; traits treated as independent (median |within-set correlation| "
                f"{summary['trait_dependence']:.2f})")
    if summary["near_constant"]:
        out += f"; near-constant, left out: {', '.join(summary['near_constant'])}"
    return out


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
