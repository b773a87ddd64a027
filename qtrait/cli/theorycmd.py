"""``qtrait theory``: closed forms and zero-shot predictions from generation 0."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer

from ..errors import QtraitError
from ..rundir import open_run
from ..theory.calibration import for_run
from ..theory.closed_forms import tilt
from ..theory.generation import Generation0, MapParams
from ..theory.sampler import gaussian_cfg_map, sampler_variance_factor
from ..stats.generation0 import gen0_from_run
from ..theory.zeroshot import (Prediction, rho_sweep,
                               run_trajectory_table, zero_shot)
from .common import JSON_HELP, print_json
from .options import (D, Q, R, BetaSchedule, CfgEnd, CfgUntil, Prediction as PredictionOpt, Rho, SamplerName, Spacing, Steps, TMax,
                      H2, CalibrationOpt, check_theory_options, floats, make_criteria,
                      make_guidance, make_sampler)

app = typer.Typer(help="Closed forms of the theory and zero-shot collapse predictions.",
                  no_args_is_help=True)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="theory")


def _prediction_json(pred: Prediction, concepts, traits, correlation=None, axes=None) -> dict:
    traj = pred.trajectory
    out = {
        "horizon": {"t_star": pred.run_t_star, "reason": pred.run_reason,
                    "invalid_at": pred.invalid_at},
        "invalid_cells": _invalid_cells(pred, concepts, traits),
        "criteria": pred.criteria.to_dict(),
        "run_trajectory": {k: v.tolist() for k, v in
                           run_trajectory_table(pred, correlation, axes).items()},
    }
    if traj["guided_mean"].ndim == 1:
        out["trajectory"] = {"mean": traj["guided_mean"].tolist(),
                             "var": traj["guided_var"].tolist()}
    else:
        out["traits"] = [
            {"concept": c, "trait": t,
             "t_star": int(pred.t_star[i, k]) if pred.t_star[i, k] > 0 else None,
             "reason": pred.trait_reason((i, k)),
             "mean": traj["guided_mean"][:, i, k].tolist(),
             "var": traj["guided_var"][:, i, k].tolist()}
            for i, c in enumerate(concepts) for k, t in enumerate(traits)]
    return out


def _horizon_text(t: int | None, reason: str | None, t_max: int, invalid_at=None,
                  model: str = "tilt") -> str:
    text = f"generation {t} ({reason})" if t is not None else f"no collapse within {t_max}"
    if invalid_at is not None and (t is None or invalid_at <= t_max):
        if t is None:
            text = "no collapse by the criteria"
        what = "the tilt stops existing" if model == "tilt" else "the exact map stops being valid"
        text += f"; {what} at generation {invalid_at} (the variance grows)"
    return text


def _invalid_cells(pred: Prediction, concepts, traits) -> list[dict]:
    """Cells whose map became invalid: concept, trait and the first invalid generation
    (none for a single trait given by options: its horizon text says it)."""
    valid, var0 = pred.trajectory["valid"], pred.trajectory["guided_var"][0]
    if valid.ndim == 1:
        return []
    out = []
    for i, c in enumerate(concepts):
        for k, t in enumerate(traits):
            bad = np.flatnonzero(~valid[:, i, k])
            if len(bad) and np.isfinite(var0[i, k]):
                out.append({"concept": c, "trait": t, "generation": int(bad[0])})
    return out


@app.command("horizon")
def horizon_cmd(
    run: Optional[Path] = typer.Option(None, "--run", help="Take generation-0 moments from "
                                       "this run (needs its base-model probes)."),
    mean0: float = typer.Option(1.0, help="Mean of the real data D_0."),
    var0: float = typer.Option(0.36, help="Variance of the real data D_0."),
    m_base: Optional[float] = typer.Option(None, help="Base model's conditional mean "
                                           "(default: mean0)."),
    v_base: Optional[float] = typer.Option(None, help="Base model's conditional variance "
                                           "(default: var0)."),
    m_uncond: float = typer.Option(0.0, help="Unconditional mean."),
    v_uncond: float = typer.Option(1.0, help="Unconditional variance."),
    h2: H2 = None,
    calibration: CalibrationOpt = "auto",
    anchor: Optional[str] = typer.Option(None, help="base or previous (default: the run's "
                                         "design with --run, else base)."),
    mutation: float = typer.Option(0.0, "--mutation", help="Mutation variance V_m."),
    model: str = typer.Option("exact", help="exact (sampler map) or tilt."),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale", help="Guidance scale w "
                                              "(default: the run's design with --run, else "
                                              "7.5)."),
    cfg_schedule: Optional[str] = typer.Option(None, "--cfg-schedule", help="constant, "
                                               "linear, cosine, step or interval (default: "
                                               "the run's design with --run, else "
                                               "constant)."),
    cfg_end: Optional[float] = typer.Option(None, "--cfg-end", help="Scale at the end of a "
                                            "linear or cosine schedule, and outside a step "
                                            "one (default: the run's, else 1)."),
    cfg_until: Optional[float] = typer.Option(None, "--cfg-until", help="Progress (0..1) "
                                              "where a step schedule ends (default: the "
                                              "run's, else 0.5)."),
    rho: Rho = None,
    p_drop: Optional[float] = typer.Option(None, "--p-drop", help="Condition-drop rate "
                                           "(default: the run's design with --run, else 0); "
                                           "its effect is rho."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="ddim or ddpm (default: "
                                          "the run's, else ddim)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the "
                                        "run's, else 50)."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="leading, linspace, "
                                          "trailing or floor_linspace (default: the run's, "
                                          "else leading)."),
    prediction: Optional[str] = typer.Option(None, "--prediction", help="epsilon or "
                                             "v_prediction (default: the run's, else "
                                             "epsilon)."),
    betas: Optional[str] = typer.Option(None, "--betas", help="linear or sd (default: the "
                                        "run's, else linear)."),
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Predicted trajectory and collapse horizon from generation 0 (zero-shot).

    Runs the generation map forward on expected moments. With --run, generation-0 moments
    come from the run and the design (w, schedule, anchor, p_drop) defaults to the run's.
    With --p-drop > 0 and no --rho, prints the horizon for rho in 0.1, 0.25, 0.5, 0.75
    instead of assuming one.
    """
    crit = make_criteria(q, d, r, t_max)
    opened = open_run(run) if run is not None else None
    design_of_run = opened.design if opened is not None else {}
    if design_of_run.get("training_data") == "accumulate":
        raise QtraitError(f"{run}: the run finetunes each generation on every guided set so "
                          "far (training_data = accumulate); the zero-shot theory maps "
                          "replaced data only (docs/theory.md 2.6). Fit the run instead: "
                          "qtrait predict reads accumulated data")

    def pick(value, field, default):
        if value is not None:
            return value
        return design_of_run.get(field) if design_of_run.get(field) is not None else default

    run_sampler = design_of_run.get("sampler") or {}
    run_sched = design_of_run.get("cfg_schedule_params") or {}
    sampler = sampler or run_sampler.get("scheduler") or "ddim"
    steps = steps or run_sampler.get("steps") or 50
    spacing = spacing or run_sampler.get("timestep_spacing") or "leading"
    prediction = prediction or run_sampler.get("prediction_type") or "epsilon"
    betas = betas or {"scaled_linear": "sd"}.get(run_sampler.get("beta_schedule"), "linear")
    cfg_end = cfg_end if cfg_end is not None else float(run_sched.get("end", 1.0))
    cfg_until = cfg_until if cfg_until is not None else float(run_sched.get("until", 0.5))
    cfg_scale = float(pick(cfg_scale, "cfg_scale", 7.5))
    cfg_schedule = pick(cfg_schedule, "cfg_schedule", "constant")
    anchor = pick(anchor, "anchor", "base")
    p_drop = float(pick(p_drop, "p_drop", 0.0))
    check_theory_options(h2, calibration)
    cal, h2 = for_run(opened.manifest if opened else None, calibration, h2)
    params = _params(model, h2, anchor, mutation, cfg_scale, cfg_schedule, cfg_end, cfg_until,
                     rho or 0.0, sampler, steps, spacing, prediction, betas)
    nominal = params.guidance.describe()
    params = cal.apply(params)
    axes, skipped, corr = None, [], None
    if opened is not None:
        g0, concepts, traits, axes, skipped, corr = gen0_from_run(opened, params)
    else:
        g0 = Generation0.of(mean0=mean0, var0=var0,
                            m_base=mean0 if m_base is None else m_base,
                            v_base=var0 if v_base is None else v_base,
                            m_uncond=m_uncond, v_uncond=v_uncond)
        concepts, traits = ["all"], ["trait"]
    design = {"model": model, "guidance": nominal,
              "sampler": f"{sampler} {steps} steps ({spacing}, {prediction})", "h2": h2,
              "anchor": anchor, "mutation": mutation, "p_drop": p_drop,
              "calibration": cal.describe()}
    if p_drop > 0 and rho is None:
        sweep = rho_sweep(g0, params, crit, axes=axes, correlation=corr)
        if json_out:
            print_json({"design": design, "rho_unknown": True,
                        "by_rho": [{"rho": rh, **_prediction_json(p, concepts, traits, corr,
                                                                  axes)}
                                   for rh, p in sweep]})
            return
        typer.echo(f"condition drop planned (p_drop = {p_drop}) but its effect rho is not "
                   "known: horizons for a range of rho")
        for rh, p in sweep:
            typer.echo(f"  rho = {rh:<5} {_horizon_text(p.run_t_star, p.run_reason, t_max, p.invalid_at, model)}")
        return
    design["rho"] = params.rho
    pred = zero_shot(g0, params, crit, axes=axes, correlation=corr)
    if json_out:
        print_json({"design": design, "skipped": skipped,
                    **_prediction_json(pred, concepts, traits, corr, axes)})
        return
    if skipped:
        typer.echo(f"no horizon for {len(skipped)} trait(s) constant within a concept at "
                   f"generation 0: {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}")
    if axes is not None:
        typer.echo(f"run level over the {int(axes.sum())} trait axes: "
                   f"{', '.join(t for t, a in zip(traits, axes) if a)}")
    typer.echo("zero-shot prediction: " + ", ".join(
        f"{k} {v}" for k, v in design.items()
        if k != "calibration" or cal.name != "none"))   # said only when one applies
    typer.echo("horizon: " + _horizon_text(pred.run_t_star, pred.run_reason, t_max,
                                           pred.invalid_at, model))
    invalid = _invalid_cells(pred, concepts, traits)
    if invalid:
        w = "w/(w - 1)" if model == "tilt" else "w/(w - 1) (w the schedule's largest value)"
        typer.echo(f"map invalid in {len(invalid)} cell(s), first at generation "
                   f"{min(c['generation'] for c in invalid)}: the learned conditional became "
                   f"wider than {w} times the unconditional, where guidance widens the "
                   "variance without bound and the Gaussian map no longer describes the "
                   "sampler. Their trajectories stop there (NaN), and the run level leaves "
                   "their traits out: "
                   + ", ".join(f"{c['concept']}/{c['trait']}@{c['generation']}"
                               for c in invalid[:6]) + (" ..." if len(invalid) > 6 else ""))
    traj = pred.trajectory
    n_show = min(t_max, (pred.run_t_star or t_max) + 1)
    if pred.invalid_at is not None:
        n_show = min(n_show, pred.invalid_at - 1)
    if traj["guided_mean"].ndim == 1:
        table = pd.DataFrame({"mean": traj["guided_mean"], "var": traj["guided_var"],
                              "V/V0": traj["guided_var"] / traj["guided_var"][0]})
    else:
        table = pd.DataFrame(run_trajectory_table(pred, corr, axes))
        per = pd.DataFrame([
            {"concept": c, "trait": t,
             "horizon": _horizon_text(int(pred.t_star[i, k]) if pred.t_star[i, k] > 0
                                      else None, pred.trait_reason((i, k)), t_max)}
            for i, c in enumerate(concepts) for k, t in enumerate(traits)])
        if len(concepts) > 3:   # one line per trait: its earliest concept
            rows = []
            for k, t in enumerate(traits):
                ts = pred.t_star[:, k]
                hit = ts > 0
                if hit.any():
                    i = int(np.argmin(np.where(hit, ts, np.iinfo(np.int64).max)))
                    text = (f"generation {int(ts[i])} ({pred.trait_reason((i, k))}) first in "
                            f"concept {concepts[i]}; {int(hit.sum())}/{len(concepts)} "
                            f"concepts collapse within {t_max}")
                else:
                    text = f"no collapse within {t_max} in any concept"
                rows.append({"trait": t, "horizon": text})
            per = pd.DataFrame(rows)
        typer.echo("per trait:\n" + per.to_string(index=False))
        typer.echo("run level (pooled over concepts; theory.md 3.1):")
    typer.echo(table.iloc[: n_show + 1].round(4).rename_axis("gen").to_string())


def _params(model, h2, anchor, mutation, cfg_scale, cfg_schedule, cfg_end, cfg_until, rho,
            sampler, steps, spacing, prediction, betas) -> MapParams:
    try:
        return MapParams(model=model, h2=h2, anchor=anchor,
                         guidance=make_guidance(cfg_schedule, cfg_scale, cfg_end, cfg_until),
                         sampler=make_sampler(sampler, steps, spacing, prediction, betas),
                         rho=rho, v_mut=mutation)
    except ValueError as exc:
        raise QtraitError(str(exc)) from None


@app.command("sweep")
def sweep_cmd(
    cfg_scales: str = typer.Option("1,1.5,2,3,5,7.5", help="Comma-separated CFG scales."),
    schedules: str = typer.Option("constant,linear,cosine", help="Comma-separated "
                                  "schedules (decaying ones end at --cfg-end)."),
    within: int = typer.Option(10, help="Answer: which collapse within this many "
                               "generations?"),
    mean0: float = typer.Option(1.0, help="Mean of the real data D_0 (= the base model's)."),
    var0: float = typer.Option(0.36, help="Variance of D_0 (= the base model's)."),
    m_uncond: float = typer.Option(0.0, help="Unconditional mean."),
    v_uncond: float = typer.Option(1.0, help="Unconditional variance."),
    h2: float = typer.Option(1.0, help="Assumed heritability of finetuning."),
    anchor: str = typer.Option("base", help="base or previous."),
    mutation: float = typer.Option(0.0, "--mutation", help="Mutation variance V_m."),
    rho: Rho = None,
    cfg_end: CfgEnd = 1.0, cfg_until: CfgUntil = 0.5,
    sampler: SamplerName = "ddim", steps: Steps = 50, spacing: Spacing = "leading",
    prediction: PredictionOpt = "epsilon", betas: BetaSchedule = "linear",
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Which CFG scales and schedules collapse within N generations? (exact model)"""
    crit = make_criteria(q, d, r, t_max)
    g0 = Generation0.of(mean0=mean0, var0=var0, m_base=mean0, v_base=var0,
                        m_uncond=m_uncond, v_uncond=v_uncond)
    rows = []
    for sched in [s.strip() for s in schedules.split(",") if s.strip()]:
        for w in floats(cfg_scales, "--cfg-scales"):
            params = _params("exact", h2, anchor, mutation, w, sched, cfg_end, cfg_until,
                             rho or 0.0, sampler, steps, spacing, prediction, betas)
            p = zero_shot(g0, params, crit)
            rows.append({"cfg_scale": w, "schedule": sched, "t_star": p.run_t_star,
                         "reason": p.run_reason,
                         "collapses_within": p.run_t_star is not None
                         and p.run_t_star <= within})
    if json_out:
        print_json({"within": within, "criteria": crit.to_dict(), "rows": rows})
        return
    df = pd.DataFrame(rows)
    df["t_star"] = [f">{t_max}" if r["t_star"] is None else str(int(r["t_star"]))
                    for r in rows]
    df["reason"] = df["reason"].fillna("-")
    df[f"collapse within {within}"] = np.where(df.pop("collapses_within"), "yes", "no")
    typer.echo(df.to_string(index=False))


@app.command("cfg")
def cfg_cmd(
    m: float = typer.Option(1.0, help="Conditional mean."),
    u: float = typer.Option(0.36, help="Conditional variance."),
    m_uncond: float = typer.Option(0.0, help="Unconditional mean."),
    v_uncond: float = typer.Option(1.0, help="Unconditional variance."),
    cfg_scales: str = typer.Option("0.5,1,2,3,7.5", help="Comma-separated CFG scales."),
    sampler: SamplerName = "ddim", steps: Steps = 200, spacing: Spacing = "floor_linspace",
    prediction: PredictionOpt = "epsilon", betas: BetaSchedule = "linear",
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """One CFG step on a Gaussian trait: the exact sampler map against the tilt."""
    s = make_sampler(sampler, steps, spacing, prediction, betas)
    rows = []
    for w in floats(cfg_scales, "--cfg-scales"):
        em, ev = gaussian_cfg_map(m, u, m_uncond, v_uncond, w, s)
        tm, tv, ok = tilt(m, u, m_uncond, v_uncond, w)
        rows.append({"w": w, "exact_mean": float(em), "exact_var": float(ev),
                     "tilt_mean": float(tm) if ok else None,
                     "tilt_var": float(tv) if ok else None, "tilt_valid": bool(ok)})
    factor = sampler_variance_factor(s, m, u, m_uncond, v_uncond)
    if json_out:
        print_json({"rows": rows, "sampler_variance_factor_w1": factor})
        return
    df = pd.DataFrame(rows).drop(columns="tilt_valid")
    typer.echo(df.to_string(index=False, float_format=lambda x: f"{x:.4g}",
                            na_rep="invalid"))
    typer.echo(f"sampler variance factor at w = 1: {factor:.4f} per generation "
               f"({sampler}, {steps} steps, {spacing})")


