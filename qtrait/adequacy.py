"""Does a fitted model describe its run? Adequacy checks (docs/models.md, "Adequacy").

Two checks, both on the guided set's per-generation moments of every cell (its mean
zbar and variance s2, in generation-0 SD units), the observations every model predicts:

* **One-step-ahead leave-future-out PIT.** For t = t0..G-2 the model is refitted on
  generations 0..t (the same compiled model, later generations masked: exact refits,
  not an importance-sampling shortcut) and predicts generation t+1 from its draws,
  learning noise included. The PITs of a set are the Rosenblatt transform of its
  (s2, zbar) under the likelihood's joint law: for s2, the mean over draws of the Gamma
  CDF with mean V_s and relative variance 2/(N-1) + kurt/N; for zbar, its Normal CDF
  given the observed s2 (the covariance from the skewness), the draws weighted by their
  density at s2. A model that describes the chain gives PIT values uniform on (0, 1)
  and one-step central 90% intervals that cover 90% of the observations (a PIT in
  [0.05, 0.95]).
* **Posterior predictive check of each generation's moments** (in sample: the fit on
  all generations): per generation t >= 1, the cells' average standardised mean and
  average log variance, replicated one step from the observed generation t-1 for every
  posterior draw; the two-sided posterior predictive p-value of the observed value.

**The uniformity test** is the Rao-Scott second-order corrected Pearson chi-square in
its F form (Rao and Scott 1981, 1984; the default of R survey's ``svychisq``) on 10
equal PIT bins, with the predicted generations as clusters: the cells of one generation
share its finetuning, so their PITs are not independent, and the plain chi-square would
reject a calibrated model (tests/models/test_adequacy.py measures both).
Correlation *across* generations within a cell (a cell the model misses in every
generation) is not excused: that is the misfit the check is for.

**Verdict.** A fit is adequate when the test's p-value is >= 0.01, one-step 90% coverage
lies in [0.85, 0.95], and no per-generation posterior predictive p-value is below 0.01
divided by the number of them (Bonferroni over generations and the two statistics;
in-sample predictive p-values are conservative, so one that small is a real misfit).
The worst cells (largest |mean probit PIT| x sqrt(n)) are listed either way. A failing
model is said to fail next to its numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from .models.base import mean_var_law
from .models.data import pooled_shape

#: the first training window of the one-step PIT: generations 0..LFO_START
LFO_START = 2
#: the fewest generations a check needs: two predicted generations (the test's clusters)
MIN_GENERATIONS = LFO_START + 3
#: the verdict's thresholds (docs/models.md)
P_MIN = 0.01
COVERAGE = (0.85, 0.95)
BINS = 10
STATISTICS = ("mean", "var")
TEST_NAME = ("Rao-Scott second-order F test of uniform PITs (10 bins, clusters = "
             "predicted generations)")


@dataclass
class PitTest:
    """The uniformity test of :func:`rao_scott_uniformity`."""

    statistic: float        # F = X2 / sum(delta)
    raw: float              # Pearson X2 before the correction
    deff: float             # mean generalized design effect, mean(delta)
    df: tuple               # (nu, nu (k - 1))
    p_value: float
    n: int
    clusters: int
    bins: int

    def to_dict(self) -> dict:
        return {"test": TEST_NAME, "statistic": self.statistic, "pearson": self.raw,
                "design_effect": self.deff, "df": list(self.df), "p_value": self.p_value,
                "n": self.n, "clusters": self.clusters, "bins": self.bins}


def rao_scott_uniformity(pit, cluster, bins: int = BINS) -> PitTest:
    """Rao-Scott second-order test, F form (as R survey's ``svychisq``), that ``pit``
    values are uniform on (0, 1), the observations grouped in ``cluster`` (labels;
    observations of one cluster may be dependent, clusters independent).

    The bin shares' cluster-robust covariance V (ratio estimator over clusters) against
    their multinomial covariance P0 under uniformity gives the generalized design
    effects delta (eigenvalues of P0^-1 V, over the first bins - 1 shares). With
    nu = (bins - 1) / (1 + cv(delta)^2), F = X2 / sum(delta) is referred to
    F(nu, nu (k - 1)) for k clusters: the denominator degrees of freedom carry the
    uncertainty of V, which matters with the few clusters (generations) a run has."""
    pit = np.asarray(pit, dtype=float)
    cluster = np.asarray(cluster)
    ok = np.isfinite(pit)
    pit, cluster = pit[ok], cluster[ok]
    n = len(pit)
    if n < 2 * bins:
        raise ValueError(f"the PIT test needs at least {2 * bins} values, got {n}")
    b = np.minimum((pit * bins).astype(int), bins - 1)
    onehot = np.eye(bins)[b]                                  # (n, bins)
    share = onehot.mean(axis=0)
    p0 = np.full(bins, 1.0 / bins)
    raw = float(n * np.sum((share - p0) ** 2 / p0))
    labels, inv = np.unique(cluster, return_inverse=True)
    k = len(labels)
    if k < 2:
        raise ValueError("the PIT test needs observations from at least 2 clusters")
    totals = np.zeros((k, bins))
    np.add.at(totals, inv, onehot)
    sizes = np.bincount(inv, minlength=k)[:, None]
    resid = (totals - share * sizes)[:, :-1]
    V = k / (k - 1) * resid.T @ resid / n ** 2
    P0 = (np.diag(p0[:-1]) - np.outer(p0[:-1], p0[:-1])) / n
    delta = np.clip(np.real(np.linalg.eigvals(np.linalg.solve(P0, V))), 0.0, None)
    mean_d = max(float(np.mean(delta)), 1e-12)
    nu = (bins - 1) / (1.0 + float(np.var(delta)) / mean_d ** 2)
    F = raw / (mean_d * (bins - 1))           # X2 / c ~ chi2_nu, with c nu = sum(delta)
    df = (nu, nu * (k - 1))
    return PitTest(F, raw, mean_d, df, float(stats.f.sf(F, *df)), n, k, bins)


def predictive_cdf(x_mean, x_var, n, kurt, mean, var, skew=0.0):
    """The Rosenblatt transform of a set's observed (mean, variance) under the joint law
    of :func:`qtrait.models.base.set_loglik`, mixed over latent draws (mean, var) (S, J):
    P(s2 <= x_var), and P(zbar <= x_mean | s2 = x_var) (each draw weighted by its density
    at x_var). Under the model the two are independent uniforms. Arrays (J,)."""
    with np.errstate(all="ignore"):
        r, b, v = mean_var_law(n, kurt, skew, var)
        shape = 1.0 / r
        p_var = np.mean(special.gammainc(shape, x_var * shape / var), axis=0)
        log_dens = stats.gamma.logpdf(x_var, shape, scale=var / shape)     # (S, J)
        log_dens = np.where(np.isfinite(log_dens), log_dens, -np.inf)
        w = np.exp(log_dens - np.max(log_dens, axis=0))
        w = w / np.sum(w, axis=0)
        p_mean = np.sum(w * special.ndtr((x_mean - mean - b * (x_var - var)) / np.sqrt(v)),
                        axis=0)
    return p_mean, p_var


@dataclass
class Adequacy:
    """What :func:`check` found: one-step PIT values with their labels, the test, the
    coverage of one-step 90% intervals, the worst cells and the per-generation PPC."""

    model: str
    pit: np.ndarray                 # (n,)
    generation: np.ndarray          # (n,) the predicted generation
    cell: np.ndarray                # (n,) cell labels concept/trait
    statistic: np.ndarray           # (n,) "mean" or "var"
    test: PitTest | None            # None: too few PIT values to test (< 2 x BINS)
    coverage: float
    worst: list[dict]
    ppc: list[dict]
    steps: list[dict] = field(default_factory=list)   # diagnostics of each refit

    @property
    def refits(self) -> int:
        return len(self.steps)

    @property
    def ppc_min(self) -> tuple[float, int]:
        """The smallest per-generation PPC p-value and how many there are."""
        ps = [p[s]["p"] for p in self.ppc for s in ("mean", "log_var")]
        return (min(ps), len(ps)) if ps else (1.0, 0)

    @property
    def ppc_failures(self) -> list[int]:
        """The generations whose PPC p-value falls below the verdict's bound, P_MIN / m."""
        return ppc_failing(self.ppc)

    def mean_failures(self, most: int = 3) -> list[dict]:
        """For each generation whose cell-averaged mean fails its check (:func:`ppc_failing`):
        the generation, its gap (observed less replicated median) and the ``most`` traits
        that contribute most to it (:func:`trait_gaps`)."""
        rows = {p["generation"]: p for p in self.ppc}
        return [{"generation": t,
                 "gap": rows[t]["mean"]["observed"] - rows[t]["mean"]["replicated"],
                 "traits": rows[t]["mean"].get("by_trait", [])[:most]}
                for t in ppc_failing(self.ppc, ("mean",))]

    @property
    def ppc_ok(self) -> bool:
        return not self.ppc_failures

    @property
    def judged(self) -> bool:
        """False when the run gives too few PIT values for the uniformity test."""
        return self.test is not None

    @property
    def ok(self) -> bool | None:
        """The verdict; None when not judged (too few PIT values)."""
        if self.test is None:
            return None
        return (self.test.p_value >= P_MIN and self.ppc_ok
                and COVERAGE[0] <= self.coverage <= COVERAGE[1])

    @property
    def refits_ok(self) -> bool:
        return all(s["ok"] for s in self.steps)

    def to_dict(self) -> dict:
        by = {}
        for s in STATISTICS:
            m = self.statistic == s
            by[s] = {"n": int(m.sum()),
                     "coverage": float(np.mean((self.pit[m] >= 0.05) & (self.pit[m] <= 0.95)))
                     if m.any() else None}
        return {"ok": self.ok, "model": self.model,
                "rule": f"PIT test p >= {P_MIN}, one-step 90% coverage in "
                        f"[{COVERAGE[0]}, {COVERAGE[1]}], every per-generation PPC p >= "
                        f"{P_MIN} / (their number)",
                "ppc_ok": self.ppc_ok, "ppc_min_p": self.ppc_min[0],
                "pit_test": None if self.test is None else self.test.to_dict(),
                "coverage90": self.coverage,
                "by_statistic": by, "worst_cells": self.worst, "ppc": self.ppc,
                "refits": self.refits, "refits_converged": self.refits_ok,
                "steps": self.steps}

    def verdict(self) -> str:
        p, m = self.ppc_min
        if self.test is None:
            return (f"adequacy not judged: {len(self.pit)} one-step PIT values, the test "
                    f"needs {2 * BINS} (more cells or generations); one-step 90% coverage "
                    f"{self.coverage:.2f}, smallest per-generation PPC p {p:.2g} of {m}")
        word = "adequate" if self.ok else "INADEQUATE"
        return (f"adequacy {word}: one-step PIT uniformity p {self.test.p_value:.2g} "
                f"(Rao-Scott F {self.test.statistic:.1f}, deff {self.test.deff:.1f}, "
                f"n {self.test.n}), one-step 90% coverage {self.coverage:.2f}, "
                f"smallest per-generation PPC p {p:.2g} of {m}")


def one_step_pit(result, t_next: int, seed: int = 0, max_draws: int = 1000) -> dict:
    """PIT values of generation ``t_next``'s guided moments under a fit on generations <
    ``t_next`` (``result``): arrays (J,) per statistic, and a validity mask."""
    from .forecast import posterior_draws

    cd, spec = result.data, result.spec
    draws = posterior_draws(result.idata, max_draws=max_draws)
    fwd = spec.forward(draws, cd, start=t_next, t_end=t_next,
                       rng=np.random.default_rng(seed))
    g = cd.sets["guided"]
    law = pooled_shape(cd, "guided", t_next)
    p_mean, p_var = predictive_cdf(g.mean[t_next], g.var[t_next], g.n[t_next], law.kurt,
                                   fwd["guided_mean"][:, 0], fwd["guided_var"][:, 0],
                                   law.skew)
    valid = cd.valid("guided")
    ok = valid[t_next] & valid[t_next - 1]
    return {"mean": p_mean, "var": p_var, "ok": ok}


def ppc_generations(result, seed: int = 0, max_draws: int = 1000) -> list[dict]:
    """Posterior predictive p-values of each generation's cell-averaged standardised
    mean and log variance, replicated one step from the observed previous generation.

    Each generation's ``mean`` also says which traits its gap comes from (``by_trait``:
    :func:`trait_gaps`)."""
    from .forecast import posterior_draws

    cd, spec = result.data, result.spec
    draws = posterior_draws(result.idata, max_draws=max_draws)
    rng = np.random.default_rng(seed)
    g = cd.sets["guided"]
    valid = cd.valid("guided")
    trait_of = np.asarray(cd.trait_index())
    traits = cd.traits()
    rows = []
    for t in range(1, cd.G):
        ok = valid[t] & valid[t - 1]
        if not ok.any():
            continue
        fwd = spec.forward(draws, cd, start=t, t_end=t, rng=rng)
        rep_m = fwd["observed_mean"][:, 0][:, ok]
        rep_v = fwd["observed_var"][:, 0][:, ok]
        row = {"generation": cd.generations[t]}
        for name, rep, obs in (("mean", np.mean(rep_m, axis=1), np.mean(g.mean[t][ok])),
                               ("log_var", np.mean(np.log(rep_v), axis=1),
                                np.mean(np.log(g.var[t][ok])))):
            rep = rep[np.isfinite(rep)]
            p = float(np.mean(rep >= obs)) if len(rep) else float("nan")
            row[name] = {"observed": float(obs), "replicated": float(np.median(rep))
                         if len(rep) else None, "p": min(1.0, 2 * min(p, 1 - p))}
        row["mean"]["by_trait"] = trait_gaps(g.mean[t][ok], rep_m, trait_of[ok], traits)
        rows.append(row)
    return rows


def trait_gaps(observed: np.ndarray, replicated: np.ndarray, trait_of: np.ndarray,
               traits: list[str]) -> list[dict]:
    """Where a generation's cell-averaged mean parts from its replicate, per trait.

    ``observed``: (J,) the cells' guided means; ``replicated``: (S, J) their replicates;
    ``trait_of``: (J,) each cell's index into ``traits``. Per trait with cells, its
    ``share`` of the cells, its ``gap`` (the observed mean over its cells less the mean of
    their replicated average), ``z`` (that gap over the replicated average's SD; None
    where the replicates do not vary) and its
    ``contribution`` to the cell-averaged gap, share x gap: the contributions add up to
    the observed cell average less the mean of its replicate (the ``replicated`` of the
    check itself is a median, so the sum is near it, not equal). Largest contribution
    first."""
    out = []
    J = len(observed)
    for k, name in enumerate(traits):
        m = trait_of == k
        if not m.any():
            continue
        rep = replicated[:, m].mean(axis=1)
        rep = rep[np.isfinite(rep)]
        if not len(rep):
            continue
        gap = float(observed[m].mean() - rep.mean())
        sd = float(rep.std())
        out.append({"trait": name, "share": float(m.sum() / J), "gap": gap,
                    "z": gap / sd if sd > 0 else None,
                    "contribution": float(m.sum() / J * gap)})
    out.sort(key=lambda r: -abs(r["contribution"]))
    return out


def ppc_failing(ppc: list[dict], statistics=("mean", "log_var")) -> list[int]:
    """The generations of a per-generation check (:func:`ppc_generations`, or the
    ``ppc`` of a saved verdict) where one of ``statistics`` fails: p below the verdict's
    bound P_MIN / m, with m the number of p-values the check has (two a generation)."""
    m = 2 * len(ppc)
    return [p["generation"] for p in ppc
            if any(p[s]["p"] < P_MIN / max(m, 1) for s in statistics)]


def worst_cells(pit, cell, statistic, most: int = 5) -> list[dict]:
    """The cells (and statistic) whose PITs sit furthest from uniform: |mean probit| x
    sqrt(n), a z-score under independence across generations."""
    z = special.ndtri(np.clip(pit, 1e-6, 1 - 1e-6))
    rows = []
    for c in np.unique(cell):
        for s in STATISTICS:
            m = (cell == c) & (statistic == s)
            if m.sum() < 2:
                continue
            score = float(np.mean(z[m]) * np.sqrt(m.sum()))
            rows.append({"cell": str(c), "statistic": s, "z": score, "n": int(m.sum()),
                         "median_pit": float(np.median(pit[m]))})
    rows.sort(key=lambda r: -abs(r["z"]))
    return rows[:most]


def check(run, model: str, settings, full=None, generations=None, start: int = LFO_START,
          progress=None, spec=None) -> Adequacy:
    """Adequacy of ``model`` on ``run``: one-step LFO PIT by exact refits on generations
    0..t for t = ``start``..G-2, and the per-generation PPC of ``full`` (the fit on all
    generations; fitted here when not given). ``progress(i, n)`` is called per refit.
    ``spec``: the model's specification when not its default (other priors)."""
    from .fit import fit

    if full is None:
        full = fit(run, model, settings, generations, save=False, spec=spec)
    cd = full.data
    G = cd.G
    start = max(1, start)
    pits, gens, cells, stat_of, steps = [], [], [], [], []
    labels = np.array(cd.cell_labels(), dtype=object)
    ts = list(range(start, G - 1))
    if len(ts) < 2:
        raise ValueError(f"the one-step PIT needs at least 2 predicted generations (a run "
                         f"of {start + 3} or more generations); the fit has {G}")
    for i, t in enumerate(ts):
        part = fit(run, model, settings, generations, save=False, upto=t + 1, spec=spec)
        step = one_step_pit(part, t + 1, seed=settings.seed + t)
        steps.append({"train": f"0..{t}", "predicts": cd.generations[t + 1],
                      "ok": bool(part.diagnostics.get("ok", False)),
                      "max_rhat": part.diagnostics.get("rhat_max"),
                      "divergences": part.diagnostics.get("divergences")})
        for s in STATISTICS:
            m = step["ok"] & np.isfinite(step[s])
            pits.append(step[s][m])
            gens.append(np.full(m.sum(), cd.generations[t + 1]))
            cells.append(labels[m])
            stat_of.append(np.full(m.sum(), s, dtype=object))
        if progress is not None:
            progress(i + 1, len(ts))
    pit = np.concatenate(pits)
    generation = np.concatenate(gens)
    cell = np.concatenate(cells)
    statistic = np.concatenate(stat_of)
    test = rao_scott_uniformity(pit, generation) if len(pit) >= 2 * BINS else None
    coverage = float(np.mean((pit >= 0.05) & (pit <= 0.95)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ppc = ppc_generations(full, seed=settings.seed)
    return Adequacy(full.model, pit, generation, cell, statistic, test, coverage,
                    worst_cells(pit, cell, statistic), ppc, steps)
