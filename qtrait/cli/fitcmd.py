"""``qtrait fit``, ``qtrait predict`` and ``qtrait backtest``: posteriors, horizon
forecasts and how well they would have done."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import sampler_defaults as defaults
from ..errors import QtraitError
from ..models.data import likelihood_line, likelihood_summary
from .common import GENERATIONS_HELP, JSON_HELP, parse_generations, print_json
from .options import (H2, Alpha, CalibrationOpt, Concepts, D, Q, R, TMax, Traits,
                      check_theory_options, ints, make_criteria, names, open_selected)

Model = Annotated[str, typer.Option("--model", help="breeder, tilt (needs probes), exact "
                                    "(needs probes) or hier (several runs).")]
Chains = Annotated[int, typer.Option("--chains", help="MCMC chains.")]
Draws = Annotated[int, typer.Option("--draws", help="Draws per chain after tuning.")]
Tune = Annotated[int, typer.Option("--tune", help="Tuning steps per chain.")]
TargetAccept = Annotated[float, typer.Option("--target-accept",
                                             help="NUTS target acceptance rate.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (sampling and forecasts).")]
SamplerOpt = Annotated[Optional[str], typer.Option(
    "--sampler", help="nutpie (default: compiled, fast, reuses the compiled model across "
    "fits in one process) or pymc (PyMC's own NUTS).")]
Json = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
FromGenerations = Annotated[int, typer.Option("--from-generations", "-k",
                                              help="Fit generations 0..K-1 (K >= 2; "
                                              "K >= 3 recommended).")]
Strict = Annotated[bool, typer.Option("--strict", help="Exit with status 3 when a fit behind "
                                      "the output fails its diagnostics (R-hat <= 1.01, "
                                      "ESS >= 400, no divergences, E-BFMI >= 0.3).")]
STRICT_EXIT = 3


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)
    app.command("predict")(predict_cmd)
    app.command("backtest")(backtest_cmd)
    app.command("compare")(compare_cmd)


def settings_of(chains, draws, tune, target_accept, seed, sampler):
    from ..fit import SamplerSettings, default_sampler

    if chains < 1 or draws < 1 or tune < 0 or not 0 < target_accept < 1:
        raise QtraitError("need --chains >= 1, --draws >= 1, --tune >= 0 and "
                          "0 < --target-accept < 1")
    sampler = sampler or default_sampler()
    if sampler not in ("pymc", "nutpie"):
        raise QtraitError(f"--sampler must be pymc or nutpie, got {sampler!r}")
    if sampler == "nutpie":
        try:
            import nutpie  # noqa: F401
        except ImportError:
            raise QtraitError("--sampler nutpie needs nutpie", hint="pip install nutpie") \
                from None
    return SamplerSettings(chains, draws, tune, target_accept, seed, sampler)


def _diag_line(d: dict) -> str:
    verdict = "ok" if d.get("ok") else "FAILED (unconverged: diagnostics.ok false)"
    return (f"diagnostics {verdict}: max R-hat {d['rhat_max']:.3f}, min ESS bulk {d['ess_bulk_min']:.0f}"
            f" / tail {d['ess_tail_min']:.0f}, divergences {d['divergences']}, min E-BFMI "
            f"{d['ebfmi_min']:.2f}")


def _echo_warnings(result) -> None:
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)


def _echo_fit(result, table) -> None:
    summary = likelihood_summary(result.data)
    constant = [t for t in result.excluded if t not in summary["near_constant"]]
    if constant:
        typer.echo(f"left out (constant within a concept at generation 0): "
                   f"{', '.join(constant)}")
    typer.echo(likelihood_line(summary))
    typer.echo(f"{result.spec.describe()}\nposterior saved to {result.path}\n")
    typer.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    typer.echo("\n" + _diag_line(result.diagnostics))
    _echo_warnings(result)


def _adequacy(group, model, settings, gens, result, quiet):
    """The adequacy check of a fit, or None (with a note) when the run is too short."""
    from ..adequacy import MIN_GENERATIONS, check

    runs = group if len(group) > 1 else group[0]
    if result.data.G < MIN_GENERATIONS:
        if not quiet:
            typer.echo(f"(adequacy not checked: the one-step PIT needs at least "
                       f"{MIN_GENERATIONS} generations, the fit has {result.data.G})", err=True)
        return None

    def progress(i, n):
        if not quiet:
            typer.echo(f"\radequacy: refit {i}/{n} (one-step PIT)", err=True, nl=i == n)

    return check(runs, model, settings, full=result, generations=gens, progress=progress)


def _echo_adequacy(adq) -> None:
    typer.echo(adq.verdict())
    if adq.ok is False:
        typer.echo("  the model does not describe this run: read its numbers as a "
                   "description of a misfitting model")
    for w in adq.worst[:3]:
        typer.echo(f"  worst: {w['cell']} {w['statistic']}: z {w['z']:+.1f} over {w['n']} "
                   f"generations (median PIT {w['median_pit']:.2f})")
    if adq.ppc_failures:
        typer.echo("  per-generation posterior predictive p below its Bonferroni bound at "
                   "generation(s) " + ", ".join(map(str, adq.ppc_failures)))
    for f in adq.mean_failures():
        typer.echo(f"  generation {f['generation']}: the cells' average mean is "
                   f"{f['gap']:+.2f} from its replicate; most of it from "
                   + ", ".join(f"{r['trait']} ({r['contribution']:+.2f})" for r in f["traits"]))
    if not adq.refits_ok:
        typer.echo("  (some refits behind the PIT failed their diagnostics)")


def fit_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directory (several for --model hier "
                                      "or to fit each in turn)."),
    model: Model = "breeder",
    generations: Optional[str] = typer.Option(None, "--generations", help=GENERATIONS_HELP),
    chains: Chains = defaults.CHAINS, draws: Draws = defaults.DRAWS, tune: Tune = defaults.TUNE,
    target_accept: TargetAccept = defaults.TARGET_ACCEPT, seed: Seed = 0,
    sampler: SamplerOpt = None,
    compare: bool = typer.Option(False, "--compare", help="Fit every model that applies and "
                                 "compare them by PSIS-LOO and leave-future-out."),
    models: Optional[str] = typer.Option(None, "--models", help="With --compare: the models "
                                         "to compare, comma-separated (default: every one "
                                         "that applies)."),
    prior_predictive: bool = typer.Option(False, "--prior-predictive", help="Check the "
                                          "priors against the data instead of fitting."),
    traits: Traits = None, concepts: Concepts = None,
    adequacy: bool = typer.Option(True, "--adequacy/--no-adequacy", help="Check that the "
                                  "model describes the run: one-step-ahead PIT by refits on "
                                  "generations 0..t (t >= 2) and a per-generation posterior "
                                  "predictive check (docs/models.md, Adequacy)."),
    json_out: Json = False,
) -> None:
    """Sample the posterior of a model on a run; save it under the run's fits/ folder.

    Prints the scientific parameters (posterior median and 90% interval) and the
    diagnostics, with a clear warning and what to do when one fails (R-hat > 1.01,
    ESS < 400, any divergence, E-BFMI < 0.3). Several runs: hier fits them jointly;
    another model fits each in turn (reusing the compiled model). Then, unless
    --no-adequacy, the adequacy verdict: a named PIT uniformity test, the coverage of
    one-step 90% intervals and the worst cells; a model that fails is said to fail.
    """
    from ..fit import fit, summary_table
    from ..models import get_spec

    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    spec = get_spec(model)
    opened = [open_selected(r, traits, concepts) for r in runs]
    gens = parse_generations(generations)
    if prior_predictive:
        from ..prior_predictive import prior_predictive_check

        out = ([prior_predictive_check(spec, opened, gens, seed=seed)] if spec.multi_run
               else [prior_predictive_check(spec, o, gens, seed=seed) for o in opened])
        if json_out:
            print_json(out if len(out) > 1 else out[0])
        else:
            for o in out:
                typer.echo(o["text"])
        return
    if compare:
        from ..compare import compare_models

        if len(opened) != 1:
            raise QtraitError("--compare compares models on one run")
        chosen = [m.strip() for m in models.split(",")] if models else None
        for m in chosen or []:
            get_spec(m)   # unknown names fail clearly
        table = compare_models(opened[0], settings, gens, progress=not json_out,
                               models=chosen)
        if json_out:
            print_json(table)
        else:
            typer.echo(table["text"])
        return
    groups = [opened] if spec.multi_run else [[o] for o in opened]
    outputs = []
    for group in groups:
        result = fit(group, model, settings, gens, progress=not json_out)
        table = summary_table(result, spec.reported)
        adq = _adequacy(group, model, settings, gens, result, json_out) if adequacy \
            else None
        if json_out:
            outputs.append({"runs": [str(g.root) for g in group], "model": result.model,
                            "config_hash": result.config_hash, "posterior": str(result.path),
                            "settings": settings.__dict__,
                            "parameters": table.to_dict("records"),
                            "diagnostics": result.diagnostics, "warnings": result.warnings,
                            "excluded_traits": result.excluded,
                            "likelihood": likelihood_summary(result.data),
                            "adequacy": None if adq is None else adq.to_dict()})
        else:
            if len(groups) > 1:
                typer.echo(f"== {group[0].root}")
            _echo_fit(result, table)
            if adq is not None:
                _echo_adequacy(adq)
    if json_out:
        print_json(outputs[0] if len(outputs) == 1 else outputs)


def _forecast_first(opened, k, model, criteria, settings, progress):
    """Fit generations 0..k-1 of an opened run and forecast its horizon (predict,
    backtest)."""
    from ..fit import fit
    from ..forecast import check_from_generations, forecast

    check_from_generations(opened, k)
    result = fit(opened, model, settings, slice(0, k), progress=progress)
    return result, forecast(result, opened, criteria, seed=settings.seed)


def _horizon_text(name: str, h: dict) -> str:
    if h["observed"]:
        return f"{name}: collapsed at generation {h['median']} (observed in the data)"
    def g(t):
        return "beyond T_max" if t is None else str(t)
    return (f"{name}: median {g(h['median'])}, 90% interval [{g(h['lo90'])}, {g(h['hi90'])}],"
            f" P(no collapse within T_max) {h['p_no_collapse']:.2f}")


def predict_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    from_generations: FromGenerations = 3,
    model: Model = "breeder",
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50, alpha: Alpha = 0.05,
    chains: Chains = defaults.CHAINS, draws: Draws = defaults.DRAWS, tune: Tune = defaults.TUNE,
    target_accept: TargetAccept = defaults.TARGET_ACCEPT, seed: Seed = 0,
    sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    json_out: Json = False, strict: Strict = False,
) -> None:
    """Forecast the collapse horizon from the first K generations.

    Fits generations 0..K-1 and reports the posterior predictive distribution of the
    run's horizon t* (theory.md 3.1: the first generation where the concept-pooled
    variance ratio or drift of the trait axes crosses its threshold beyond sampling
    noise, in a chain of this run's size): median, 90% interval, P(collapse by
    generation t), P(no collapse within T_max); per trait as secondary outputs.
    """

    crit = make_criteria(q, d, r, t_max, alpha)
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    result, fc = _forecast_first(open_selected(run, traits, concepts), from_generations,
                                 model, crit, settings,
                                 not json_out)
    out = {"run": str(run), "model": result.model, **fc.to_dict(),
           "diagnostics": result.diagnostics, "warnings": result.warnings,
           "posterior": str(result.path)}
    if json_out:
        print_json(out)
        _strict_exit(strict, [result.diagnostics])
        return
    typer.echo(f"forecast from generations 0..{from_generations - 1} ({result.model}); "
               f"criteria q={q}, d={d}, alpha={alpha}, T_max={t_max}")
    typer.echo(f"run horizon on {len(fc.horizon_traits)} traits "
               f"({', '.join(fc.horizon_traits)}), as detected in a chain of this size:")
    typer.echo(_horizon_text("run", out["horizon"]))
    typer.echo("  " + _horizon_text("latent crossing (no sampling noise)",
                                    out["latent_horizon"]))
    typer.echo("per trait (each pooled over concepts; secondary, no correction over traits):")
    for name, h in out["traits"].items():
        typer.echo("  " + _horizon_text(name, h))
    if out.get("concepts"):
        typer.echo("per concept (the horizon traits of one concept; secondary, no correction "
                   "over concepts):")
        for name, h in out["concepts"].items():
            typer.echo("  " + _horizon_text(str(name), h))
    by = out["horizon"]["p_collapse_by"]
    marks = [t for t in (5, 10, 20, 50) if t < len(by)]
    typer.echo("P(collapse by generation t): " + ", ".join(f"t={t}: {by[t]:.2f}"
                                                           for t in marks))
    typer.echo(_diag_line(result.diagnostics))
    _echo_warnings(result)
    _strict_exit(strict, [result.diagnostics])


def _strict_exit(strict: bool, diagnostics: list[dict]) -> None:
    bad = sum(not d.get("ok", False) for d in diagnostics)
    if bad:
        typer.echo(f"warning: {bad} of {len(diagnostics)} fit(s) failed the diagnostics "
                   "(diagnostics.ok false): treat their forecasts as unconverged", err=True)
        if strict:
            raise typer.Exit(STRICT_EXIT)


def backtest_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories with more generations "
                                      "than K."),
    from_generations: str = typer.Option("3", "--from-generations", "-k",
                                         help="K, or several: 2,3,5."),
    model: Model = "breeder",
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50, alpha: Alpha = 0.05,
    chains: Chains = defaults.CHAINS, draws: Draws = defaults.DRAWS, tune: Tune = defaults.TUNE,
    target_accept: TargetAccept = defaults.TARGET_ACCEPT, seed: Seed = 0,
    sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    baselines: Optional[str] = typer.Option(None, "--baselines", help="Comma-separated "
                                            "baselines (default: all of persistence, "
                                            "linear, exponential, statespace, refit, "
                                            "zeroshot)."),
    json_out: Json = False, strict: Strict = False,
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Backtests run at once, in "
                             "local processes (each samples on its share of the cores; "
                             "the draws do not depend on it)."),
) -> None:
    """Forecast from the first K generations and score it against the later ones.

    Per run and K: the model's forecast and every baseline's, given the same data and
    the same target (the run's detected horizon, theory.md 3.1), scored against the run's
    horizon on all its generations (right-censored at the last one): the ranked
    probability score, the randomized PIT and its 90% coverage, the 90% interval's
    coverage, the absolute error of the median, the log score and the leave-future-out
    log predictive density of the later generations' statistics (docs/cli.md).
    """
    from ..baselines import BASELINES
    from ..forecast import check_from_generations
    from ..scoring import backtest_runs

    crit = make_criteria(q, d, r, t_max, alpha)
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    ks = ints(from_generations, "--from-generations")
    chosen = BASELINES if baselines is None else tuple(
        b.strip() for b in baselines.split(",") if b.strip())
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise QtraitError(f"unknown baseline(s) {unknown}", hint=f"known: {', '.join(BASELINES)}")
    opened = [open_selected(r, traits, concepts) for r in runs]
    for path, o in zip(runs, opened):
        for k in ks:
            check_from_generations(o, k)
            if k >= len(o.generations):
                raise QtraitError(f"backtest of {path} from {k} generations needs generations "
                                  f"after them to score against (it has {len(o.generations)})")
    tasks = [(path, k) for path in runs for k in ks]
    if jobs > 1 and not json_out:
        typer.echo(f"{len(tasks)} backtest(s) in {min(jobs, len(tasks))} processes ...",
                   err=True)

    def done(i, rec):
        if not json_out:
            _echo_backtest(rec)

    records = backtest_runs(tasks, model, crit, settings, jobs=jobs, on_record=done,
                            baselines=chosen, traits=names(traits), concepts=names(concepts),
                            progress=not json_out and jobs == 1)
    if json_out:
        print_json(records[0] if len(records) == 1 else records)
    _strict_exit(strict, [r["diagnostics"] for r in records])


def _echo_backtest(out: dict) -> None:
    k = out["from_generations"]

    def g(t):
        return "none" if t is None else str(t)

    obs = g(out["observed_horizon"]) if out["observed_horizon"] is not None else \
        f"none by {out['last_generation']} (censored)"
    typer.echo(f"== {out['run']}: forecast from generations 0..{k - 1} ({out['model']}) "
               f"against generations up to {out['last_generation']}; observed horizon {obs}")
    typer.echo(f"  {'method':<12} {'median':>6} {'90% interval':>13} {'RPS':>6} "
               f"{'abs err':>7} {'PIT':>5} {'LFO elpd':>9}")
    run_row = out["scores"][0]
    rows = [("model", run_row)] + [(m, b) for m, b in out["baselines"].items()
                                   if b.get("available", True)]
    for name, row in rows:
        lfo = row.get("lfo_elpd")
        typer.echo(f"  {name:<12} {g(row['median']):>6} {'[' + g(row['lo90']) + ', ' + g(row['hi90']) + ']':>13} "
                   f"{row['rps']:>6.2f} {row['abs_error']:>7} {row['pit']:>5.2f} "
                   f"{(f'{lfo:.2f}' if lfo is not None else '-'):>9}")
    if run_row["trivial"]:
        typer.echo("  (trivial: the crossing was already detected in the fitted generations)")
    typer.echo("  " + _diag_line(out["diagnostics"]))


def compare_cmd(
    baseline: Path = typer.Argument(..., help="Baseline run (constant CFG, no mitigation)."),
    mitigated: Path = typer.Argument(..., help="Mitigated run (ReDiFine: condition drop "
                                     "and/or a decaying CFG schedule), same data and w."),
    rho: Optional[float] = typer.Option(None, "--rho", help="Adaptation of the "
                                        "unconditional branch (default: measured from the "
                                        "mitigated run's probes; with --theory fitted, its "
                                        "tilt/exact posterior median)."),
    h2: H2 = None,
    calibration: CalibrationOpt = "auto",
    theory: str = typer.Option("assumed", "--theory", help="Theory column: 'assumed' (h2 "
                               "from --h2, no mutation; seconds) or 'fitted' (h2 and V_m "
                               "from a tilt/exact fit of the baseline, rho from the "
                               "mitigated run's; can take long on a large run)."),
    chains: Chains = defaults.CHAINS, draws: Draws = defaults.DRAWS, tune: Tune = defaults.TUNE,
    target_accept: TargetAccept = defaults.TARGET_ACCEPT, seed: Seed = 0,
    sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    json_out: Json = False,
) -> None:
    """The ReDiFine check (docs/theory.md section 4.5): four predictions, each with the
    effect pooled hierarchically over traits and concepts, P(direction), and the effect
    the zero-shot theory predicts."""
    from ..redifine import redifine_check

    if rho is not None and not 0 <= rho <= 1:
        raise QtraitError(f"--rho must be in [0, 1], got {rho}")
    check_theory_options(h2, calibration)
    if theory not in ("assumed", "fitted"):
        raise QtraitError(f"--theory must be 'assumed' or 'fitted', got {theory!r}")
    if theory == "fitted" and h2 is not None:
        raise QtraitError("--h2 is what the assumed theory column assumes; with --theory "
                          "fitted h2 comes from the baseline's fit")
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    out = redifine_check(open_selected(baseline, traits, concepts),
                         open_selected(mitigated, traits, concepts), settings, rho=rho,
                         progress=not json_out, h2=h2, theory=theory,
                         calibration=calibration)
    if json_out:
        print_json({k: v for k, v in out.items() if k != "text"})
    else:
        typer.echo(out["text"])
        for label, d in out["diagnostics"].items():
            typer.echo(f"{label} breeder fit: {_diag_line(d)}")
