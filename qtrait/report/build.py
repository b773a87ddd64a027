"""Building a report: check the request, obtain the fits, compute each section's content.

:func:`plan` checks everything that can be checked before a fit (the models apply to the
run, K is possible, the baseline is another run with the same traits and concepts), so a
bad request fails in a second, not after minutes of sampling. :func:`build_report` then
runs the steps, reporting progress, and returns a :class:`~qtrait.report.document.Report`
that :mod:`qtrait.report.writer` writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .. import __version__
from ..adequacy import LFO_START, MIN_GENERATIONS, check
from ..errors import QtraitError
from ..rundir.manifest import utc_now
from ..theory.calibration import for_run
from ..theory.horizon import Criteria
from . import sections as S
from .document import Report
from .fits import FitStore, check_model

SINGLE_RUN_MODELS = ("breeder", "tilt", "exact")


@dataclass(frozen=True)
class ReportOptions:
    """What a report fits and how. ``compare_models`` None: breeder, plus tilt when the run
    has both probe sets (and a constant schedule), plus ``model``."""

    settings: object                      # qtrait.fit.SamplerSettings
    criteria: Criteria = field(default_factory=Criteria)
    model: str = "breeder"
    from_generations: int = 3
    compare_models: tuple[str, ...] | None = None
    h2: float | None = None               # the zero-shot theory's heritability (None: the
                                          # calibration's)
    calibration: str = "auto"             # the zero-shot calibration (theory.calibration)
    rho: float | None = None              # condition drop's effect, when known
    traits_shown: int = 4
    adequacy: bool = True                 # check that ``model`` describes the run


@dataclass
class Plan:
    """What a report fits and compares, decided by :func:`plan` before anything is fitted:
    the run's ``ChainData``, the models fitted on all generations (and compared by PSIS-LOO),
    and, for each default model left out, why."""
    cd: object                            # ChainData of the whole run
    models: list[str]                     # fitted on all generations, compared by LOO
    skipped: list[str]                    # why a default model is not compared


def _has_probes(cd) -> bool:
    return cd.has("probe_w1") and cd.has("probe_uncond")


def plan(run, opts: ReportOptions, baseline=None) -> Plan:
    """Check the request against the run (and the baseline) before anything is fitted."""
    from ..forecast import check_from_generations
    from ..models import chain_data, fit_data, get_spec

    cd = chain_data([fit_data(run)])
    check_model(opts.model, cd, "--model")
    k = opts.from_generations
    check_from_generations(run, k)
    skipped = []
    if opts.compare_models is not None:
        models = []
        for m in opts.compare_models:
            check_model(m, cd, "--compare-models")
            if m not in models:
                models.append(m)
    else:
        models = ["breeder"]
        if _has_probes(cd):
            try:
                get_spec("tilt").check(cd)
                models.append("tilt")
            except QtraitError as exc:
                skipped.append(f"tilt is not compared: {exc.message}")
        else:
            skipped.append("tilt is not compared: it needs both probe sets "
                           "(probe_w1 and probe_uncond), and the run lacks one")
        skipped.append("exact is compared only on request (--compare-models): it "
                       "compiles for minutes")
    if opts.model not in models:
        models.insert(0, opts.model)
    if baseline is not None:
        if Path(baseline.root).resolve() == Path(run.root).resolve():
            raise QtraitError(f"--baseline {baseline.root} is the run itself",
                              hint="give the baseline chain (constant CFG, no mitigation) "
                              "as --baseline and the mitigated chain as RUN")
        base = chain_data([fit_data(baseline)])
        if (base.runs[0].traits != cd.runs[0].traits
                or base.runs[0].concepts != cd.runs[0].concepts):
            raise QtraitError(f"--baseline {baseline.root}: the two runs must have the same "
                              "traits and concepts (the ReDiFine check compares them cell "
                              "by cell)")
    return Plan(cd, models, skipped)


def _fit_label(res) -> str:
    gens = res.data.generations
    return f"{res.model}, generations {gens[0]}..{gens[-1]}"


def _zeroshot(run, cd, opts: ReportOptions, rho: float | None):
    """The zero-shot theory of ``qtrait theory horizon --run RUN --h2 H`` (exact sampler
    map from generation 0); (ZeroShot or None, a sentence saying what it assumed)."""
    from ..stats.generation0 import gen0_from_run
    from ..models.data import design_schedule
    from ..theory.generation import MapParams
    from ..theory.zeroshot import zero_shot

    d = run.design
    p_drop = float(d.get("p_drop") or 0.0)
    if p_drop > 0 and rho is None:
        return None, (f"No zero-shot theory: condition drop is planned (p_drop = {p_drop}) and "
                      "its effect rho is unknown (theory.md 2.3: rho is measured, not "
                      "assumed); give --rho, or fit tilt/exact (--compare-models), or see "
                      f"qtrait theory horizon --run {run.root}.")
    rho = rho if p_drop > 0 else 0.0
    guidance, sampler = design_schedule(d)
    cal, h2 = for_run(run.manifest, opts.calibration, opts.h2)
    try:
        params = cal.apply(MapParams(model="exact", h2=h2, guidance=guidance,
                                     sampler=sampler, rho=rho, v_mut=0.0,
                                     anchor=d.get("anchor") or "base"))
        g0, _, traits, axes, skipped, corr = gen0_from_run(run, params)
    except QtraitError as exc:
        return None, f"No zero-shot theory: {exc.message}."
    except ValueError as exc:
        return None, f"No zero-shot theory: {exc}."
    crit = replace(opts.criteria, t_max=max(opts.criteria.t_max, len(run.generations) - 1))
    pred = zero_shot(g0, params, crit, axes=axes, correlation=corr)
    t = pred.run_t_star
    when = (f"generation {t} ({pred.run_reason})" if t is not None
            and t <= opts.criteria.t_max else f"no collapse within T_max = "
            f"{opts.criteria.t_max}")
    text = (f"Zero-shot theory (dashed): the exact Gaussian sampler map run forward from "
            f"generation 0's moments and the base model's probes, with h2 = {h2:g}, "
            f"rho = {rho:g}, no mutation, the run's guidance ({guidance.describe()}) and "
            f"sampler, and the calibration {cal.describe()} (as qtrait theory horizon --run "
            f"{run.root}{'' if opts.h2 is None else f' --h2 {opts.h2}'}). Its run-level "
            f"horizon: {when}.")
    if skipped:
        text += f" No theory for {len(skipped)} trait(s) constant at generation 0."
    return S.ZeroShot(pred, traits, text), text


def _rho_from(fits: dict, redifine_out: dict | None, opts: ReportOptions):
    if opts.rho is not None:
        return opts.rho
    if redifine_out is not None and redifine_out.get("rho") is not None:
        return float(redifine_out["rho"])
    for res in fits.values():
        if "rho" in res.idata.posterior:
            return float(res.idata.posterior["rho"].median())
    return None


def build_report(run, opts: ReportOptions, store: FitStore, baseline=None,
                 step: Callable[[str], None] = lambda _: None) -> Report:
    """Every section of one run's report. ``step`` is called before each long step."""
    from ..baselines import baseline_medians
    from ..forecast import forecast
    from ..scoring import backtest
    from ..stats import summarize
    from .sensitivity import criteria_sensitivity, power_scaling

    p = plan(run, opts, baseline)
    k, crit, seed = opts.from_generations, opts.criteria, opts.settings.seed
    step("per-generation statistics")
    summary = summarize(run)
    fits = {}
    for m in p.models:
        step(f"{m} on all generations")
        fits[m] = store.get(run, m)
    main = fits[opts.model]
    cd = main.data
    step(f"{opts.model} on generations 0..{k - 1} and the horizon forecast")
    k_fit = store.get(run, opts.model, slice(0, k))
    fc = forecast(k_fit, run, crit, seed=seed)
    bt = backtest(fc, run, crit) if k < len(run.generations) else None
    adq = None
    if opts.adequacy and cd.G >= MIN_GENERATIONS:
        step(f"adequacy of {opts.model} (one-step PIT by {cd.G - LFO_START - 1} refits)")
        adq = check(run, opts.model, opts.settings, full=main)
    redifine_out = None
    if baseline is not None:
        from ..redifine import redifine_check

        step(f"ReDiFine check against {baseline.run_id}")
        with store.serving_fits():
            # the check's theory column assumes the report's h2 (--h2) and no mutation, as
            # the report's zero-shot theory does; rho is --rho or measured from the probes
            redifine_out = redifine_check(baseline, run, opts.settings, rho=opts.rho,
                                          progress=False, h2=opts.h2,
                                          calibration=opts.calibration)
    step("zero-shot theory")
    zs, zs_text = _zeroshot(run, cd, opts, _rho_from(fits, redifine_out, opts))
    step("prior sensitivity (power-scaling) and criteria")
    try:
        psens, psens_error = power_scaling(main), None
    except (ValueError, KeyError) as exc:      # e.g. a posterior without free variables
        psens, psens_error = None, str(exc)
    crit_table, curves = criteria_sensitivity(fc, k_fit.data)
    step("figures and tables")
    traits = S.shown_traits(run, cd, opts.traits_shown)
    baselines = baseline_medians(bt, fc, run, crit, seed)
    d = fc.run.to_dict()
    last = run.generations[-1]
    t_show = crit.t_max if d["hi90"] is None else min(crit.t_max, max(last, d["hi90"]) + 3)
    used = [(_fit_label(r), r) for r in fits.values()] + [(_fit_label(k_fit), k_fit)]
    if redifine_out is not None:
        seen = {id(r) for _, r in used}
        used += [(_fit_label(r) + f" ({r.data.runs[0].run_id})", r)
                 for r in store.fits() if id(r) not in seen]
    sections = [
        S.design_section(run, summary),
        S.trajectories_section(main, traits, zs, zs_text, seed),
        S.selection_section(run, summary, traits),
        S.variance_section(fits, fc, cd, baselines, seed),
        S.horizon_section(fc, k_fit, bt, traits, zs_text if zs is not None else None, last),
        S.diagnostics_section(used, store.notes, adq),
        S.comparison_section(fits, p.skipped),
        S.sensitivity_section(main, psens, psens_error, crit_table, curves, t_show),
    ]
    if redifine_out is not None:
        sections.append(S.redifine_section(redifine_out))
    training = S.training_section(run)
    if training is not None:
        sections.append(training)
    sections.append(S.images_section(run))
    st = opts.settings
    meta = [f"run {run.run_id} ({run.root}); made {utc_now()[:19]}Z with qtrait {__version__}",
            f"fits: {st.chains} chains x {st.draws} draws after {st.tune} tuning steps, "
            f"target accept {st.target_accept}, sampler {st.sampler}, seed {st.seed}; "
            f"models {', '.join(fits)}; forecast from generations 0..{k - 1}",
            f"collapse criteria: q = {crit.q}, d = {crit.d}, alpha = {crit.alpha}, "
            f"r = {crit.r} (per trait), T_max = {crit.t_max}"]
    if baseline is not None:
        meta.append(f"ReDiFine check against the baseline {baseline.run_id} "
                    f"({baseline.root})")
    return Report(f"qtrait report: {run.run_id}", meta, sections)


def one_line(report: Report) -> str:
    """A run's line in the index of a several-run report."""
    import pandas as pd

    diag = report.section("diagnostics").tables()[0].data
    fails = int((diag["status"] == "fail").sum())
    row = report.section("horizon").tables()[1].data.iloc[0]
    if row["observed"]:
        when = f"collapse observed at generation {row['median']}"
    else:
        when = ("forecast median beyond T_max" if pd.isna(row["median"])
                else f"forecast median generation {row['median']}")
    return f"run-level horizon: {when}; {fails} failed diagnostic check(s)"
