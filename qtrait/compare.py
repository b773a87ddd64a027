"""Model comparison (PSIS-LOO and leave-future-out) and the ReDiFine check.

**Models** (``qtrait fit RUN --compare``). Every model that applies to the run is fitted
and scored on the same observations -- the guided sets, which every model predicts (the
probe sets enter only the tilt-family likelihoods, so scores including them would not be
comparable):

* PSIS-LOO (ArviZ) on the pointwise log-likelihood of the guided observations, with the
  largest Pareto k (above 0.7 the estimate is unreliable, and the table says so);
* leave-future-out, by exact refits: for t = t0..G-2 the model is fitted on generations
  0..t (the same compiled model, later generations masked) and scores generation t+1
  by its log predictive density, log mean_s p(y_{t+1} | draw s), with the next
  generation's moments simulated forward from each draw (learning noise included).
  The sum over t is elpd_lfo, the forecasting skill the task is about.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from .errors import QtraitError

LFO_START = 2   # first training window: generations 0..2

#: the one predictive target every model is compared on, given the same information
TARGET = ("one step ahead: the guided mean and variance of every cell in generation t+1, "
          "given every set (guided and probes) of generations 0..t")


def one_step_elpd(result, t_next: int, seed: int = 0) -> tuple[float, int]:
    """Log predictive density of generation ``t_next``'s guided set (all cells), from a
    fit on generations < t_next: per cell log mean over draws, summed."""
    from .forecast import posterior_draws
    from .models.base import set_loglik
    from .models.data import pooled_shape

    cd, spec = result.data, result.spec
    draws = posterior_draws(result.idata, max_draws=1000)
    fwd = spec.forward(draws, cd, start=t_next, t_end=t_next,
                       rng=np.random.default_rng(seed))
    g = cd.sets["guided"]
    ok = np.isfinite(g.mean[t_next]) & np.isfinite(g.var[t_next]) & (g.var[t_next] > 0)
    with np.errstate(all="ignore"):
        law = pooled_shape(cd, "guided", t_next)
        ll = set_loglik(g.mean[t_next], g.var[t_next], g.n[t_next], law.kurt,
                        fwd["guided_mean"][:, 0], fwd["guided_var"][:, 0],
                        symbolic=False, skew=law.skew)                                   # (S, J)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    lpd = special.logsumexp(ll, axis=0) - np.log(ll.shape[0])
    return float(np.sum(lpd[ok])), int(ok.sum())


def applicable_models(run) -> list[str]:
    """The single-run models whose checks accept ``run`` (its sets and design decide:
    ``tilt`` needs both probe sets and a constant schedule, ``exact`` both probe sets), in
    the order breeder, tilt, exact."""
    from .models import chain_data, fit_data, get_spec

    cd = chain_data([fit_data(run)])
    out = []
    for name in ("breeder", "tilt", "exact"):
        try:
            get_spec(name).check(cd)
        except QtraitError:
            continue
        out.append(name)
    return out


def loo_guided(result) -> dict:
    """PSIS-LOO of a fit over its guided-set observations only (ArviZ ``loo`` on the
    pointwise log-likelihood), so models with and without the probes compare on the same
    data: ``elpd_loo``, ``se``, ``p_loo`` and the largest Pareto k, ``pareto_k_max``."""
    import arviz as az

    ll = result.idata.log_likelihood["y"]
    ll = ll.isel(obs=np.flatnonzero(ll["obs_set"].values == "guided"))
    idata = az.InferenceData(posterior=result.idata.posterior[["sigma_learn"]],
                             log_likelihood=ll.to_dataset(name="y"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata, pointwise=True)
    return {"elpd_loo": float(loo.elpd_loo), "se": float(loo.se), "p_loo": float(loo.p_loo),
            "pareto_k_max": float(np.max(loo.pareto_k.values))}


def compare_models(run, settings, generations=None, progress: bool = False,
                   models: list[str] | None = None, lfo_start: int = LFO_START) -> dict:
    """Fit each applicable model, score by PSIS-LOO and leave-future-out; a table."""
    from .fit import fit

    models = models or applicable_models(run)
    rows = []
    for name in models:
        full = fit(run, name, settings, generations, save=True, progress=progress)
        row = {"model": name, "conditions_on": full.spec.conditions_on(),
               **loo_guided(full), "diagnostics": full.diagnostics,
               "posterior": str(full.path)}
        G = full.data.G
        lfo, n_obs, steps = 0.0, 0, []
        for t in range(lfo_start, G - 1):
            part = fit(run, name, settings, generations, save=False, upto=t + 1)
            elpd, n = one_step_elpd(part, t + 1, seed=settings.seed)
            steps.append({"train": f"0..{t}", "score": t + 1, "elpd": elpd})
            lfo += elpd
            n_obs += n
        row.update({"elpd_lfo": lfo if steps else None, "lfo_steps": steps})
        rows.append(row)
    best_loo = max(r["elpd_loo"] for r in rows)
    lfo_rows = [r for r in rows if r["elpd_lfo"] is not None]
    best_lfo = max(r["elpd_lfo"] for r in lfo_rows) if lfo_rows else None
    for r in rows:
        r["d_loo"] = r["elpd_loo"] - best_loo
        r["d_lfo"] = None if r["elpd_lfo"] is None else r["elpd_lfo"] - best_lfo
    lines = [f"model comparison on the guided sets of {run.run_id} (higher elpd is better; "
             "d = difference to the best)",
             f"{'model':8} {'elpd_loo':>10} {'se':>7} {'d_loo':>8} {'p_loo':>7} {'k_max':>6}"
             f" {'elpd_lfo':>10} {'d_lfo':>8}"]
    for r in sorted(rows, key=lambda r: -(r["elpd_lfo"] if r["elpd_lfo"] is not None
                                           else r["elpd_loo"])):
        lfo = "n/a" if r["elpd_lfo"] is None else f"{r['elpd_lfo']:.1f}"
        dl = "n/a" if r["d_lfo"] is None else f"{r['d_lfo']:.1f}"
        lines.append(f"{r['model']:8} {r['elpd_loo']:10.1f} {r['se']:7.1f} {r['d_loo']:8.1f} "
                     f"{r['p_loo']:7.1f} {r['pareto_k_max']:6.2f} {lfo:>10} {dl:>8}")
    if any(r["pareto_k_max"] > 0.7 for r in rows):
        lines.append("note: Pareto k > 0.7: PSIS-LOO is unreliable for that model; trust "
                     "leave-future-out (exact refits) instead")
    lines.append(f"leave-future-out: exact refits on generations 0..t, scoring t+1, for "
                 f"t = {lfo_start}..G-2")
    lines.append(f"the target, {TARGET} (elpd_lfo compares like for like). What each "
                 "model uses of it:")
    lines += [f"  {r['model']}: {r['conditions_on']}" for r in rows]
    if len({r["conditions_on"] for r in rows}) > 1:
        lines.append("note: elpd_loo is in-sample, and a probe model's guided scores there "
                     "condition on the same generation's probes, which breeder does not "
                     "see: compare model families by elpd_lfo, not d_loo")
    return {"run": run.run_id, "target": TARGET, "models": rows, "text": "\n".join(lines)}
