"""Checking ReDiFine against the theory (docs/theory.md section 4.5): ``qtrait compare``.

Given a baseline run and a mitigated run (same data, same nominal w), the theory predicts
(derived in docs/theory.md):

1. condition drop lowers w_eff: the gap between the unconditional and the w = 1 probes
   shrinks;
2. the guided / w=1 variance ratio moves toward 1 (weaker selection) under the schedule;
3. the variance the fitted map reaches VARIANCE_AHEAD generations on (from generation 0's)
   is larger than the baseline's (mutation-like input or weaker selection: no collapse);
4. the exaggeration/dilution rate gamma moves toward 0.

Each prediction is measured per cell (concept x trait) as a difference mitigated minus
baseline with a standard error: 1 and 2 from the probes (per generation >= 1, averaged;
sampling variances from the set sizes and pooled kurtoses), 3 and 4 from ``breeder``
fits of both runs (independent posteriors, paired draws; the cells' errors are
correlated through each fit's population parameters, so their posterior covariance is
pooled, not only their standard deviations). The cells are combined by
hierarchical pooling (:func:`qtrait.stats.pooling.pool_effects`: cells within traits,
traits around the typical effect mu); the verdict is P(mu in the predicted direction):
'yes' at >= YES, 'no' at <= 1 - YES. One lucky trait widens mu's posterior instead of
deciding it, and the per-trait rows are the traits' shrunk effects. For 1 and 2 a
generation-level check guards against what the cells share (one finetune and one
sampling run per generation move every cell together): mu's standard deviation is at
least the spread over generations of the cell-averaged effect divided by sqrt(T), with a
Student-t of T - 1 degrees of freedom when that bound is the larger.

The theory column is the effect the zero-shot theory predicts, in the measurement's
units: one generation of the exact Gaussian sampler map from the baseline's generation-0
moments under each run's design. By default it uses the zero-shot calibration of the
run's kind (:mod:`qtrait.theory.calibration`: its selection factor and h2; h2 = 1
uncalibrated) and no mutation, as ``qtrait theory horizon --run`` does, with rho
measured from the mitigated run's probes
(:func:`rho_from_probes`); ``theory="fitted"`` takes h2 and V_m from a ``tilt`` fit of the
baseline (``exact`` for a scheduled run) and rho from the mitigated run's fit instead,
which takes much longer.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .errors import QtraitError
from .models.data import pooled_shape
from .stats.pooling import pool_effects
from .theory.calibration import Calibration, for_run
from .theory.closed_forms import breeder_variance

YES = 0.95              # P(direction) of the pooled effect needed for "yes"
VARIANCE_AHEAD = 10     # prediction 3: the variance this many generations on


def _probe_quantities(cd):
    """Per cell (G-1, J) arrays of the gap |m_u - m_w1| and of log(s2_guided / s2_w1),
    and their sampling variances, generations >= 1."""
    g, w1, un = (cd.sets[s] for s in ("guided", "probe_w1", "probe_uncond"))
    sl = slice(1, None)
    kg, kw = pooled_shape(cd, "guided").kurt, pooled_shape(cd, "probe_w1").kurt
    with np.errstate(all="ignore"):
        gap = np.abs(un.mean[sl] - w1.mean[sl])
        gap_var = un.var[sl] / un.n[sl] + w1.var[sl] / w1.n[sl]
        lr = np.log(g.var[sl] / w1.var[sl])
        lr_var = (2 / (g.n[sl] - 1) + kg / g.n[sl] + 2 / (w1.n[sl] - 1) + kw / w1.n[sl])
    return gap, gap_var, lr, lr_var


def _avg(x, v, axis=0):
    """Mean over an axis and the variance of that mean (independent terms)."""
    ok = np.isfinite(x) & np.isfinite(v)
    n = ok.sum(axis=axis)
    m = np.where(ok, x, 0).sum(axis=axis) / np.maximum(n, 1)
    var = np.where(ok, v, 0).sum(axis=axis) / np.maximum(n, 1) ** 2
    return np.where(n > 0, m, np.nan), np.where(n > 0, var, np.nan)


def _verdict(p: float) -> str:
    return "yes" if p >= YES else ("no" if p <= 1 - YES else "unclear")


def rho_from_probes(cd) -> float | None:
    """The condition-drop adaptation rho measured from a run's probes (docs/theory.md
    section 2.3): per cell and generation t >= 1, the unconditional branch's natural
    parameters (1/V^u_t, m^u_t/V^u_t) moved from generation 0's toward those of the w = 1
    probe (the learned conditional) by the fraction rho; the least-squares fraction over
    every cell, generation and both parameters, clipped to [0, 1]. None without probes
    or without any movement to measure."""
    if not all(cd.has(s) for s in ("probe_w1", "probe_uncond")):
        return None
    w1, un = cd.sets["probe_w1"], cd.sets["probe_uncond"]
    with np.errstate(all="ignore"):
        prec_u, prec_w = 1.0 / un.var, 1.0 / w1.var
        x = np.concatenate([(prec_w[1:] - prec_u[0]).ravel(),
                            (w1.mean[1:] * prec_w[1:] - un.mean[0] * prec_u[0]).ravel()])
        y = np.concatenate([(prec_u[1:] - prec_u[0]).ravel(),
                            (un.mean[1:] * prec_u[1:] - un.mean[0] * prec_u[0]).ravel()])
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any() or np.sum(x[ok] ** 2) == 0:
        return None
    return float(np.clip(np.sum(x[ok] * y[ok]) / np.sum(x[ok] ** 2), 0.0, 1.0))


def _zero_shot(base_cd, base_fit, mit_cd, rho, assumed=None, cal: Calibration | None = None):
    """Predicted per-cell quantities for each design: one generation of the exact map,
    with h^2 and V_m the baseline fit's posterior medians, or ``assumed`` (h2, v_mut); the
    guidance under the calibration ``cal`` (theory.calibration)."""
    from .models.data import design_schedule
    from .theory.generation import Generation0, MapParams, generation_step

    if assumed is not None:
        h2, vm = (np.full(base_cd.J, float(v)) for v in assumed)
    else:
        post = base_fit.idata.posterior
        h2 = post["h2"].median(("chain", "draw")).values
        vm = post["v_mut"].median(("chain", "draw")).values
    w1, un = base_cd.sets["probe_w1"], base_cd.sets["probe_uncond"]
    J = base_cd.J
    g0 = Generation0.of(mean0=np.zeros(J), var0=np.ones(J), m_base=w1.mean[0],
                        v_base=w1.var[0], m_uncond=un.mean[0], v_uncond=un.var[0])
    out = {}
    for label, cd, r in (("baseline", base_cd, 0.0), ("mitigated", mit_cd, rho)):
        guidance, sampler = design_schedule(cd.design())
        params = MapParams(model="exact", h2=h2, guidance=guidance, sampler=sampler, rho=r,
                           v_mut=vm, anchor=cd.design().get("anchor", "base"))
        if cal is not None:
            params = cal.apply(params)
        s = generation_step(np.zeros(J), np.ones(J), (g0.m_base, g0.v_base), g0, params)
        lam = np.maximum(s.guided_var - vm, 0.0)     # the variance factor at V = 1
        out[label] = {"gap": np.abs(s.uncond_probe_mean - s.w1_mean),
                      "log_ratio": np.log(s.guided_var / s.w1_var),
                      "log_v_ahead": np.log(np.maximum(breeder_variance(
                          lam, vm, 1.0, VARIANCE_AHEAD), 1e-300)),
                      "gamma": (s.guided_mean - g0.m_uncond) / (0.0 - g0.m_uncond) - 1.0}
    return out


def _generation_bound(per_gen: np.ndarray) -> tuple[float, int] | None:
    """(sd, T) of the cell-averaged effect over T generations: the spread that what the
    cells of a generation share puts on the run-level effect (None with < 3 generations)."""
    e = np.nanmean(per_gen, axis=1)
    e = e[np.isfinite(e)]
    if len(e) < 3:
        return None
    return float(np.std(e, ddof=1) / np.sqrt(len(e))), len(e)


def _judge(est, se, traits, sign: int, per_gen=None, cov=None, judged: bool = True) -> dict:
    """Pool the per-cell effects and state P(direction) (``sign`` +1: larger expected,
    -1: smaller), with the generation-level bound where per-generation effects exist;
    ``cov``: the cells' error covariance where their errors are correlated. ``judged``
    False: the theory expects no change, so every verdict is "n/a" (P still shown)."""
    pooled = pool_effects(est, se, traits, cov=cov)
    sd, p_pos, bound_used = pooled.sd, pooled.p_positive, False
    bound = _generation_bound(per_gen) if per_gen is not None else None
    if bound is not None and bound[0] > sd:
        sd, bound_used = bound[0], True
        p_pos = float(stats.t.sf(0.0, bound[1] - 1, loc=pooled.mean, scale=sd))
    p_dir = p_pos if sign > 0 else 1.0 - p_pos
    g_dir = pooled.group_p_positive if sign > 0 else 1.0 - pooled.group_p_positive

    def verdict(p):
        return _verdict(float(p)) if judged else "n/a"
    return {"measured_effect": pooled.mean, "measured_sd": sd, "p_direction": p_dir,
            "verdict": verdict(p_dir), "tau_trait": pooled.tau_group,
            "tau_cell": pooled.tau_cell, "trait_level": pooled.group_level,
            "generation_bound": None if bound is None else
            {"sd": bound[0], "generations": bound[1], "used": bound_used},
            "cells": pooled.n_cells,
            "per_trait": [{"trait": t, "effect": float(m), "sd": float(s_),
                           "p_direction": float(p), "verdict": verdict(p)}
                          for t, m, s_, p in zip(pooled.groups, pooled.group_mean,
                                                 pooled.group_sd, g_dir)]}


def _theory(base_run, mit_run, base_cd, mit_cd, settings, rho, h2, theory, progress,
            calibration="auto"):
    """(predicted per-cell quantities or None, rho used, rho's source, what the theory
    column assumes); both runs have both probe sets."""
    from .fit import fit

    p_drop = float(mit_cd.design().get("p_drop", 0.0))
    if theory == "assumed":
        if rho is not None:
            rho_used, source = rho, "given"
        elif p_drop > 0:
            rho_used, source = rho_from_probes(mit_cd), "probes"
        else:
            rho_used, source = 0.0, "no condition drop"
        if rho_used is None:
            return None, None, None, None
        cal, h2_used = for_run(base_run.manifest, calibration, h2)
        return (_zero_shot(base_cd, None, mit_cd, rho_used, assumed=(h2_used, 0.0), cal=cal),
                rho_used, source, f"assumed h2 = {h2_used:g}, no mutation; calibration "
                f"{cal.describe()}")

    def fam(cd):
        return "tilt" if (cd.design().get("cfg_schedule") or "constant") == "constant" \
            else "exact"
    base_fit = fit(base_run, fam(base_cd), settings, save=True, progress=progress)
    if rho is not None:
        rho_used, source = rho, "given"
    elif p_drop > 0:
        mit_fit = fit(mit_run, fam(mit_cd), settings, save=True, progress=progress)
        rho_used, source = float(mit_fit.idata.posterior["rho"].median()), "fitted"
    else:
        rho_used, source = 0.0, "no condition drop"
    return (_zero_shot(base_cd, base_fit, mit_cd, rho_used), rho_used, source,
            "the baseline's posterior h2 and V_m")


def redifine_check(base_run, mit_run, settings, rho: float | None = None,
                   progress: bool = False, h2: float | None = None,
                   theory: str = "assumed", calibration: str = "auto") -> dict:
    """The four ReDiFine predictions for a baseline and a mitigated run (``qtrait compare``).

    ``base_run`` and ``mit_run`` are open runs with the same traits and concepts;
    ``settings`` are the sampler settings of the breeder fits
    (:class:`qtrait.fit.SamplerSettings`); ``rho`` fixes the condition-drop adaptation
    (default: measured, :func:`rho_from_probes`, or fitted with ``theory="fitted"``);
    ``h2`` the heritability the default theory column assumes (default: the
    ``calibration``'s, :func:`qtrait.theory.calibration.calibration_for`; 1
    uncalibrated), whose selection factor it also applies. Returns a dict with
    ``baseline``, ``mitigated``, ``rho``, ``rho_source``, ``theory``, ``predictions`` (one
    row per prediction: the pooled effect and its sd, P(direction), verdict, the
    scales of the pooling, the generation bound, ``per_trait`` rows, the theory's
    effect), the fits' ``diagnostics`` and ``text`` (the table the command prints).
    QtraitError if the runs' traits or concepts differ."""
    from .fit import fit
    from .models import chain_data, fit_data

    if theory not in ("assumed", "fitted"):
        raise QtraitError(f"theory must be 'assumed' or 'fitted', got {theory!r}")
    base_cd = chain_data([fit_data(base_run)])
    mit_cd = chain_data([fit_data(mit_run)])
    if base_cd.runs[0].traits != mit_cd.runs[0].traits or \
            base_cd.runs[0].concepts != mit_cd.runs[0].concepts:
        raise QtraitError("the two runs must have the same traits and concepts")
    traits = np.array([t for (_, _, t) in base_cd.cells], dtype=object)
    fits = {lab: fit(run, "breeder", settings, save=True, progress=progress)
            for lab, run in (("baseline", base_run), ("mitigated", mit_run))}
    probes = all(cd.has(s) for cd in (base_cd, mit_cd) for s in ("probe_w1", "probe_uncond"))
    predicted, rho_used, rho_source, assumed = (_theory(
        base_run, mit_run, base_cd, mit_cd, settings, rho, h2, theory, progress, calibration)
        if probes else (None, rho, None, None))

    def post(label, name):
        p = fits[label].idata.posterior[name]
        return p.values.reshape(-1, p.shape[-1])     # (draws, cells)

    rows = []

    def add(no, name, what, sign, levels, est, se, per_gen, predicted_eff, cov=None,
            judged=True):
        rows.append({"prediction": no, "quantity": name, "expected": what,
                     "baseline": levels[0], "mitigated": levels[1],
                     **_judge(est, se, traits, sign, per_gen, cov, judged),
                     "predicted_effect": predicted_eff})

    if probes:
        b, m = _probe_quantities(base_cd), _probe_quantities(mit_cd)
        T = min(b[0].shape[0], m[0].shape[0])
        # 1: the gap, smaller
        bc, bv = _avg(b[0], b[1])
        mc, mv = _avg(m[0], m[1])
        pe = None if predicted is None else float(np.mean(
            predicted["mitigated"]["gap"] - predicted["baseline"]["gap"]))
        drop = float(mit_cd.design().get("p_drop", 0.0)) > 0
        add(1, "probe gap |m_u - m_w1|", "smaller" if drop else "unchanged", -1,
            (float(np.nanmean(bc)), float(np.nanmean(mc))), mc - bc, np.sqrt(mv + bv),
            m[0][:T] - b[0][:T], pe, judged=drop)   # only condition drop moves the gap
        # 2: |log variance ratio|, closer to 0 (signs from each cell's average)
        bc, bv = _avg(b[2], b[3])
        mc, mv = _avg(m[2], m[3])
        per_gen = np.sign(mc) * m[2][:T] - np.sign(bc) * b[2][:T]
        pe = None if predicted is None else float(np.mean(
            np.abs(predicted["mitigated"]["log_ratio"])
            - np.abs(predicted["baseline"]["log_ratio"])))
        add(2, "|log(guided / w=1 variance)|", "closer to 0", -1,
            (float(np.nanmean(np.abs(bc))), float(np.nanmean(np.abs(mc)))),
            np.abs(mc) - np.abs(bc), np.sqrt(mv + bv), per_gen, pe)
    # 3: log variance VARIANCE_AHEAD generations on (from V_0 = 1), larger
    S = min(post("baseline", "lambda").shape[0], post("mitigated", "lambda").shape[0])

    def log_v(label):
        return np.log(breeder_variance(post(label, "lambda")[:S], post(label, "v_mut")[:S],
                                       1.0, VARIANCE_AHEAD))
    lb, lm = log_v("baseline"), log_v("mitigated")
    diff = lm - lb
    pe3 = None if predicted is None else float(np.mean(
        predicted["mitigated"]["log_v_ahead"] - predicted["baseline"]["log_v_ahead"]))
    add(3, f"log variance {VARIANCE_AHEAD} generations on", "larger", +1,
        (float(np.median(lb.mean(1))), float(np.median(lm.mean(1)))),
        diff.mean(0), None, None, pe3, cov=np.atleast_2d(np.cov(diff, rowvar=False)))
    # 4: |gamma|, closer to 0
    gb, gm = np.abs(post("baseline", "gamma")[:S]), np.abs(post("mitigated", "gamma")[:S])
    diff = gm - gb
    pe4 = None if predicted is None else float(np.mean(
        np.abs(predicted["mitigated"]["gamma"]) - np.abs(predicted["baseline"]["gamma"])))
    add(4, "|gamma| (exaggeration rate)", "closer to 0", -1,
        (float(np.median(gb.mean(1))), float(np.median(gm.mean(1)))),
        diff.mean(0), None, None, pe4, cov=np.atleast_2d(np.cov(diff, rowvar=False)))
    fits_ok = all(f.diagnostics.get("ok") for f in fits.values())
    for r in rows:
        r["fits_ok"] = fits_ok if r["prediction"] in (3, 4) else None
    K, C = len(base_cd.runs[0].traits), len(base_cd.runs[0].concepts)
    lines = [f"ReDiFine check: {base_run.run_id} (baseline) vs {mit_run.run_id} (mitigated); "
             f"rho {'n/a (no probes)' if rho_used is None else f'{rho_used:.3g}'}"
             + (f" ({rho_source})" if rho_source else "")
             + (f"; theory column: {assumed}" if assumed else ""),
             f"{'#':2} {'quantity':30} {'expected':12} {'baseline':>9} {'mitigated':>9} "
             f"{'effect':>9} {'sd':>7} {'theory':>9} {'P(dir)':>7}  verdict"]
    for r in rows:
        pe = "n/a" if r["predicted_effect"] is None else f"{r['predicted_effect']:+.3g}"
        lines.append(f"{r['prediction']:<2} {r['quantity']:30} {r['expected']:12} "
                     f"{r['baseline']:9.3g} {r['mitigated']:9.3g} {r['measured_effect']:+9.3g}"
                     f" {r['measured_sd']:7.2g} {pe:>9} {r['p_direction']:7.2f}  {r['verdict']}")
    lines.append(f"effect: mitigated minus baseline, pooled hierarchically over {K} trait(s) x "
                 f"{C} concept(s) (the typical trait's effect); 'yes' needs P(direction) >= "
                 f"{YES}, 'no' <= {1 - YES:.2f}; per-trait effects in --json")
    bound = [str(r["prediction"]) for r in rows
             if r["generation_bound"] and r["generation_bound"]["used"]]
    if bound:
        lines.append(f"prediction(s) {', '.join(bound)}: sd set by the spread over "
                     "generations (what the cells of a generation share), not by the cells")
    if not fits_ok:
        failed = [k for k, f in fits.items() if not f.diagnostics.get("ok")]
        lines.append(f"predictions 3-4 rest on breeder fits that FAILED their diagnostics "
                     f"({', '.join(failed)}): read them as unconverged")
    if predicted is None:
        lines.append("no theory column: it needs the probe sets of both runs"
                     + (" and a measurable rho (give --rho)" if rho_used is None
                        and base_cd.has("probe_w1") else ""))
    if not probes:
        lines.append("no probe sets in one of the runs: predictions 1-2 need them")
    return {"baseline": base_run.run_id, "mitigated": mit_run.run_id, "rho": rho_used,
            "rho_source": rho_source, "theory": assumed, "predictions": rows,
            "yes_threshold": YES, "variance_ahead": VARIANCE_AHEAD,
            "diagnostics": {k: v.diagnostics for k, v in fits.items()},
            "text": "\n".join(lines)}
