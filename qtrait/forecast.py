"""Forecasting the collapse horizon from a fit (theory.md 3.1 and 3.5).

**What is forecast.** The run's horizon as a user would detect it on the chain: the first
generation whose observed pooled statistics (variance ratio R_t, drift D2_t) cross their
thresholds beyond sampling noise, at the run's number of images per concept and the
confidence 1 - alpha of :class:`~qtrait.theory.horizon.Criteria`
(:func:`qtrait.theory.horizon.detected_run_horizon`). Generations 0..K-1 enter as
observed; for later generations every posterior draw's generation map is run forward
with fresh sampling and learning noise (each guided set of N images drives the next
generation, as in the chain), the draw's latent moments get the sampling noise of a set of
the run's size (the traits' correlations included), and the detection rule is applied to
the joined series. The draws' horizons are the posterior predictive distribution of t*:
median, 90% interval, P(collapse by generation t), P(no collapse within T_max). The latent
crossing (no noise) is given beside it as ``latent_horizon``. A crossing detected in the
observed generations is reported as observed, not forecast.

Per-trait horizons (each trait's statistics pooled over concepts, K = 1) and per-concept
horizons (one concept's horizon traits) are secondary, with the same rule; each controls
its own error rate over generations, not the family over traits or concepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import QtraitError
from .stats.collapse import CollapseStatistics, NoiseModel, collapse_statistics, run_arrays
from .theory.horizon import (Criteria, detected_run_horizon,
                             latent_run_horizon, pooled_statistics)

#: at most this many posterior draws are simulated forward (thinned evenly)
MAX_DRAWS = 2000

#: what the horizon of every qtrait output means (written into the JSON)
DEFINITION = ("run horizon: first generation t >= 1 where the concept-pooled variance ratio "
              "R_t < q or the concept-pooled Mahalanobis drift D2_t > chi2_K(P(|Z| < d)), "
              "on observed data only when beyond sampling noise at familywise level alpha "
              "(alpha_t = alpha / (2 t (t + 1)) per criterion); docs/theory.md 3.1")


def posterior_draws(idata, max_draws: int | None = MAX_DRAWS) -> dict[str, np.ndarray]:
    """Every posterior variable as an array (draws, ...), thinned to ``max_draws``."""
    post = idata.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    keep = np.arange(S)
    if max_draws is not None and S > max_draws:
        keep = np.linspace(0, S - 1, max_draws).round().astype(int)
    out = {}
    for name, da in post.data_vars.items():
        v = da.values.reshape((S,) + da.shape[2:])
        out[name] = v[keep]
    return out


@dataclass
class HorizonDistribution:
    """Predictive distribution of one horizon: ``samples`` in 1..t_max, or t_max + 1 for
    "no collapse within T_max"."""

    samples: np.ndarray
    t_max: int
    observed_at: int | None = None    # crossing already seen in the data

    def pmf(self) -> np.ndarray:
        """P(t* = t) for t = 1..t_max + 1 (the last: no collapse)."""
        if self.observed_at is not None:
            p = np.zeros(self.t_max + 1)
            p[self.observed_at - 1] = 1.0
            return p
        counts = np.bincount(np.asarray(self.samples) - 1, minlength=self.t_max + 1)
        return counts / counts.sum()

    def quantile(self, q: float) -> int | None:
        cdf = np.cumsum(self.pmf())
        t = int(np.searchsorted(cdf, q - 1e-12)) + 1
        return t if t <= self.t_max else None

    def to_dict(self) -> dict:
        cdf = np.cumsum(self.pmf())
        return {"median": self.quantile(0.5), "lo90": self.quantile(0.05),
                "hi90": self.quantile(0.95), "p_no_collapse": round(float(self.pmf()[-1]), 6),
                "p_collapse_by": [0.0] + [round(float(min(c, 1.0)), 6) for c in cdf[:-1]],
                "observed": self.observed_at is not None}


# --- the pooled statistics of simulated generations -------------------------------------------

def simulated_statistics(mean, var, noise: NoiseModel, n, rng: np.random.Generator,
                         correlation: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pooled statistics of simulated guided sets, arrays (..., T, C, K) in generation-0
    units: ``mean`` the latent means (the sampling noise of a set of ``n`` images per
    concept, correlated as generation 0's traits, is added here), ``var`` the observed
    variances (already with their sampling noise). Returns R, se_log_r, D2, X, N (...,
    T)."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    n = np.broadcast_to(np.asarray(n, dtype=float), mean.shape[-2:-1])
    z = rng.standard_normal(mean.shape)
    if correlation is not None:
        chol = np.linalg.cholesky(correlation + 1e-9 * np.eye(correlation.shape[-1]))
        z = np.einsum("ckl,...cl->...ck", chol, z)
    obs_mean = mean + z / np.sqrt(n)[:, None]
    # the observed ratios are corrected for the bias of 1 / s2_0 (docs/statistics.md 5.1);
    # a simulated set's ratio to the observed generation 0 gets the same correction
    bias = 1.0 if noise.bias is None else noise.bias
    R_c = (var / bias).mean(axis=-1)
    R = R_c.mean(axis=-1)
    se = noise.se_log_r(R_c, n)
    d2c = np.einsum("...ck,ckl,...cl->...c", obs_mean, noise.precision, obs_mean)
    n_eff = noise.n_eff(n)
    X = np.sum(n_eff * d2c, axis=-1)
    N = np.full(R.shape, float(n_eff.sum()))
    return {"R": R, "se_log_r": se, "D2": X / N, "X": X, "N": N}


def joined_horizons(obs: CollapseStatistics, sim: dict, criteria: Criteria) -> np.ndarray:
    """Detected horizons (draws,) of observed generations 0..K-1 (``obs``) followed by
    simulated ones (``sim``: arrays (draws, T)); t_max + 1 = none within t_max."""
    S = sim["R"].shape[0]
    K = len(obs.generations)

    def cat(o, key):
        return np.concatenate([np.broadcast_to(o, (S, K)), sim[key]], axis=1)[
            :, :criteria.t_max + 1]

    t, _ = detected_run_horizon(cat(obs.R, "R"), cat(obs.se_log_r, "se_log_r"),
                                cat(obs.X, "X"), obs.df, cat(obs.n_eff_total, "N"), obs.k,
                                criteria)
    return t


def observed_collapse(run, traits: list[str], upto: int | None = None,
                      arrays=None) -> dict:
    """Observed collapse statistics of ``run`` on ``traits``, for the run (the traits
    pooled) and per trait: {"run": CollapseStatistics, trait: CollapseStatistics, ...}.
    ``arrays``: the run's per-image arrays on ``traits`` when already read
    (:func:`~qtrait.stats.collapse.run_arrays`)."""
    data, concepts, gens = arrays if arrays is not None else run_arrays(run, traits, upto)
    out = {"run": collapse_statistics(data, traits, concepts, gens)}
    for k, name in enumerate(traits):
        out[name] = collapse_statistics(columns(data, [k]), [name], concepts, gens)
    return out


def columns(data, idx) -> list[list[np.ndarray]]:
    """Per-image arrays ``data[g][c]`` restricted to the trait columns ``idx``."""
    return [[x[:, idx] for x in row] for row in data]


def horizon_traits_of(run, fitted: list[str]) -> list[str]:
    """The traits of the run's horizon for a fit of ``fitted`` traits: the run's trait
    axes among them (all fitted traits when the fit has none of the axes)."""
    axes = [t for t in run.axes if t in fitted]
    return axes or list(fitted)


def check_from_generations(run, k: int) -> None:
    """QtraitError unless a forecast from generations 0..k-1 of ``run`` is possible
    (``--from-generations`` of predict, backtest and report)."""
    if k < 2:
        raise QtraitError("--from-generations must be >= 2 (generation 0 and at least one "
                          "finetuned generation)")
    if k > len(run.generations):
        raise QtraitError(f"--from-generations {k}: run {run.run_id} has only "
                          f"{len(run.generations)} complete generations")


@dataclass
class Forecast:
    """A horizon forecast (``qtrait predict``): the criteria, K, the run's detected horizon
    (:class:`HorizonDistribution`), its latent crossing, the per-trait horizons, the
    traits the horizon is defined on, the observed statistics of generations 0..K-1 and
    the per-draw trajectories (latent and observed moments)."""
    criteria: Criteria
    from_generations: int
    run: HorizonDistribution
    traits: dict[str, HorizonDistribution]
    trajectories: dict            # draws x (T+1) x J latent guided mean/var
    latent: HorizonDistribution | None = None
    horizon_traits: tuple = ()
    observed: CollapseStatistics | None = None
    simulated: dict | None = None     # the run's simulated statistics of generations K..
    concepts: dict | None = None      # concept -> HorizonDistribution (secondary)


    def reread(self, criteria: Criteria) -> HorizonDistribution:
        """The run's horizon distribution under other criteria (q, d, alpha; the same
        T_max): the same simulated statistics, read with the other thresholds."""
        t = joined_horizons(self.observed, self.simulated, criteria)
        seen, _ = self.observed.detected(criteria)
        return HorizonDistribution(t, criteria.t_max, seen)

    def to_dict(self) -> dict:
        out = {"from_generations": self.from_generations,
               "criteria": self.criteria.to_dict(), "definition": DEFINITION,
               "horizon_traits": list(self.horizon_traits),
               "horizon": self.run.to_dict(),
               "traits": {k: v.to_dict() for k, v in self.traits.items()}}
        if self.concepts is not None:
            out["concepts"] = {k: v.to_dict() for k, v in self.concepts.items()}
        if self.latent is not None:
            out["latent_horizon"] = self.latent.to_dict()
        if self.observed is not None:
            o = self.observed
            out["observed_statistics"] = {
                "generations": list(o.generations), "var_ratio": o.R.round(6).tolist(),
                "se_log_var_ratio": o.se_log_r.round(6).tolist(),
                "drift2": o.D2.round(6).tolist(),
                "drift_threshold": round(self.criteria.drift_threshold(o.k), 6)}
        return out


def forecast(result, run, criteria: Criteria = Criteria(), seed: int = 0,
             max_draws: int | None = MAX_DRAWS) -> Forecast:
    """Posterior predictive horizon of a single-run fit (``qtrait predict``) of
    generations 0..K-1 of ``run`` (the opened run the fit was made from)."""
    spec, cd = result.spec, result.data
    if spec.multi_run:
        raise QtraitError("forecasts are per run: fit one run with breeder, tilt or exact")
    rng = np.random.default_rng(seed)
    draws = posterior_draws(result.idata, max_draws)
    K = cd.G
    S, J = draws["guided_mean"].shape[0], cd.J
    fitted = list(cd.runs[0].traits)
    C, Kt = len(cd.runs[0].concepts), len(fitted)
    fwd = spec.forward(draws, cd, start=K, t_end=max(criteria.t_max, K), rng=rng)
    end = criteria.t_max + 1

    def joined(first_rows, key):
        return np.concatenate([first_rows, fwd[key]], axis=1)[:, :end]

    g = cd.sets["guided"]
    # latent moments (the posterior's for generations 1..K-1), for plots and checks
    latent = {"guided_mean": joined(np.concatenate([np.zeros((S, 1, J)),
                                                    draws["guided_mean"][:, 1:K]], 1),
                                    "guided_mean"),
              "guided_var": joined(np.concatenate([np.ones((S, 1, J)),
                                                   draws["guided_var"][:, 1:K]], 1),
                                   "guided_var")}
    observed = {"observed_mean": joined(np.broadcast_to(g.mean[:K], (S, K, J)),
                                        "observed_mean"),
                "observed_var": joined(np.broadcast_to(g.var[:K], (S, K, J)),
                                       "observed_var")}
    htraits = horizon_traits_of(run, fitted)
    arrays = run_arrays(run, fitted, K)          # the run's tables, read once
    obs = observed_collapse(run, fitted, arrays=arrays)
    idx = [fitted.index(t) for t in htraits]
    data_h = columns(arrays[0], idx)
    n_next = obs["run"].n[-1]
    fut_mean = fwd["guided_mean"].reshape(S, -1, C, Kt)[:, :max(0, end - K)]
    fut_var = fwd["observed_var"].reshape(S, -1, C, Kt)[:, :max(0, end - K)]

    def horizon_of(names, stats):
        idx = [fitted.index(t) for t in names]
        corr = stats.correlation
        sim = simulated_statistics(fut_mean[..., idx], fut_var[..., idx],
                                   stats.noise_model(K), n_next, rng, corr)
        return joined_horizons(stats, sim, criteria), sim

    obs_run = obs["run"] if htraits == fitted else \
        collapse_statistics(data_h, htraits, arrays[1], arrays[2])
    run_t, run_sim = horizon_of(htraits, obs_run)
    seen, _ = obs_run.detected(criteria)
    run_h = HorizonDistribution(run_t, criteria.t_max, seen)
    traits = {}
    for name in fitted:
        t_k, _ = horizon_of([name], obs[name])
        seen_k, _ = obs[name].detected(criteria)
        traits[name] = HorizonDistribution(t_k, criteria.t_max, seen_k)
    # the latent crossing: the draws' latent moments, no noise
    lm = latent["guided_mean"].reshape(S, -1, C, Kt)[..., idx]
    lv = latent["guided_var"].reshape(S, -1, C, Kt)[..., idx]
    R, D2 = pooled_statistics(lm, lv, obs_run.precision)
    lt, _ = latent_run_horizon(R, D2, len(htraits), criteria)
    # per concept (secondary): the horizon traits of one concept, the same rule
    per_concept = {}
    for ci, name in enumerate(arrays[1]):
        st = collapse_statistics([[row[ci]] for row in data_h], htraits, [name], arrays[2])
        sim = simulated_statistics(fut_mean[..., [ci], :][..., idx],
                                   fut_var[..., [ci], :][..., idx], st.noise_model(K),
                                   n_next[[ci]], rng, st.correlation)
        seen_c, _ = st.detected(criteria)
        per_concept[name] = HorizonDistribution(joined_horizons(st, sim, criteria),
                                                criteria.t_max, seen_c)
    return Forecast(criteria, K, run_h, traits, latent | observed,
                    HorizonDistribution(lt, criteria.t_max), tuple(htraits), obs_run, run_sim,
                    per_concept)
