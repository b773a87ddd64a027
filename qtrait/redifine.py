"""Checking ReDiFine against the theory (theory.md section 5): ``qtrait compare``.

Given a baseline run and a mitigated run (same data, same nominal w), the theory predicts:

1. condition drop lowers w_eff: the gap between the unconditional and the w = 1 probes
   shrinks;
2. the guided / w=1 variance ratio moves toward 1 (weaker selection) under the schedule;
3. V_m is larger, or the equilibrium V* exists above q V_0 (no variance collapse);
4. the exaggeration/dilution rate gamma moves toward 0.

Each prediction gets P(direction) and the measured effect beside the effect the
zero-shot theory predicts. Measured 1 and 2 come from the probes (per generation >= 1,
averaged; their sampling distribution from the set sizes and kurtoses, normal
approximation); 3 and 4 from ``breeder`` fits of both runs (independent posteriors,
paired draws). The zero-shot effect runs one generation of the exact Gaussian sampler
map from the baseline's generation-0 moments, with the baseline's posterior h2 and V_m
(a ``tilt`` fit, or ``exact`` when the baseline has a schedule) under each run's design;
rho is the mitigated run's posterior median (its tilt/exact fit) unless given.

Guard against reading one lucky trait out of many: the verdict is the pooled one (the
quantity averaged over every trait and concept before the probability is computed);
per-trait rows are shown with a Bonferroni-corrected threshold, 1 - 0.1/K for K traits.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .errors import QtraitError
from .models.data import pooled_shape

YES = 0.9     # P(direction) needed for "yes" (pooled)


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


def _p_less_normal(a, va, b, vb):
    """P(A < B) for independent normals."""
    return stats.norm.cdf((b - a) / np.sqrt(va + vb))


def _p_abs_less(a, va, b, vb, rng, n=20000):
    """P(|A| < |B|) for independent normals, by Monte Carlo."""
    A = a + np.sqrt(va) * rng.standard_normal(n)
    B = b + np.sqrt(vb) * rng.standard_normal(n)
    return float(np.mean(np.abs(A) < np.abs(B)))


def _verdict(p: float, threshold: float) -> str:
    return "yes" if p >= threshold else ("no" if p <= 1 - threshold else "unclear")


def _zero_shot(base_cd, base_fit, mit_cd, rho, assumed=None):
    """Predicted per-cell quantities for each design: one generation of the exact map,
    with h^2 and V_m the baseline fit's posterior medians, or ``assumed`` (h2, v_mut)."""
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
        s = generation_step(np.zeros(J), np.ones(J), (g0.m_base, g0.v_base), g0, params)
        lam = (s.guided_var - vm) / 1.0
        with np.errstate(divide="ignore"):
            vstar = np.where(lam < 1, vm / (1 - lam), np.inf)
        out[label] = {"gap": np.abs(s.uncond_probe_mean - s.w1_mean),
                      "log_ratio": np.log(s.guided_var / s.w1_var),
                      "v_star": vstar, "v_mut": vm,
                      "gamma": (s.guided_mean - g0.m_uncond) / (0.0 - g0.m_uncond) - 1.0}
    return out


def redifine_check(base_run, mit_run, settings, rho: float | None = None,
                   q: float = 0.5, progress: bool = False, seed: int = 0,
                   h2: float | None = None) -> dict:
    """The four ReDiFine predictions for a baseline and a mitigated run (``qtrait compare``).

    ``base_run`` and ``mit_run`` are open runs with the same traits and concepts;
    ``settings`` are the sampler settings of the fits (:class:`qtrait.fit.SamplerSettings`);
    ``rho`` overrides the condition-drop adaptation (default: the mitigated run's posterior
    median); ``q`` is the variance-collapse threshold of prediction 3; ``h2`` (with ``rho``
    given, or a mitigated run without condition drop) makes the zero-shot column assume
    that heritability and no mutation instead of fitting ``tilt``/``exact`` to the
    baseline, which on a large real run can take long. Fits the ``breeder``
    model to both runs (and ``tilt``/``exact`` when both have probes) and returns a dict with
    ``baseline``, ``mitigated``, ``rho``, ``predictions`` (one row per prediction, with
    ``per_trait`` rows), ``per_trait_threshold``, the fits' ``diagnostics`` and ``text``
    (the table the command prints). QtraitError if the runs' traits or concepts differ.
    """
    from .fit import fit
    from .models import chain_data, fit_data

    base_cd = chain_data([fit_data(base_run)])
    mit_cd = chain_data([fit_data(mit_run)])
    if base_cd.runs[0].traits != mit_cd.runs[0].traits or \
            base_cd.runs[0].concepts != mit_cd.runs[0].concepts:
        raise QtraitError("the two runs must have the same traits and concepts")
    probes = all(cd.has(s) for cd in (base_cd, mit_cd) for s in ("probe_w1", "probe_uncond"))
    rng = np.random.default_rng(seed)
    traits, concepts = base_cd.runs[0].traits, base_cd.runs[0].concepts
    K = len(traits)
    per_trait_threshold = 1 - 0.1 / K
    fits = {lab: fit(run, "breeder", settings, save=True, progress=progress)
            for lab, run in (("baseline", base_run), ("mitigated", mit_run))}
    predicted, rho_used = None, rho
    p_drop = float(mit_cd.design().get("p_drop", 0.0))
    if probes and h2 is not None and (rho is not None or p_drop == 0):
        rho_used = rho if p_drop > 0 else 0.0
        predicted = _zero_shot(base_cd, None, mit_cd, rho_used, assumed=(h2, 0.0))
    elif probes:
        def fam(cd):
            return "tilt" if (cd.design().get("cfg_schedule") or "constant") == "constant" \
                else "exact"
        base_tilt = fit(base_run, fam(base_cd), settings, save=True, progress=progress)
        if rho_used is None:
            if p_drop > 0:
                mit_tilt = fit(mit_run, fam(mit_cd), settings, save=True, progress=progress)
                rho_used = float(mit_tilt.idata.posterior["rho"].median())
            else:
                rho_used = 0.0
        predicted = _zero_shot(base_cd, base_tilt, mit_cd, rho_used)

    def post(label, name):
        p = fits[label].idata.posterior[name]
        return p.values.reshape(-1, p.shape[-1])     # (draws, cells)

    rows = []

    def add(pred_no, name, what, unit_vals, p_pooled, p_cells, measured, measured_cells,
            predicted_eff):
        cell_rows = []
        for j, (_, c, t) in enumerate(base_cd.cells):
            cell_rows.append({"concept": c, "trait": t, "p_direction": float(p_cells[j]),
                              "measured_effect": float(measured_cells[j]),
                              "verdict": _verdict(float(p_cells[j]), per_trait_threshold)})
        rows.append({"prediction": pred_no, "quantity": name, "expected": what,
                     "baseline": unit_vals[0], "mitigated": unit_vals[1],
                     "measured_effect": measured, "predicted_effect": predicted_eff,
                     "p_direction": float(p_pooled), "verdict": _verdict(p_pooled, YES),
                     "per_trait": cell_rows})

    if probes:
        b, m = _probe_quantities(base_cd), _probe_quantities(mit_cd)
        for no, idx, name, what in ((1, 0, "probe gap |m_u - m_w1|", "smaller"),
                                    (2, 2, "log(guided / w=1 variance)", "closer to 0")):
            bc, bv = _avg(b[idx], b[idx + 1])          # per cell over generations
            mc, mv = _avg(m[idx], m[idx + 1])
            bp, bpv = _avg(bc, bv)                      # pooled over cells
            mp, mpv = _avg(mc, mv)
            if no == 1:
                p_pool = _p_less_normal(mp, mpv, bp, bpv)
                p_cells = _p_less_normal(mc, mv, bc, bv)
                meas, meas_cells = mp - bp, mc - bc
                pe = None if predicted is None else float(np.mean(
                    predicted["mitigated"]["gap"] - predicted["baseline"]["gap"]))
            else:
                p_pool = _p_abs_less(mp, mpv, bp, bpv, rng)
                p_cells = np.array([_p_abs_less(mc[j], mv[j], bc[j], bv[j], rng)
                                    for j in range(len(bc))])
                meas, meas_cells = abs(mp) - abs(bp), np.abs(mc) - np.abs(bc)
                pe = None if predicted is None else float(np.mean(
                    np.abs(predicted["mitigated"]["log_ratio"])
                    - np.abs(predicted["baseline"]["log_ratio"])))
            add(no, name, what, (float(bp), float(mp)), p_pool, p_cells, float(meas),
                meas_cells, pe)
    # 3: V_m larger, or V* exists above q V_0 (standardised: V_0 = 1)
    S = min(post("baseline", "v_mut").shape[0], post("mitigated", "v_mut").shape[0])
    vb, vm_ = post("baseline", "v_mut")[:S], post("mitigated", "v_mut")[:S]
    lm, vsm = post("mitigated", "lambda")[:S], post("mitigated", "v_star")[:S]
    ok_cells = (vm_ > vb) | ((lm < 1) & (vsm > q))
    ok_pool = (vm_.mean(1) > vb.mean(1)) | ((lm < 1).all(1) & (np.where(
        np.isfinite(vsm), vsm, np.inf).mean(1) > q))
    pe3 = None
    if predicted is not None:
        fin = lambda a: np.where(np.isfinite(a), a, np.nan)  # noqa: E731
        diff = fin(predicted["mitigated"]["v_star"]) - fin(predicted["baseline"]["v_star"])
        pe3 = float(np.mean(diff[np.isfinite(diff)])) if np.isfinite(diff).any() else None
    add(3, "V_m (or V* above q V_0)", "larger / V* > q", (float(np.median(vb.mean(1))),
        float(np.median(vm_.mean(1)))), ok_pool.mean(), ok_cells.mean(0),
        float(np.median(vm_.mean(1) - vb.mean(1))), np.median(vm_ - vb, axis=0), pe3)
    gb, gm = post("baseline", "gamma")[:S], post("mitigated", "gamma")[:S]
    pe4 = None if predicted is None else float(np.mean(
        np.abs(predicted["mitigated"]["gamma"]) - np.abs(predicted["baseline"]["gamma"])))
    add(4, "gamma (exaggeration rate)", "closer to 0",
        (float(np.median(np.abs(gb).mean(1))), float(np.median(np.abs(gm).mean(1)))),
        np.mean(np.abs(gm.mean(1)) < np.abs(gb.mean(1))),
        np.mean(np.abs(gm) < np.abs(gb), axis=0),
        float(np.median(np.abs(gm).mean(1) - np.abs(gb).mean(1))),
        np.median(np.abs(gm) - np.abs(gb), axis=0), pe4)
    lines = [f"ReDiFine check: {base_run.run_id} (baseline) vs {mit_run.run_id} (mitigated); "
             f"rho {'given' if rho is not None else 'from the mitigated run'}: "
             f"{rho_used if rho_used is not None else 'n/a (no probes)'}"
             + (f"; theory column assumes h2 = {h2:g}, no mutation" if h2 is not None
                and predicted is not None else ""),
             f"{'#':2} {'quantity':30} {'expected':16} {'baseline':>9} {'mitigated':>9} "
             f"{'measured':>9} {'theory':>9} {'P(dir)':>7}  verdict"]
    for r in rows:
        pe = "n/a" if r["predicted_effect"] is None else f"{r['predicted_effect']:+.3g}"
        lines.append(f"{r['prediction']:<2} {r['quantity']:30} {r['expected']:16} "
                     f"{r['baseline']:9.3g} {r['mitigated']:9.3g} {r['measured_effect']:+9.3g}"
                     f" {pe:>9} {r['p_direction']:7.2f}  {r['verdict']}")
    lines.append(f"pooled over {K} trait(s) x {len(concepts)} concept(s): 'yes' needs "
                 f"P(direction) >= {YES}; per-trait rows (in --json) need >= "
                 f"{per_trait_threshold:.3f} (Bonferroni over {K} traits)")
    if not probes:
        lines.append("no probe sets in one of the runs: predictions 1-2 and the zero-shot "
                     "effects need them")
    assumed = h2 is not None and predicted is not None and rho_used is not None
    theory = (None if predicted is None else
              f"assumed h2 = {h2:g}, no mutation" if assumed else
              "the baseline's posterior h2 and V_m")
    return {"baseline": base_run.run_id, "mitigated": mit_run.run_id, "rho": rho_used,
            "theory": theory, "predictions": rows, "per_trait_threshold": per_trait_threshold,
            "diagnostics": {k: v.diagnostics for k, v in fits.items()},
            "text": "\n".join(lines)}
