"""Forecasting the collapse horizon from a fit (theory.md section 3, "early stopping").

From the posterior of a model fitted on generations 0..K-1, every draw's generation map
is run forward to T_max with fresh sampling noise (each guided set of N images drives the
next generation, as in the chain) and learning noise. The horizon is defined on what a
user measures, the guided set's observed moments: the data for generations 0..K-1, and
for later generations the moments of a simulated set of the run's size. Each draw's
trajectory gives one horizon under the criteria; together they are the posterior
predictive distribution of t*: median, 90% interval, P(collapse by generation t) and
P(no collapse within T_max). (Scoring observed crossings against latent forecasts, or the
reverse, is a definitional mismatch: near a threshold the two differ by a generation.)

A crossing that already happened in the observed generations is reported as observed,
not forecast. Everything is in generation-0 SD units per (concept, trait), in which the
criteria are invariant.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import QtraitError
from .theory.horizon import Criteria, first_crossing, run_statistics, trait_horizons

#: at most this many posterior draws are simulated forward (thinned evenly)
MAX_DRAWS = 2000


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
        counts = np.bincount(self.samples - 1, minlength=self.t_max + 1)
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


def _horizon_samples(mean, var, m_uncond, crit: Criteria, run_level: bool):
    """Horizons per draw from trajectories (draws, T+1, C, K); ``t_max + 1`` = none."""
    mean = np.moveaxis(mean, 1, 0)           # (T+1, S, C, K)
    var = np.moveaxis(var, 1, 0)
    m_u = np.broadcast_to(m_uncond, mean.shape[1:])
    none = crit.t_max + 1
    if run_level:
        total, drift, to_u = run_statistics(mean, var, m_u)   # (T+1, S, C)
        with np.errstate(invalid="ignore"):
            flags = (total < crit.q, drift > crit.d, to_u < crit.r * to_u[0])
        t, _ = first_crossing(flags, crit.t_max)              # (S, C)
        t = np.where(t > 0, t, none)
        return t.min(axis=1)
    t, _ = trait_horizons(mean, var, m_u, crit)               # (S, C, K)
    t = np.where(t > 0, t, none)
    return t.min(axis=1)                                      # (S, K): earliest concept


def observed_horizons(cd, crit: Criteria, m_uncond: np.ndarray, upto: int | None = None):
    """Crossings in the observed guided moments of generations 0..upto-1: (run, per
    trait) as generation numbers or None."""
    g = cd.sets["guided"]
    upto = cd.G if upto is None else upto
    C, K = len(cd.runs[0].concepts), len(cd.runs[0].traits)
    mean = g.mean[:upto].reshape(1, upto, C, K)
    var = g.var[:upto].reshape(1, upto, C, K)
    m_u = np.asarray(m_uncond).reshape(1, C, K) if np.ndim(m_uncond) == 1 else m_uncond
    crit_obs = Criteria(crit.q, crit.d, crit.r, max(1, upto - 1))
    run = _horizon_samples(mean, var, m_u, crit_obs, True)[0]
    per = _horizon_samples(mean, var, m_u, crit_obs, False)[0]
    none = crit_obs.t_max + 1
    return (None if run == none else int(run),
            [None if t == none else int(t) for t in per])


def data_uncond_mean(cd) -> np.ndarray:
    """The unconditional mean used by the dilution criterion, per cell: the base model's
    unconditional probe at generation 0 (else its mean over generations). Without
    unconditional probes it is NaN and dilution is not assessed (theory.md section 3: it
    needs the unconditional moments; a fitted centre is too weakly identified)."""
    u = cd.sets["probe_uncond"]
    if np.isfinite(u.mean[0]).all():
        return u.mean[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # no probes: all NaN
        m = np.nanmean(u.mean, axis=0)
    return m


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
    """A horizon forecast (``qtrait predict``): the criteria, K, the run-level and per-trait
    :class:`HorizonDistribution`, and the per-draw trajectories (latent and observed)."""
    criteria: Criteria
    from_generations: int
    run: HorizonDistribution
    traits: dict[str, HorizonDistribution]
    trajectories: dict            # draws x (T+1) x J latent guided mean/var

    def to_dict(self) -> dict:
        return {"from_generations": self.from_generations,
                "criteria": self.criteria.to_dict(), "horizon": self.run.to_dict(),
                "traits": {k: v.to_dict() for k, v in self.traits.items()}}


def forecast(result, criteria: Criteria = Criteria(), seed: int = 0,
             max_draws: int | None = MAX_DRAWS) -> Forecast:
    """Posterior predictive horizon of a single-run fit (``qtrait predict``)."""
    spec, cd = result.spec, result.data
    if spec.multi_run:
        raise QtraitError("forecasts are per run: fit one run with breeder, tilt or exact")
    rng = np.random.default_rng(seed)
    draws = posterior_draws(result.idata, max_draws)
    K = cd.G
    S, J = draws["guided_mean"].shape[0], cd.J
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
    # observed moments (the data for generations 0..K-1): horizons are scored on these
    observed = {"observed_mean": joined(np.broadcast_to(g.mean[:K], (S, K, J)),
                                        "observed_mean"),
                "observed_var": joined(np.broadcast_to(g.var[:K], (S, K, J)),
                                       "observed_var")}
    C, Kt = len(cd.runs[0].concepts), len(cd.runs[0].traits)
    m_u = data_uncond_mean(cd).reshape(1, C, Kt)
    shape4 = (S, observed["observed_mean"].shape[1], C, Kt)
    mean = observed["observed_mean"].reshape(shape4)
    var = observed["observed_var"].reshape(shape4)
    run_t = _horizon_samples(mean, var, m_u, criteria, True)
    trait_t = _horizon_samples(mean, var, m_u, criteria, False)
    obs_run, obs_traits = observed_horizons(cd, criteria, m_u.reshape(C, Kt))
    run = HorizonDistribution(run_t, criteria.t_max, obs_run)
    traits = {name: HorizonDistribution(trait_t[:, k], criteria.t_max, obs_traits[k])
              for k, name in enumerate(cd.runs[0].traits)}
    return Forecast(criteria, K, run, traits, latent | observed)


# --- baselines a practitioner would use ------------------------------------------------------

def baseline_horizons(total_ratio: np.ndarray, q: float, t_max: int) -> dict[str, int | None]:
    """Variance-collapse horizon from the run's total variance ratio V_t / V_0 observed at
    generations 0..K-1, by (a) a least-squares line and (b) a least-squares exponential
    V_0 b^t (a line through log ratio with intercept 0); None when beyond t_max."""
    t = np.arange(len(total_ratio), dtype=float)
    y = np.asarray(total_ratio, dtype=float)
    out = {}
    slope, icpt = np.polyfit(t, y, 1)
    hit = (q - icpt) / slope if slope < 0 else np.inf
    out["linear"] = _first_int(hit, t_max)
    logb = np.sum(t * np.log(np.maximum(y, 1e-300))) / np.sum(t * t)
    hit = np.log(q) / logb if logb < 0 else np.inf
    out["exponential"] = _first_int(hit, t_max)
    return out


def _first_int(x: float, t_max: int) -> int | None:
    if not np.isfinite(x):
        return None
    t = max(1, int(np.floor(x)) + 1)
    return t if t <= t_max else None


def run_total_ratio(cd, upto: int) -> np.ndarray:
    """Observed total variance over the cells, relative to generation 0 (cell-averaged
    in standardised units), for generations 0..upto-1."""
    v = cd.sets["guided"].var[:upto]
    return np.nansum(v, axis=1) / np.nansum(v[0])


# --- backtests -------------------------------------------------------------------------------

def score(dist: HorizonDistribution, observed: int | None, censored_at: int) -> dict:
    """Score a predictive horizon against an observed one (None: no crossing by
    ``censored_at``, the last generation seen)."""
    pmf = dist.pmf()
    h = dist.to_dict()
    floor = 1.0 / (len(dist.samples) + 1)      # a draw count's resolution
    if observed is not None:
        p = pmf[observed - 1]
        lo = h["lo90"] if h["lo90"] is not None else dist.t_max + 1
        hi = h["hi90"] if h["hi90"] is not None else dist.t_max + 1
        covered = lo <= observed <= hi
        err = abs(h["median"] - observed) if h["median"] is not None else None
    else:   # censored: the event is "t* > censored_at"
        p = pmf[censored_at:].sum()
        hi = h["hi90"]
        covered = hi is None or hi > censored_at
        err = None if h["median"] is None or h["median"] > censored_at \
            else censored_at + 1 - h["median"]
    return {"observed": observed, "median": h["median"], "lo90": h["lo90"],
            "hi90": h["hi90"], "covered": bool(covered),
            "log_score": float(np.log(max(p, floor))), "abs_error": err}


def backtest(fc: Forecast, run, crit: Criteria) -> dict:
    """Score a forecast made from the first K generations of ``run`` against all of it."""
    from .models import chain_data, fit_data

    full = chain_data([fit_data(run)])
    m_u = data_uncond_mean(full)
    obs_run, obs_traits = observed_horizons(full, crit, m_u)
    last = full.G - 1
    rows = [{"horizon": "run", **score(fc.run, obs_run, last)}]
    for k, name in enumerate(full.runs[0].traits):
        if name in fc.traits:
            rows.append({"horizon": name, **score(fc.traits[name], obs_traits[k], last)})
    base = baseline_horizons(run_total_ratio(full, fc.from_generations), crit.q, crit.t_max)
    return {"from_generations": fc.from_generations, "last_generation": last,
            "criteria": crit.to_dict(), "scores": rows, "baselines": base,
            "coverage": float(np.mean([r["covered"] for r in rows])),
            "mean_log_score": float(np.mean([r["log_score"] for r in rows]))}
