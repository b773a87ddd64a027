"""Baseline forecasts of the run's horizon: the same data, target and rule as the model.

Every baseline sees the observed pooled statistics of generations 0..K-1 (R_t, D2_t and
their sampling errors; :class:`~qtrait.stats.collapse.CollapseStatistics`), predicts
latent paths of R_t and D2_t for the later generations, gets the sampling noise of a set
of the run's size added, and is put through the detection rule of the observed data
(:func:`qtrait.forecast.joined_horizons`). Its uncertainty comes from a parametric
bootstrap of the observed points (each resampled from its sampling distribution, the
curve refitted), so each baseline is a predictive distribution, scored as the model is.

* ``persistence``: R and D2 stay where generation K-1 left them;
* ``linear``: least-squares lines through R_t and D2_t;
* ``exponential``: R_t = b^t and D2_t = a t^2 (the mean moving at a constant speed);
* ``statespace``: a local-linear-trend model (statsmodels ``UnobservedComponents``) of
  log R_t and sqrt(D2_t), its three variances fitted on whole trajectories of other
  chains (:func:`fit_statespace`; the defaults come from the benchmark's seed-1 chains),
  filtered on generations 0..K-1 and simulated forward;
* ``refit``: the closed-form rate of Gaussian refitting (Suresh et al. 2024, "Rate of
  model collapse in recursive training"): from generation K-1 on, variance shrinks by
  (n-1)/n a generation with n images per concept, and the mean random-walks by V_t/n;
* ``zeroshot``: the zero-shot theory's latent R_t and D2_t (the exact sampler map from
  generation 0 and the design, with the run's zero-shot calibration;
  :mod:`qtrait.theory.zeroshot`, :mod:`qtrait.theory.calibration`), independent of K.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .stats.collapse import CollapseStatistics
from .theory.horizon import Criteria

BASELINES = ("persistence", "linear", "exponential", "statespace", "refit", "zeroshot")
#: draws of each baseline's predictive distribution
BASELINE_DRAWS = 1000


@dataclass(frozen=True)
class StateSpaceParams:
    """Variances of the local-linear-trend model (irregular, level, trend) of log R_t and
    of sqrt(D2_t)."""

    log_r: tuple = (1e-3, 1e-3, 1e-3)
    sqrt_d2: tuple = (0.05, 0.05, 0.05)
    source: str = "untrained defaults"

    def to_dict(self) -> dict:
        return asdict(self)


#: fitted by analyses/benchmark/run.py on the benchmark's seed-1 chains (fit_statespace)
STATESPACE_FILE = Path(__file__).resolve().parent / "data" / "statespace_params.json"


def default_statespace() -> StateSpaceParams:
    """The shipped state-space variances (fitted on the benchmark's seed-1 chains), or
    untrained defaults when the file is missing."""
    if STATESPACE_FILE.exists():
        d = json.loads(STATESPACE_FILE.read_text())
        return StateSpaceParams(tuple(d["log_r"]), tuple(d["sqrt_d2"]), d.get("source", ""))
    return StateSpaceParams()


def _series(obs: CollapseStatistics):
    """log R_t and sqrt(D2_t) (noise-debiased) of the observed generations."""
    log_r = np.log(obs.R)
    d2 = np.maximum(obs.D2 - obs.df / np.maximum(obs.n_eff_total, 1e-12), 0.0)
    d2[0] = 0.0
    return log_r, np.sqrt(d2)


def _uc_model(y):
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    return UnobservedComponents(np.asarray(y, dtype=float), level="local linear trend")


def fit_statespace(trajectories: list[CollapseStatistics], source: str = "") -> StateSpaceParams:
    """Maximum-likelihood variances of the local-linear-trend model, pooled over whole
    trajectories (one likelihood summed over chains; each chain filtered on its own)."""
    from scipy import optimize

    out = {}
    for key, which in (("log_r", 0), ("sqrt_d2", 1)):
        series = [_series(o)[which] for o in trajectories]
        models = [_uc_model(y) for y in series]

        def nll(theta, models=models):
            params = np.exp(theta)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return -sum(m.loglike(params) for m in models)

        best = optimize.minimize(nll, np.log([1e-2, 1e-2, 1e-2]), method="Nelder-Mead",
                                 options={"maxiter": 600, "xatol": 1e-3, "fatol": 1e-3})
        out[key] = tuple(float(v) for v in np.exp(best.x))
    return StateSpaceParams(out["log_r"], out["sqrt_d2"], source)


def _bootstrap(obs: CollapseStatistics, S: int, rng):
    """S resamples of the observed log R_t and sqrt(D2_t) from their sampling laws."""
    log_r, sd2 = _series(obs)
    G = len(log_r)
    lr = log_r + rng.standard_normal((S, G)) * obs.se_log_r
    X = rng.noncentral_chisquare(obs.df, np.maximum(obs.X - obs.df, 1e-9), size=(S, G)) \
        if G > 1 else np.zeros((S, G))
    d2 = np.maximum(X / np.maximum(obs.n_eff_total, 1e-12) - obs.df / obs.n_eff_total, 0.0)
    lr[:, 0], d2[:, 0] = 0.0, 0.0
    return lr, np.sqrt(d2)


def _lines(t, y, future, through_origin: bool):
    """Least-squares lines of rows of y over t, evaluated at ``future``."""
    if through_origin:
        slope = (y * t).sum(axis=1) / max(float((t * t).sum()), 1e-12)
        return slope[:, None] * future
    A = np.vstack([np.ones_like(t), t]).T
    coef, *_ = np.linalg.lstsq(A, y.T, rcond=None)
    return coef[0][:, None] + coef[1][:, None] * future


def latent_paths(method: str, obs: CollapseStatistics, t_end: int, rng, S: int = BASELINE_DRAWS,
                 statespace: StateSpaceParams | None = None, zeroshot=None) -> dict:
    """Latent R_t and D2_t (S, T) for generations K..t_end of one baseline."""
    K = len(obs.generations)
    future = np.arange(K, t_end + 1, dtype=float)
    t = np.arange(K, dtype=float)
    lr, sd2 = _bootstrap(obs, S, rng)
    if method == "persistence":
        R = np.exp(lr[:, -1:]) * np.ones_like(future)
        D2 = (sd2[:, -1:] ** 2) * np.ones_like(future)
    elif method == "linear":
        R = np.maximum(_lines(t, np.exp(lr), future, False), 1e-6)
        D2 = np.maximum(_lines(t, sd2 ** 2, future, False), 0.0)
    elif method == "exponential":
        R = np.exp(_lines(t, lr, future, True))
        D2 = np.maximum(_lines(t, sd2, future, True), 0.0) ** 2
    elif method == "statespace":
        ss = statespace or default_statespace()
        R = np.exp(_uc_paths(np.log(obs.R), ss.log_r, len(future), S, rng))
        D2 = np.maximum(_uc_paths(_series(obs)[1], ss.sqrt_d2, len(future), S, rng), 0) ** 2
    elif method == "refit":
        n = float(np.mean(obs.n[-1]))
        steps = future - (K - 1)
        R = np.exp(lr[:, -1:]) * ((n - 1) / n) ** steps
        walk = obs.k * np.cumsum(((n - 1) / n) ** (steps - 1) / n) * np.exp(lr[:, -1:])
        D2 = sd2[:, -1:] ** 2 + walk
    elif method == "zeroshot":
        if zeroshot is None:
            raise ValueError("the zeroshot baseline needs the zero-shot trajectory")
        zr, zd = zeroshot
        idx = np.minimum(future.astype(int), len(zr) - 1)
        R = np.broadcast_to(zr[idx], (S, len(future))).copy()
        D2 = np.broadcast_to(zd[idx], (S, len(future))).copy()
    else:
        raise ValueError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")
    return {"R": R, "D2": D2}


def _uc_paths(y, params, T: int, S: int, rng) -> np.ndarray:
    """S simulated continuations of a local-linear-trend model with fixed variances."""
    mod = _uc_model(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mod.smooth(np.asarray(params, dtype=float))
        seed = int(rng.integers(2 ** 31))
        # statsmodels >= 0.15 names the generator rng, earlier releases random_state
        import inspect

        key = "rng" if "rng" in inspect.signature(res.simulate).parameters else "random_state"
        sims = res.simulate(T, anchor="end", repetitions=S,
                            **{key: np.random.default_rng(seed)})
    return np.asarray(sims).reshape(T, S).T


def observe(paths: dict, obs: CollapseStatistics, noise, n, rng) -> dict:
    """Observed statistics of latent paths: log R with its sampling noise, X drawn from
    its noncentral chi2 law (docs/statistics.md 5)."""
    R = np.maximum(paths["R"], 1e-12)
    C = len(obs.concepts)
    se = noise.se_log_r(R[..., None] * np.ones(C), n)
    R_obs = np.exp(np.log(R) + se * rng.standard_normal(R.shape))
    N = float(noise.n_eff(n).sum())
    D2 = paths["D2"]
    ok = np.isfinite(D2)
    X = rng.noncentral_chisquare(obs.df, np.where(ok, np.maximum(D2, 0.0), 0.0) * N + 1e-12)
    X = np.where(ok, X, np.nan)
    return {"R": R_obs, "se_log_r": se, "X": X, "N": np.full(R.shape, N), "D2": X / N}


def zeroshot_trajectory(run, traits: list[str], t_end: int, h2: float | None = None,
                        calibration: str = "auto"):
    """Latent R_t and D2_t of the zero-shot theory (exact sampler map, rho = 0, the run's
    design) on ``traits``, under the run's zero-shot calibration (``calibration``, as
    ``qtrait theory horizon --run``: :func:`qtrait.theory.calibration.for_run`; ``h2``
    overrides the calibration's); None when the run lacks its probes or plans condition
    drop (rho unknown)."""
    from .errors import QtraitError
    from .models.data import design_schedule
    from .stats.generation0 import gen0_from_run
    from .theory.calibration import for_run
    from .theory.generation import MapParams
    from .theory.zeroshot import pooled_trajectory, predict

    d = run.design
    if float(d.get("p_drop") or 0.0) > 0:
        return None
    guidance, sampler = design_schedule(d)
    cal, h2 = for_run(run.manifest, calibration, h2)
    try:
        params = cal.apply(MapParams(model="exact", h2=h2, guidance=guidance,
                                     sampler=sampler, rho=0.0, v_mut=0.0,
                                     anchor=d.get("anchor") or "base"))
        g0, _, all_traits, _, _, corr = gen0_from_run(run, params)
    except (QtraitError, ValueError):
        return None
    axes = np.array([t in traits for t in all_traits])
    with np.errstate(all="ignore"):
        R, D2, _ = pooled_trajectory(predict(g0, params, t_end), corr, axes)
    return np.where(np.isfinite(R), R, np.nan), np.where(np.isfinite(D2), D2, np.nan)


def baseline_forecast(method: str, obs: CollapseStatistics, criteria: Criteria, rng,
                      S: int = BASELINE_DRAWS, statespace: StateSpaceParams | None = None,
                      zeroshot=None):
    """One baseline's predictive horizon from the observed generations 0..K-1 (``obs``):
    (HorizonDistribution, the simulated observed statistics of generations K..t_max)."""
    from .forecast import HorizonDistribution, joined_horizons

    K = len(obs.generations)
    paths = latent_paths(method, obs, max(criteria.t_max, K), rng, S, statespace, zeroshot)
    sim = observe(paths, obs, obs.noise_model(K), obs.n[-1], rng)
    t = joined_horizons(obs, sim, criteria)
    seen, _ = obs.detected(criteria)
    return HorizonDistribution(t, criteria.t_max, seen), sim


def baseline_forecasts(obs: CollapseStatistics, run, criteria: Criteria, rng,
                       baselines=BASELINES, statespace: StateSpaceParams | None = None):
    """Yield (baseline, HorizonDistribution or None, simulated statistics or None) for
    each baseline, from the observed generations 0..K-1 of ``run`` (``obs``). None: the
    baseline is not available for this run (the zero-shot theory without probes, or with
    condition drop)."""
    K = len(obs.generations)
    for method in baselines:
        zs = None
        if method == "zeroshot":
            zs = zeroshot_trajectory(run, list(obs.traits), max(criteria.t_max, K))
            if zs is None:
                yield method, None, None
                continue
        dist, sim = baseline_forecast(method, obs, criteria, rng, statespace=statespace,
                                      zeroshot=zs)
        yield method, dist, sim


def baseline_medians(bt: dict | None, fc, run, criteria: Criteria, seed: int = 0) -> dict:
    """Each baseline's median horizon (None: beyond T_max or not available) for the
    report: from a backtest's records when there is one, else forecast from ``fc``'s
    observed generations."""
    if bt is not None:
        return {m: (b.get("median") if b.get("available", True) else None)
                for m, b in bt["baselines"].items()}
    rng = np.random.default_rng(seed + 7919)
    return {m: (d.to_dict()["median"] if d is not None else None)
            for m, d, _ in baseline_forecasts(fc.observed, run, criteria, rng)}
