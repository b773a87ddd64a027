"""``qtrait fit``, ``qtrait predict`` and ``qtrait backtest``: posteriors, horizon
forecasts and how well they would have done."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import QtraitError
from .common import GENERATIONS_HELP, JSON_HELP, parse_generations, print_json
from .options import Concepts, D, Q, R, TMax, Traits, make_criteria, open_selected

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
    return (f"diagnostics: max R-hat {d['rhat_max']:.3f}, min ESS bulk {d['ess_bulk_min']:.0f}"
            f" / tail {d['ess_tail_min']:.0f}, divergences {d['divergences']}, min E-BFMI "
            f"{d['ebfmi_min']:.2f}")


def _echo_warnings(result) -> None:
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)


def _echo_fit(result, table) -> None:
    if result.excluded:
        typer.echo(f"left out (constant within a concept at generation 0): "
                   f"{', '.join(result.excluded)}")
    typer.echo(f"{result.spec.describe()}\nposterior saved to {result.path}\n")
    typer.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    typer.echo("\n" + _diag_line(result.diagnostics))
    _echo_warnings(result)


def fit_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directory (several for --model hier "
                                      "or to fit each in turn)."),
    model: Model = "breeder",
    generations: Optional[str] = typer.Option(None, "--generations", help=GENERATIONS_HELP),
    chains: Chains = 4, draws: Draws = 1000, tune: Tune = 1000,
    target_accept: TargetAccept = 0.9, seed: Seed = 0, sampler: SamplerOpt = None,
    compare: bool = typer.Option(False, "--compare", help="Fit every model that applies and "
                                 "compare them by PSIS-LOO and leave-future-out."),
    models: Optional[str] = typer.Option(None, "--models", help="With --compare: the models "
                                         "to compare, comma-separated (default: every one "
                                         "that applies)."),
    prior_predictive: bool = typer.Option(False, "--prior-predictive", help="Check the "
                                          "priors against the data instead of fitting."),
    traits: Traits = None, concepts: Concepts = None,
    json_out: Json = False,
) -> None:
    """Sample the posterior of a model on a run; save it under the run's fits/ folder.

    Prints the scientific parameters (posterior median and 90% interval) and the
    diagnostics, with a clear warning and what to do when one fails (R-hat > 1.01,
    ESS < 400, any divergence, E-BFMI < 0.3). Several runs: hier fits them jointly;
    another model fits each in turn (reusing the compiled model).
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
        if json_out:
            outputs.append({"runs": [str(g.root) for g in group], "model": result.model,
                            "config_hash": result.config_hash, "posterior": str(result.path),
                            "settings": settings.__dict__,
                            "parameters": table.to_dict("records"),
                            "diagnostics": result.diagnostics, "warnings": result.warnings,
                            "excluded_traits": result.excluded})
        else:
            if len(groups) > 1:
                typer.echo(f"== {group[0].root}")
            _echo_fit(result, table)
    if json_out:
        print_json(outputs[0] if len(outputs) == 1 else outputs)


def _forecast_first(opened, k, model, criteria, settings, progress):
    """Fit generations 0..k-1 of an opened run and forecast its horizon (predict,
    backtest)."""
    from ..fit import fit
    from ..forecast import check_from_generations, forecast

    check_from_generations(opened, k)
    result = fit(opened, model, settings, slice(0, k), progress=progress)
    return result, forecast(result, criteria, seed=settings.seed)


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
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50,
    chains: Chains = 4, draws: Draws = 1000, tune: Tune = 1000,
    target_accept: TargetAccept = 0.9, seed: Seed = 0, sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    json_out: Json = False,
) -> None:
    """Forecast the collapse horizon from the first K generations.

    Fits generations 0..K-1 and reports the posterior predictive distribution of the
    horizon t* (the first generation where a criterion holds): median, 90% interval,
    P(collapse by generation t), P(no collapse within T_max), for the run and per trait.
    """

    crit = make_criteria(q, d, r, t_max)
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    result, fc = _forecast_first(open_selected(run, traits, concepts), from_generations,
                                 model, crit, settings,
                                 not json_out)
    out = {"run": str(run), "model": result.model, **fc.to_dict(),
           "diagnostics": result.diagnostics, "warnings": result.warnings,
           "posterior": str(result.path)}
    if json_out:
        print_json(out)
        return
    typer.echo(f"forecast from generations 0..{from_generations - 1} ({result.model}); "
               f"criteria q={q}, d={d}, r={r}, T_max={t_max}")
    typer.echo(_horizon_text("run", out["horizon"]))
    for name, h in out["traits"].items():
        typer.echo("  " + _horizon_text(name, h))
    by = out["horizon"]["p_collapse_by"]
    marks = [t for t in (5, 10, 20, 50) if t < len(by)]
    typer.echo("P(collapse by generation t): " + ", ".join(f"t={t}: {by[t]:.2f}"
                                                           for t in marks))
    typer.echo(_diag_line(result.diagnostics))
    _echo_warnings(result)


def backtest_cmd(
    run: Path = typer.Argument(..., help="Run directory with more generations than K."),
    from_generations: FromGenerations = 3,
    model: Model = "breeder",
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50,
    chains: Chains = 4, draws: Draws = 1000, tune: Tune = 1000,
    target_accept: TargetAccept = 0.9, seed: Seed = 0, sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    json_out: Json = False,
) -> None:
    """Forecast from the first K generations and score it against the later ones.

    The observed horizon is the first crossing of the observed guided moments (censored
    at the run's last generation). Scores per horizon: whether the 90% interval covers
    it, the log score of the predictive distribution, and the absolute error of the
    median; beside them the two naive baselines (linear and exponential extrapolation of
    the total variance).
    """
    from ..forecast import backtest

    crit = make_criteria(q, d, r, t_max)
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    opened = open_selected(run, traits, concepts)
    if from_generations >= len(opened.generations):
        raise QtraitError("backtest needs generations after the first K to score against")
    result, fc = _forecast_first(opened, from_generations, model, crit, settings,
                                 not json_out)
    out = {"run": str(run), "model": result.model, **backtest(fc, opened, crit),
           "diagnostics": result.diagnostics, "warnings": result.warnings,
           "posterior": str(result.path)}
    if json_out:
        print_json(out)
        return
    typer.echo(f"backtest of a forecast from generations 0..{from_generations - 1} "
               f"({result.model}) against generations up to {out['last_generation']}")
    for row in out["scores"]:
        obs = row["observed"] if row["observed"] is not None else \
            f"none by {out['last_generation']}"
        typer.echo(f"  {row['horizon']}: observed {obs}; forecast median {row['median']}, "
                   f"90% [{row['lo90']}, {row['hi90']}]; covered {row['covered']}, log score "
                   f"{row['log_score']:.2f}, abs error {row['abs_error']}")
    b = out["baselines"]
    typer.echo(f"baselines (run, variance): linear {b['linear']}, exponential "
               f"{b['exponential']}")
    typer.echo(_diag_line(result.diagnostics))
    _echo_warnings(result)


def compare_cmd(
    baseline: Path = typer.Argument(..., help="Baseline run (constant CFG, no mitigation)."),
    mitigated: Path = typer.Argument(..., help="Mitigated run (ReDiFine: condition drop "
                                     "and/or a decaying CFG schedule), same data and w."),
    rho: Optional[float] = typer.Option(None, "--rho", help="Adaptation of the "
                                        "unconditional branch (default: the mitigated run's "
                                        "posterior median)."),
    q: Q = 0.5,
    h2: Optional[float] = typer.Option(None, "--h2", help="Assume this heritability (and "
                                       "no mutation) for the theory column instead of "
                                       "fitting tilt/exact to the baseline; needs --rho when "
                                       "the mitigated run uses condition drop."),
    chains: Chains = 4, draws: Draws = 1000, tune: Tune = 1000,
    target_accept: TargetAccept = 0.9, seed: Seed = 0, sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    json_out: Json = False,
) -> None:
    """The ReDiFine check (theory.md section 5): four predictions, each with P(direction),
    the measured effect and the effect the zero-shot theory predicts."""
    from ..redifine import redifine_check

    if rho is not None and not 0 <= rho <= 1:
        raise QtraitError(f"--rho must be in [0, 1], got {rho}")
    if h2 is not None and not 0 <= h2 <= 1:
        raise QtraitError(f"--h2 must be in [0, 1], got {h2}")
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    out = redifine_check(open_selected(baseline, traits, concepts),
                         open_selected(mitigated, traits, concepts), settings, rho=rho,
                         q=q, progress=not json_out, seed=seed, h2=h2)
    if json_out:
        print_json({k: v for k, v in out.items() if k != "text"})
    else:
        typer.echo(out["text"])
