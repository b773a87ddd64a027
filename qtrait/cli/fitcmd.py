"""``qtrait fit``: the posterior of a model on a run, with diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import QtraitError
from .common import GENERATIONS_HELP, JSON_HELP, parse_generations, print_json


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)


def fit_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    model: str = typer.Option("breeder", help="Model: breeder (more models come with the "
                              "Bayesian work)."),
    generations: Optional[str] = typer.Option(None, "--generations", help=GENERATIONS_HELP),
    chains: int = typer.Option(4, help="MCMC chains."),
    draws: int = typer.Option(1000, help="Draws per chain after tuning."),
    tune: int = typer.Option(1000, help="Tuning steps per chain."),
    target_accept: float = typer.Option(0.9, help="NUTS target acceptance rate."),
    seed: int = typer.Option(0, help="Random seed."),
    sampler: str = typer.Option("pymc", help="pymc (nutpie when installed)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Sample the posterior of a model on a run; save it under the run's fits/ folder.

    Prints the scientific parameters (posterior median and 90% interval) and the
    diagnostics, with a clear warning and what to do when one fails (R-hat > 1.01,
    ESS < 400, any divergence, E-BFMI < 0.3).
    """
    from ..fit import SamplerSettings, fit, summary_table
    from ..models import get_spec
    from ..rundir import open_run

    if chains < 1 or draws < 1 or tune < 0 or not 0 < target_accept < 1:
        raise QtraitError("need --chains >= 1, --draws >= 1, --tune >= 0 and "
                          "0 < --target-accept < 1")
    if sampler not in ("pymc", "nutpie"):
        raise QtraitError(f"--sampler must be pymc or nutpie, got {sampler!r}")
    if sampler == "nutpie":
        try:
            import nutpie  # noqa: F401
        except ImportError:
            raise QtraitError("--sampler nutpie needs nutpie", hint="pip install nutpie") \
                from None
    spec = get_spec(model)
    opened = open_run(run)
    settings = SamplerSettings(chains, draws, tune, target_accept, seed, sampler)
    result = fit(opened, model, settings, parse_generations(generations),
                 progress=not json_out)
    table = summary_table(result, spec.reported)
    if json_out:
        print_json({"run": str(run), "model": result.model, "config_hash": result.config_hash,
                    "posterior": str(result.path), "settings": settings.__dict__,
                    "parameters": table.to_dict("records"),
                    "diagnostics": result.diagnostics, "warnings": result.warnings,
                    "excluded_traits": result.excluded})
        return
    if result.excluded:
        typer.echo(f"left out (constant within a concept at generation 0): "
                   f"{', '.join(result.excluded)}")
    typer.echo(f"{spec.describe()}\nposterior saved to {result.path}\n")
    typer.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    d = result.diagnostics
    typer.echo(f"\ndiagnostics: max R-hat {d['rhat_max']:.3f}, min ESS bulk "
               f"{d['ess_bulk_min']:.0f} / tail {d['ess_tail_min']:.0f}, divergences "
               f"{d['divergences']}, min E-BFMI {d['ebfmi_min']:.2f}")
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
