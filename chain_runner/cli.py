"""``qtrait chain``: run and resume chains (imported only when called)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


from qtrait.errors import QtraitError

from .config import load_config

app = typer.Typer(name="chain", help="Run Chains of Diffusion (needs the chain extra).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Chain config (TOML; see docs/chain.md)."),
    out: Path = typer.Option(..., "--out", help="New run directory."),
    backend: Optional[str] = typer.Option(None, "--backend", help="toy (CPU miniature "
                                          "chain) or sd (Stable Diffusion); overrides the "
                                          "config's backend."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Start a chain: generation 0 from the real data, then finetune-and-sample."""
    import dataclasses

    from .chain import run_chain

    cfg = load_config(config)
    if backend is not None:
        cfg = dataclasses.replace(cfg, backend=backend)
    path = run_chain(cfg, out, progress=not quiet)
    typer.echo(f"chain complete: {path} ({cfg.generations} generations)")


@app.command("resume")
def resume_cmd(
    run: Path = typer.Argument(..., help="Run directory of an interrupted chain."),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE: change a run-time setting "
                                   "for the rest of the chain (e.g. sd.sample_batch_size=4, "
                                   "sd.mixed_precision=no); recorded in the manifest. "
                                   "Repeatable."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Continue an interrupted chain from its last complete generation."""
    from .chain import resume_chain

    path = resume_chain(run, progress=not quiet, overrides=parse_settings(set_))
    typer.echo(f"chain complete: {path}")


def parse_settings(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; VALUE is read as a TOML value (4, 1e-4, true, "x"), or as a
    plain string when it is not one."""
    import tomllib

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key.strip():
            raise QtraitError(f"--set takes SECTION.KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


@app.command("sweep")
def sweep_cmd(
    sweep: Path = typer.Argument(..., help="Sweep file (TOML; see docs/chain.md)."),
    out: Path = typer.Option(..., "--out", help="Folder of the sweep's run directories."),
    engine: Optional[str] = typer.Option(None, "--engine", help="auto, ray or local "
                                         "(overrides the sweep file)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run a grid of designs, one chain each (Ray, or locally); resumable."""
    from .sweep import load_sweep, run_sweep, summary

    sw = load_sweep(sweep)
    if engine is not None and engine not in ("auto", "ray", "local"):
        raise QtraitError(f"--engine must be auto, ray or local, got {engine!r}")
    results = run_sweep(sw, out, progress=not quiet, engine=engine)
    typer.echo(summary(results))
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


def main(args: list[str]) -> int:
    """Entry used by ``qtrait chain``; errors propagate to qtrait's handler."""
    code = app(args=args, prog_name="qtrait chain", standalone_mode=False)
    return code if isinstance(code, int) else 0


__all__ = ["app", "main"]
