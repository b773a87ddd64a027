"""What every model shares: the specification interface, the likelihood of sufficient
statistics, partial pooling, and the pointwise log-likelihood layout.

A model is a *specification* (a frozen dataclass: name, priors, what it reports) that
builds a PyMC graph from a :class:`~qtrait.models.data.ChainData` and simulates forward
in numpy from posterior (or prior) draws. The graph's data enter as ``pm.Data`` so a
compiled model can be reused for another data set of the same layout
(:func:`qtrait.fit.fit` keeps such a cache); the layout (shapes, which entries are
observed, the design constants) is the model's :meth:`ModelSpec.signature`.

Likelihood (theory.md section 4), per generation, cell and sample set, from the set's
size N, mean, variance s2 and excess kurtosis kappa (floored at 0):

    zbar ~ Normal(mean, sqrt(V / N + extra))
    s2   ~ Gamma with mean V and relative variance 2/(N-1) + kappa/N (+ extra)

The pointwise log-likelihood (the sum of the two terms of one set of one cell in one
generation) is a deterministic ``log_lik`` over a flat ``obs`` dimension, moved to the
inference data's ``log_likelihood`` group after sampling with its coordinates (run,
generation, set, concept, trait), so PSIS-LOO and leave-future-out are defined per
observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import QtraitError
from .data import SETS, ChainData

LOG_2PI = float(np.log(2 * np.pi))


def set_loglik(x_mean, x_var, n, kurt, mean, var, extra_mean=0.0, extra_rel=0.0,
               symbolic: bool = True):
    """Log-likelihood of one set's observed mean and variance given latent (mean, var):
    Normal(mean, var/N + extra_mean) for the mean, and a Gamma with mean ``var`` and
    relative variance 2/(N-1) + kurt/N + extra_rel for the variance. PyTensor for the
    models' graphs, numpy (``symbolic=False``) for scoring forecasts: one formula."""
    if symbolic:
        import pytensor.tensor as pt

        log, gammaln = pt.log, pt.gammaln
    else:
        from scipy.special import gammaln

        log = np.log
    v = var / n + extra_mean
    ll = -0.5 * (LOG_2PI + log(v) + (x_mean - mean) ** 2 / v)
    alpha = 1.0 / (2.0 / (n - 1.0) + kurt / n + extra_rel)
    beta = alpha / var
    return ll + alpha * log(beta) - gammaln(alpha) + (alpha - 1.0) * log(x_var) - beta * x_var


@dataclass
class Layout:
    """Where the observations are: per set, the (generation, cell) index arrays."""

    index: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def obs_coords(self, cd: ChainData) -> dict[str, np.ndarray]:
        run, gen, sets, concept, trait = [], [], [], [], []
        for s, (g, j) in self.index.items():
            for gi, ji in zip(g, j):
                r, c, t = cd.cells[ji]
                run.append(cd.runs[r].run_id)
                gen.append(cd.generations[gi])
                sets.append(s)
                concept.append(c)
                trait.append(t)
        return {"obs_run": np.array(run, dtype=object), "obs_generation": np.array(gen),
                "obs_set": np.array(sets, dtype=object),
                "obs_concept": np.array(concept, dtype=object),
                "obs_trait": np.array(trait, dtype=object)}



class ModelSpec:
    """Interface of a model specification (subclasses are frozen dataclasses)."""

    name = "?"
    priors: dict
    reported: tuple = ()
    needs_probes = False
    multi_run = False

    # -- to be provided by each model ----------------------------------------------------
    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, cd: ChainData) -> None:
        """Refuse data the model cannot fit, with a clear message."""
        if len(cd.runs) > 1 and not self.multi_run:
            raise QtraitError(f"model {self.name!r} fits one run; for several runs use "
                              "--model hier")
        if self.multi_run and len(cd.runs) < 2:
            raise QtraitError(f"model {self.name!r} needs several runs (it regresses "
                              "chain-level parameters on the design); got one. Use "
                              "breeder, tilt or exact for a single run")
        if self.needs_probes:
            missing = [s for s in ("probe_w1", "probe_uncond") if not cd.has(s)]
            if missing:
                raise QtraitError(f"model {self.name!r} needs the probe sets, and the run "
                                  f"has no {', '.join(missing)}; use --model breeder")

    def build(self, cd: ChainData):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, draws: dict, cd: ChainData, start: int, t_end: int,
                rng: np.random.Generator) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def layout(self, cd: ChainData) -> Layout:
        """Observations the likelihood uses: the guided set from generation 1, the probe
        sets (when the model uses them) from generation 0."""
        lay = Layout()
        for s in SETS:
            if s != "guided" and not self.needs_probes:
                continue
            v = cd.valid(s).copy()
            if s == "guided":
                v[0] = False
                prev = cd.valid("guided")
                v[1:] &= prev[:-1]
            g, j = np.nonzero(v)
            if len(g):
                lay.index[s] = (g, j)
        return lay

    def design_constants(self, cd: ChainData) -> tuple:
        return ()

    def signature(self, cd: ChainData) -> tuple:
        prior_blob = repr(sorted((k, np.asarray(v).tolist()) for k, v in self.priors.items()))
        return (self.name, prior_blob, cd.G, cd.J, len(cd.runs), self.design_constants(cd))

    def arrays(self, cd: ChainData, upto: int | None = None) -> dict[str, np.ndarray]:
        """The data arrays of the graph (NaN replaced by 1: never read by the likelihood),
        with the observation masks; ``upto`` leaves generations >= upto unobserved."""
        out = {}
        lay = self.layout(cd)
        for s in (SETS if self.needs_probes else ("guided",)):
            mask = np.zeros((cd.G, cd.J))
            if s in lay.index:
                mask[lay.index[s]] = 1.0
            if upto is not None:
                mask[upto:] = 0.0
            out[f"data_mask_{s}"] = mask
        for s in SETS if self.needs_probes else ("guided",):
            st = cd.sets[s]
            for f in ("n", "mean", "var", "kurt"):
                a = getattr(st, f)
                fill = {"kurt": 0.0, "n": 2.0}.get(f, 1.0)
                out[f"data_{s}_{f}"] = np.where(np.isfinite(a), a, fill)
        # the previous generation's guided moments on the same grid (row 0: placeholder),
        # so the generation map is elementwise over (generation, cell)
        for f in ("mean", "var"):
            a = np.ones_like(cd.sets["guided"].mean)
            prev = getattr(cd.sets["guided"], f)[:-1]
            a[1:] = np.where(np.isfinite(prev) & (prev > 0 if f == "var" else True), prev, 1.0)
            out[f"data_prev_{f}"] = a
        return out

    def data_vars(self, cd: ChainData) -> dict:
        """pm.Data containers for :meth:`arrays` (inside a model context)."""
        import pymc as pm

        return {k[len("data_"):]: pm.Data(k, v) for k, v in self.arrays(cd).items()}

    def pointwise(self, posterior, cd: ChainData, upto: int | None = None):
        """The flat pointwise log-likelihood (chain, draw, obs) of the observations the fit
        used, gathered from the ``log_lik_<set>`` matrices, with its obs coordinates."""
        lay = self.layout(cd)
        parts, keep = [], []
        for s, (g, j) in lay.index.items():
            m = posterior[f"log_lik_{s}"].values[:, :, g, j]
            sel = np.ones(len(g), bool) if upto is None else g < upto
            parts.append(m[:, :, sel])
            keep.append(sel)
        coords = lay.obs_coords(cd)
        sel = np.concatenate(keep)
        return np.concatenate(parts, axis=2), {k: v[sel] for k, v in coords.items()}

    def likelihood(self, D: dict, lay: Layout, moments: dict, extra_mean=0.0, extra_rel=0.0):
        """Log-likelihood of every observation, as (generation, cell) matrices per set
        (deterministics ``log_lik_<set>``) and their masked sum (a potential).

        ``moments[set] = (mean, var)``: tensors (G, J) of the latent moments the set samples.
        Which entries are observed is data (``mask_<set>``), not graph structure: the same
        compiled model fits any subset of generations (leave-future-out refits), and
        indexing inside the graph would make PyTensor's rewrites explode. Unobserved
        entries hold safe placeholders."""
        import pymc as pm
        import pytensor.tensor as pt

        total = 0.0
        for s in lay.index:
            mean, var = moments[s]
            guided = s == "guided"
            ll = set_loglik(D[f"{s}_mean"], D[f"{s}_var"], D[f"{s}_n"], D[f"{s}_kurt"],
                            mean, var, extra_mean if guided else 0.0,
                            extra_rel if guided else 0.0)
            total = total + pt.sum(pt.switch(D[f"mask_{s}"] > 0.5, ll, 0.0))
            pm.Deterministic(f"log_lik_{s}", ll, dims=("generation", "cell"))
        pm.Potential("likelihood", total)

    def coords(self, cd: ChainData, lay: Layout) -> dict:
        return {"cell": cd.cell_labels(), "generation": cd.generations}


def first_row(G: int) -> np.ndarray:
    """(G, 1) constant, 1 in row 0 (generation 0): for elementwise switches."""
    r = np.zeros((G, 1))
    r[0] = 1.0
    return r


def pooled(name: str, loc_prior: tuple, sd_scale: float, dims: str = "cell",
           group_loc=None):
    """Non-centred partial pooling: name = loc + sd * z, z ~ N(0, 1) per cell.

    ``group_loc`` replaces the population location by a per-cell tensor (the
    hierarchical model's regression on the design)."""
    import pymc as pm

    loc = pm.Normal(f"{name}_mu", *loc_prior) if group_loc is None else group_loc
    sd = pm.HalfNormal(f"{name}_sd", sd_scale)
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims)
    return loc + sd * z


#: what ``ModelSpec.forward`` returns per generation: the latent guided moments, and the
#: moments observed in a guided set of the run's size drawn from them (what the next
#: generation is finetuned on, and what a user measures: horizons are scored on these)
FORWARD_KEYS = ("guided_mean", "guided_var", "observed_mean", "observed_var")


def sample_guided(rng, mean, var, n, kurt):
    """Observed (zbar, s2) of a guided set of n images drawn from latent (mean, var):
    the mean is Gaussian, the variance Gamma with the kurtosis-adjusted spread."""
    zbar = mean + np.sqrt(var / n) * rng.standard_normal(np.shape(mean))
    rel = 2.0 / (n - 1.0) + kurt / n
    shape = 1.0 / rel
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = rng.gamma(np.where(np.isfinite(shape), shape, 1.0),
                       np.where(np.isfinite(var), var, np.nan) / shape)
    return zbar, np.where(np.isfinite(var), s2, np.nan)


def start_state(cd: ChainData, start: int, shape: tuple):
    """What a forward simulation from generation ``start`` starts from: the guided set of
    generation start-1 (its size, kurtosis, and observed mean and variance broadcast to
    ``shape``, e.g. (draws, cells))."""
    g = cd.sets["guided"]
    n = last_valid(g.n, start)
    kurt = np.nan_to_num(last_valid(g.kurt, start))
    zbar = np.broadcast_to(last_valid(g.mean, start), shape).copy()
    s2 = np.broadcast_to(last_valid(g.var, start), shape).copy()
    return n, kurt, zbar, s2


def last_valid(a: np.ndarray, upto: int) -> np.ndarray:
    """Per cell, the last finite value of a (G, J) array in rows < upto."""
    out = np.full(a.shape[1], np.nan)
    for g in range(min(upto, a.shape[0])):
        out = np.where(np.isfinite(a[g]), a[g], out)
    return out
