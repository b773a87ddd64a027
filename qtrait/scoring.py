"""Scoring horizon forecasts against the later generations of a run (``qtrait backtest``).

A forecast made from generations 0..K-1 of a run whose last generation is L is scored
against the run's detected horizon on all of its generations (the same rule the forecast
targets; docs/theory.md 3.1). A run with no crossing by L is right-censored. Every score
is computed on the categories 1, ..., L and "> L" (the forecast's probabilities beyond L
summed): the outcome's category is known whether or not the run is censored, L is fixed
before the forecast is made, so every proper score of the categorical forecast stays
proper under this censoring.

Per forecast (docs/cli.md, ``qtrait backtest``):

* ``rps``: the ranked probability score (scoringrules ``rps_score``, unnormalised: the
  sum over thresholds, in generations; a point forecast's RPS is its absolute error);
* ``pit`` and ``covered_random``: the randomized PIT (Czado, Gneiting and Held 2009) and
  whether it lies in [0.05, 0.95]: under calibration exactly 90% of forecasts do, where
  the integer interval [lo90, hi90] (``covered``) covers more than 90% by construction;
* ``abs_error``: |median - outcome| on the censored scale (a median beyond L is L + 1);
* ``log_score``: log P(outcome's category), floored at 1 / (draws + 1);
* ``lfo_elpd``: the leave-future-out log predictive density of the later generations'
  statistics (log R_t and sqrt(D2_t), t = K..L), mean per generation, from a Gaussian fit
  to the forecast's simulated observed statistics.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from .baselines import BASELINES, baseline_forecasts
from .fit import SamplerSettings, fit
from .forecast import (DEFINITION, Forecast, HorizonDistribution, columns, forecast,
                       observed_collapse)
from .rundir import open_run
from .stats.collapse import CollapseStatistics, collapse_statistics, run_arrays
from .theory.horizon import Criteria


def censored_pmf(dist: HorizonDistribution, last: int) -> np.ndarray:
    """The forecast's probabilities of the categories 1..L and "> L" (L = ``last``)."""
    pmf = dist.pmf()
    L = min(last, dist.t_max)
    out = np.concatenate([pmf[:L], [pmf[L:].sum()]])
    if L < last:                     # t_max below the run's length: nothing past t_max
        out = np.concatenate([pmf[:L], np.zeros(last - L), [pmf[L:].sum()]])
    return out


def score_horizon(dist: HorizonDistribution, observed: int | None, last: int,
                  rng: np.random.Generator) -> dict:
    """Scores of one horizon forecast against the outcome (``observed``: the detected
    horizon, None when censored at ``last``)."""
    import scoringrules as sr

    fct = censored_pmf(dist, last)
    y = observed if observed is not None and observed <= last else last + 1
    cdf = np.minimum(np.cumsum(fct), 1.0)
    below = cdf[y - 2] if y > 1 else 0.0
    pit = float(below + rng.uniform() * (cdf[y - 1] - below))
    h = dist.to_dict()

    def cens(t):
        return last + 1 if t is None or t > last else int(t)

    lo, hi = cens(h["lo90"]), cens(h["hi90"])
    floor = 1.0 / (len(dist.samples) + 1)
    return {"observed": observed, "censored": observed is None or observed > last,
            "median": h["median"], "lo90": h["lo90"], "hi90": h["hi90"],
            "p_no_collapse": h["p_no_collapse"], "trivial": dist.observed_at is not None,
            "rps": float(sr.rps_score(np.asarray(float(y)), fct)),
            "pit": pit, "covered_random": bool(0.05 <= pit <= 0.95),
            "covered": bool(lo <= y <= hi), "abs_error": abs(cens(h["median"]) - y),
            "log_score": float(np.log(max(fct[y - 1], floor)))}


def lfo_elpd(sim: dict | None, actual: CollapseStatistics, K: int) -> float | None:
    """Mean log predictive density per later generation of log R_t and sqrt(D2_t)
    (Gaussian fits to the simulated values), t = K..L; None without later generations."""
    from scipy import stats

    if sim is None:
        return None
    L = len(actual.generations) - 1
    total, count = 0.0, 0
    for t in range(K, L + 1):
        j = t - K
        if j >= sim["R"].shape[1]:
            break
        for sims, obs in ((np.log(sim["R"][:, j]), np.log(actual.R[t])),
                          (np.sqrt(np.maximum(sim["D2"][:, j], 0)), np.sqrt(max(actual.D2[t], 0)))):
            sims = sims[np.isfinite(sims)]
            if len(sims) < 2:
                total += np.log(1e-12)
                continue
            sd = max(float(np.std(sims, ddof=1)), 1e-6)
            total += float(stats.norm.logpdf(obs, float(np.mean(sims)), sd))
        count += 1
    return total / count if count else None


def backtest(fc: Forecast, run, crit: Criteria, baselines=BASELINES, seed: int = 0,
             statespace=None) -> dict:
    """Score a forecast made from the first K generations of ``run`` against all of it,
    beside the baselines of :mod:`qtrait.baselines` given the same data and target."""
    rng = np.random.default_rng(seed + 7919)
    K = fc.from_generations
    traits = list(fc.horizon_traits)
    fitted = list(fc.traits)
    arrays = run_arrays(run, fitted)             # all generations, read once
    full = observed_collapse(run, fitted, arrays=arrays)
    data = columns(arrays[0], [fitted.index(t) for t in traits])
    concepts, gens = arrays[1], arrays[2]
    actual = full["run"] if fitted == traits else \
        collapse_statistics(data, traits, concepts, gens)
    last = len(actual.generations) - 1
    seen, reason = actual.detected(crit)
    row = {"horizon": "run", "reason": reason, **score_horizon(fc.run, seen, last, rng),
           "lfo_elpd": lfo_elpd(fc.simulated, actual, K)}
    rows = [row]
    for name, dist in fc.traits.items():
        t_k, _ = full[name].detected(crit)
        rows.append({"horizon": name, **score_horizon(dist, t_k, last, rng)})
    base = baseline_scores(fc.observed, actual, run, crit, rng, baselines, statespace)
    # per concept (secondary), scored after the baselines so that their draws stay put
    concept_rows = []
    if fc.concepts:
        for ci, name in enumerate(concepts):
            if name not in fc.concepts:
                continue
            st = collapse_statistics([[row[ci]] for row in data], traits, [name], gens)
            t_c, _ = st.detected(crit)
            concept_rows.append({"concept": name,
                                 **score_horizon(fc.concepts[name], t_c, last, rng)})
    return {"from_generations": K, "last_generation": last, "criteria": crit.to_dict(),
            "definition": DEFINITION, "horizon_traits": traits,
            "observed_horizon": seen, "observed_reason": reason,
            "scores": rows, "concept_scores": concept_rows, "baselines": base,
            "coverage": float(np.mean([r["covered"] for r in rows])),
            "mean_log_score": float(np.mean([r["log_score"] for r in rows]))}


def baseline_scores(obs_k: CollapseStatistics, actual: CollapseStatistics, run, crit: Criteria,
                    rng: np.random.Generator, baselines=BASELINES, statespace=None) -> dict:
    """Every baseline's forecast from the observed generations 0..K-1 (``obs_k``; K = 1,
    generation 0 alone, is allowed), scored against the run's horizon on all of its
    generations (``actual``)."""
    K = len(obs_k.generations)
    last = len(actual.generations) - 1
    seen, _ = actual.detected(crit)
    out = {}
    for method, dist, sim in baseline_forecasts(obs_k, run, crit, rng, baselines, statespace):
        if dist is None:
            out[method] = {"available": False, "why": "the run lacks its base-model probes, "
                           "or plans condition drop (rho unknown)"}
            continue
        out[method] = {"available": True, **score_horizon(dist, seen, last, rng),
                       "lfo_elpd": lfo_elpd(sim, actual, K)}
    return out


def backtest_run(path, k: int, model: str, crit: Criteria, settings: SamplerSettings,
                 baselines=BASELINES, traits=None, concepts=None, save: bool = True,
                 progress: bool = False, extra=None, spec=None) -> dict:
    """One backtest of ``qtrait backtest``: open the run at ``path`` (restricted to
    ``traits`` and ``concepts`` when given), fit generations 0..k-1, forecast and score
    (:func:`backtest`). ``extra(fc, run, crit)``, when given, returns more keys for the
    record (it must be a module-level function when the backtests run in processes).
    ``spec``: the model's specification when not the registered one of ``model`` (other
    priors: a study's variant)."""
    t0 = time.perf_counter()
    run = open_run(path).select(traits, concepts)
    result = fit(run, model, settings, slice(0, k), save=save, progress=progress, spec=spec)
    t_fit = time.perf_counter() - t0
    fc = forecast(result, run, crit, seed=settings.seed)
    rec = {"run": str(path), "model": result.model,
           **backtest(fc, run, crit, baselines, seed=settings.seed),
           "diagnostics": result.diagnostics, "warnings": result.warnings,
           "posterior": None if result.path is None else str(result.path)}
    if extra is not None:
        rec.update(extra(fc, run, crit))
    rec["fit_seconds"] = round(t_fit, 1)
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def _one(args: tuple) -> dict:
    path, k, kwargs = args
    return backtest_run(path, k, **kwargs)


def backtest_runs(tasks, model: str, crit: Criteria, settings: SamplerSettings,
                  jobs: int = 1, on_record=None, **kwargs) -> list[dict]:
    """:func:`backtest_run` for every (path, k) of ``tasks``, in ``jobs`` local processes
    (1: in this one). Each process samples with ``settings.cores`` or, when unset, its
    share of min(chains, 2) cores (at least one). ``on_record(i, rec)`` is called as each
    backtest finishes (in the order they finish: write records there, so that nothing is
    lost when a later one fails); the records come back in the order of ``tasks``. The
    draws do not depend on ``jobs``: every fit and forecast has its own seed."""
    tasks = [(Path(p), int(k)) for p, k in tasks]
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out: list = [None] * len(tasks)
    if jobs == 1 or len(tasks) <= 1:
        for i, (p, k) in enumerate(tasks):
            out[i] = backtest_run(p, k, model, crit, settings, **kwargs)
            if on_record is not None:
                on_record(i, out[i])
        return out
    if settings.cores is None:
        settings = replace(settings, cores=max(1, settings.n_cores // jobs))
    kw = {"model": model, "crit": crit, "settings": settings, **kwargs}
    # spawn, not fork: a forked PyTensor/nutpie/pyarrow process can inherit held locks
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(_one, (p, k, kw)): i for i, (p, k) in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            out[i] = fut.result()
            if on_record is not None:
                on_record(i, out[i])
    return out
