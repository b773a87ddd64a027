"""What every model shares: the specification interface, the likelihood of sufficient
statistics, partial pooling, and the pointwise log-likelihood layout.

A model is a *specification* (a frozen dataclass: name, priors, what it reports) that
builds a PyMC graph from a :class:`~qtrait.models.data.ChainData` and simulates forward
in numpy from posterior (or prior) draws. The graph's data enter as ``pm.Data`` so a
compiled model can be reused for another data set of the same layout
(:func:`qtrait.fit.fit` keeps such a cache); the layout (shapes, which entries are
observed, the design constants) is the model's :meth:`ModelSpec.signature`.

Likelihood (theory.md section 4), per generation, cell and sample set, from the set's
size N, mean and variance s2, with the skewness gamma_1 and excess kurtosis kappa of the
cell's within-set distribution pooled over generations and concepts
(:func:`~qtrait.models.data.pooled_shape`):

    s2          ~ Gamma with mean V and relative variance r = 2/(N-1) + kappa/N (+ extra)
    zbar | s2   ~ Normal(mean + b (s2 - V), (1 - rho^2) V / N (+ extra))

where rho^2 = gamma_1^2 / (N r) is the squared correlation of a set's mean and variance
(their covariance is mu_3 / N): a skewed trait's mean and variance move together.

The pointwise log-likelihood (the sum of the two terms of one set of one cell in one
generation) is a deterministic ``log_lik`` over a flat ``obs`` dimension, moved to the
inference data's ``log_likelihood`` group after sampling with its coordinates (run,
generation, set, concept, trait), so PSIS-LOO and leave-future-out are defined per
observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..errors import QtraitError
from .data import SETS, ChainData, pooled_shape

LOG_2PI = float(np.log(2 * np.pi))


#: the likelihood's version, part of every fit's configuration hash: a saved posterior
#: of an earlier likelihood is never served for this one
LIKELIHOOD_VERSION = "joint-mean-var/pooled-shape/1"

#: the name of the one ``pm.Data`` vector holding a model's data (:meth:`ModelSpec.packed`)
PACKED = "data_packed"

#: the largest squared correlation between a set's mean and variance the likelihood
#: uses (a cap for shape estimates at Pearson's bound, where the law degenerates)
RHO2_MAX = 0.9


def mean_var_law(n, kurt, skew, var, extra_mean=0.0, extra_rel=0.0, lib=None):
    """The joint sampling law of one set's (mean, variance) given latent (mean, var), in
    the parts both the likelihood and the simulator use:

        s2            Gamma, mean var, relative variance r = 2/(N-1) + kurt/N + extra_rel
        zbar | s2     Normal(mean + b (s2 - var), v)

    with Cov(zbar, s2) = mu_3 / N = skew var^{3/2} / N, so the squared correlation is
    rho^2 = skew^2 / (N r) (capped at RHO2_MAX), b = rho sqrt(var / N) / (var sqrt(r)) and
    v = (1 - rho^2) var / N + extra_mean. Returns (r, b, v); ``lib`` is numpy (None) or
    pytensor.tensor."""
    lib = np if lib is None else lib
    r = 2.0 / (n - 1.0) + kurt / n + extra_rel
    cap = float(np.sqrt(RHO2_MAX))
    rho = lib.clip(skew / lib.sqrt(n * r), -cap, cap)
    b = rho / lib.sqrt(n * var * r)
    v = (1.0 - rho ** 2) * var / n + extra_mean
    return r, b, v


def log_gamma(x, lib=np):
    """log Gamma(x) for x > 0 from elementary functions: Stirling's series at x + 6 and
    the recurrence Gamma(x + 6) = x (x + 1) ... (x + 5) Gamma(x). Relative error below
    1e-10 for every x > 0 (the series' first omitted term is 1/(1188 y^9) at y >= 6;
    tests/models/test_likelihood.py checks it against scipy from 1e-3 to 1e8).

    Why not ``pt.gammaln``: its gradient is the digamma function, which PyTensor's numba
    backend calls through a scipy function pointer and so cannot cache on disk; one such
    node keeps the whole compiled log-density out of the cache, and every new process
    compiles it again. This form's gradient is elementary."""
    y = x + 6.0
    shift = lib.log(x * (x + 1.0) * (x + 2.0) * (x + 3.0) * (x + 4.0) * (x + 5.0))
    r = 1.0 / y
    r2 = r * r
    series = r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 / 1680)))
    return (y - 0.5) * lib.log(y) - y + 0.5 * LOG_2PI + series - shift


def pack(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The arrays raveled and concatenated in the order of their sorted names (the layout
    :meth:`ModelSpec.data_vars` slices its views from)."""
    return np.concatenate([np.ravel(arrays[k]) for k in sorted(arrays)])


def set_loglik(x_mean, x_var, n, kurt, mean, var, extra_mean=0.0, extra_rel=0.0,
               symbolic: bool = True, skew=0.0):
    """Log-likelihood of one set's observed mean and variance given latent (mean, var),
    from their joint law (:func:`mean_var_law`): a Gamma with mean ``var`` and relative
    variance 2/(N-1) + kurt/N + extra_rel for the variance, and the mean Normal given the
    variance, its covariance with the variance mu_3 / N carried by ``skew``. With
    ``skew = 0`` the two are independent: Normal(mean, var/N + extra_mean) for the mean.
    PyTensor for the models' graphs, numpy (``symbolic=False``) for scoring forecasts:
    one formula."""
    if symbolic:
        import pytensor.tensor as pt

        lib = pt
        gammaln = partial(log_gamma, lib=pt)
    else:
        from scipy.special import gammaln

        lib = np
    log = lib.log
    r, b, v = mean_var_law(n, kurt, skew, var, extra_mean, extra_rel, lib)
    resid = x_mean - mean - b * (x_var - var)
    ll = -0.5 * (LOG_2PI + log(v) + resid ** 2 / v)
    alpha = 1.0 / r
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

    def conditions_on(self) -> str:
        """What the model's likelihood conditions on, in words (said next to every model
        comparison: two models that see different data are not scored like for like)."""
        if self.needs_probes:
            return ("the guided sets and both probe sets (w = 1 and unconditional) of the "
                    "fitted generations; its map also uses the previous generation's probes")
        return "the guided sets of the fitted generations only (no probes)"

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
            for f in ("n", "mean", "var"):
                a = getattr(st, f)
                out[f"data_{s}_{f}"] = np.where(np.isfinite(a), a, 2.0 if f == "n" else 1.0)
            # the shape of the within-set law, pooled over the generations the fit sees
            shape = pooled_shape(cd, s, upto)
            out[f"data_{s}_kurt"] = np.broadcast_to(shape.kurt, (cd.G, cd.J)).copy()
            out[f"data_{s}_skew"] = np.broadcast_to(shape.skew, (cd.G, cd.J)).copy()
        # the moments of what each generation was finetuned on (the previous guided set,
        # or every guided set so far: parent_moments) on the same grid (row 0:
        # placeholder), so the generation map is elementwise over (generation, cell)
        parents = parent_moments(cd)
        for f, prev in zip(("mean", "var"), parents[:2]):
            a = np.ones_like(cd.sets["guided"].mean)
            prev = prev[:-1]
            a[1:] = np.where(np.isfinite(prev) & (prev > 0 if f == "var" else True), prev, 1.0)
            out[f"data_prev_{f}"] = a
        return out

    def packed(self, cd: ChainData, upto: int | None = None) -> dict[str, np.ndarray]:
        """:meth:`arrays` as the graph holds them: one flat vector, ``{PACKED: vector}``,
        the arrays raveled and concatenated in the order of their sorted names. What a
        compiled model's data are swapped for (nutpie's ``with_data``, ``pm.set_data``)."""
        return {PACKED: pack(self.arrays(cd, upto))}

    def data_vars(self, cd: ChainData) -> dict:
        """The data of :meth:`arrays` inside a model context, by name without the
        ``data_`` prefix: views of one ``pm.Data`` vector (:meth:`packed`).

        One container, not one per array: nutpie unpacks every shared variable in
        generated numba code, and compiling that code grew with their number (9 arrays
        for breeder, 20 for tilt; bench/bench_fit.py measures what a new process pays
        against one container per array). Slicing a vector costs nothing at run time."""
        import pymc as pm

        arrs = self.arrays(cd)
        flat = pm.Data(PACKED, pack(arrs))
        out, start = {}, 0
        for k in sorted(arrs):
            a = arrs[k]
            out[k[len("data_"):]] = flat[start:start + a.size].reshape(a.shape)
            start += a.size
        return out

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
            ll, seen = observed_loglik(D, s, mean, var, extra_mean if guided else 0.0,
                                       extra_rel if guided else 0.0)
            total = total + pt.sum(seen)
            pm.Deterministic(f"log_lik_{s}", ll, dims=("generation", "cell"))
        pm.Potential("likelihood", total)

    def coords(self, cd: ChainData, lay: Layout) -> dict:
        return {"cell": cd.cell_labels(), "generation": cd.generations}


def observed_loglik(D: dict, set_name: str, mean, var, extra_mean=0.0, extra_rel=0.0):
    """(ll, seen): the log-likelihood matrix (generation, cell) of set ``set_name``'s
    moments given latent (mean, var) (:func:`set_loglik`, from the model's data ``D``),
    and the same with the entries not observed (``mask_<set>``) set to 0."""
    import pytensor.tensor as pt

    s = set_name
    ll = set_loglik(D[f"{s}_mean"], D[f"{s}_var"], D[f"{s}_n"], D[f"{s}_kurt"], mean, var,
                    extra_mean, extra_rel, skew=D[f"{s}_skew"])
    return ll, pt.switch(D[f"mask_{s}"] > 0.5, ll, 0.0)


def first_row(G: int) -> np.ndarray:
    """(G, 1) constant, 1 in row 0 (generation 0): for elementwise switches."""
    r = np.zeros((G, 1))
    r[0] = 1.0
    return r


def pooled(name: str, loc_prior: tuple, sd_scale: float, dims: str = "cell",
           group_loc=None):
    """Non-centred partial pooling: name = loc + sd * z, z ~ N(0, 1) per cell, with sd ~
    HalfNormal(``sd_scale``), or LogNormal(*``sd_scale``) when it is a (mu, sigma) pair.

    ``group_loc`` replaces the population location by a per-cell tensor (the
    hierarchical model's regression on the design)."""
    import pymc as pm

    loc = pm.Normal(f"{name}_mu", *loc_prior) if group_loc is None else group_loc
    sd = (pm.LogNormal(f"{name}_sd", *sd_scale) if isinstance(sd_scale, (tuple, list))
          else pm.HalfNormal(f"{name}_sd", sd_scale))
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims)
    return loc + sd * z


#: what ``ModelSpec.forward`` returns per generation: the latent guided moments, and the
#: moments observed in a guided set of the run's size drawn from them (what the next
#: generation is finetuned on, and what a user measures: horizons are scored on these)
FORWARD_KEYS = ("guided_mean", "guided_var", "observed_mean", "observed_var")


def sample_guided(rng, mean, var, n, kurt, skew=0.0):
    """Observed (zbar, s2) of a guided set of n images drawn from latent (mean, var), from
    the joint law of :func:`mean_var_law`: s2 Gamma with the kurtosis-adjusted spread, the
    mean Normal given s2 (its covariance with s2 from the skewness)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r, b, v = mean_var_law(n, kurt, skew, var)
        shape = 1.0 / r
        s2 = rng.gamma(np.where(np.isfinite(shape), shape, 1.0),
                       np.where(np.isfinite(var), var, np.nan) / shape)
        zbar = mean + b * (s2 - var) + np.sqrt(v) * rng.standard_normal(np.shape(mean))
    return zbar, np.where(np.isfinite(var), s2, np.nan)


def accumulates(cd: ChainData) -> np.ndarray:
    """(J,) boolean: the cells whose run finetunes each generation on every guided set so
    far (design ``training_data = "accumulate"``) rather than on the last one."""
    acc = [cd.runs[r].design.get("training_data", "replace") == "accumulate"
           for r in range(len(cd.runs))]
    return np.array(acc, dtype=bool)[cd.run_of_cell]


def pool_sets(n1, m1, v1, n2, m2, v2):
    """Size, mean and sample variance (ddof 1) of the union of two sets given theirs."""
    n = n1 + n2
    m = (n1 * m1 + n2 * m2) / n
    ss = (n1 - 1) * v1 + (n2 - 1) * v2 + n1 * n2 / n * (m1 - m2) ** 2
    return n, m, ss / (n - 1)


def parent_moments(cd: ChainData):
    """(mean, var, n), arrays (G, J): row t holds the moments of the data generation t + 1
    is finetuned on. The guided set of generation t under ``training_data = "replace"``;
    under ``"accumulate"`` every guided set of generations 0..t pooled (sizes, means and
    variances combined exactly). NaN where the guided set of t is missing."""
    g = cd.sets["guided"]
    mean, var, n = g.mean.copy(), g.var.copy(), g.n.copy()
    acc = accumulates(cd)
    if acc.any():
        parents = Parents(n[0].copy(), mean[0].copy(), var[0].copy(), acc)
        for t in range(1, cd.G):
            has = np.isfinite(g.mean[t]) & np.isfinite(g.var[t])
            parents.add(g.n[t], g.mean[t], g.var[t], where=has)
            mean[t] = np.where(has, parents.mean, mean[t])
            var[t] = np.where(has, parents.var, var[t])
            n[t] = np.where(has, parents.n, n[t])
    return mean, var, n


@dataclass
class Parents:
    """The moments of what the next generation is finetuned on, during a forward
    simulation (arrays of the simulation's shape): :meth:`add` a newly sampled guided
    set, which replaces them or is pooled into them (``accumulate``, per cell)."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    accumulate: np.ndarray   # (J,)

    def add(self, n, zbar, s2, where=True) -> None:
        """Take in a new set of size ``n`` with moments (zbar, s2), only ``where`` it
        exists (elsewhere the training data stay as they were)."""
        n = np.broadcast_to(n, np.shape(zbar))
        if self.accumulate.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                pn, pm, pv = pool_sets(self.n, self.mean, self.var, n, zbar, s2)
            n, zbar, s2 = (np.where(self.accumulate, a, b)
                           for a, b in ((pn, n), (pm, zbar), (pv, s2)))
        self.n, self.mean, self.var = (np.where(where, a, b) for a, b in
                                       ((n, self.n), (zbar, self.mean), (s2, self.var)))


@dataclass
class Start:
    """What a forward simulation from generation ``start`` starts from: the set size of
    generation start-1, the pooled shape of the law of the sets it will draw, and the
    :class:`Parents` (the training data of generation ``start``)."""

    n: np.ndarray
    kurt: np.ndarray
    skew: np.ndarray
    parents: Parents


def start_state(cd: ChainData, start: int, shape: tuple) -> Start:
    """The :class:`Start` of a simulation from generation ``start`` with arrays of
    ``shape`` (e.g. (draws, cells)); the skewness and kurtosis are pooled over the
    generations < start."""
    g = cd.sets["guided"]
    law = pooled_shape(cd, "guided", start)
    pm, pv, pn = parent_moments(cd)
    parents = Parents(*(np.broadcast_to(last_valid(a, start), shape).copy()
                        for a in (pn, pm, pv)), accumulates(cd))
    return Start(last_valid(g.n, start), law.kurt, law.skew, parents)


def last_valid(a: np.ndarray, upto: int) -> np.ndarray:
    """Per cell, the last finite value of a (G, J) array in rows < upto."""
    out = np.full(a.shape[1], np.nan)
    for g in range(min(upto, a.shape[0])):
        out = np.where(np.isfinite(a[g]), a[g], out)
    return out
