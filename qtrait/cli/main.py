"""Entry point of the ``qtrait`` command.

Known errors (:class:`qtrait.errors.QtraitError`) become clear lines on stderr (one per
problem for invalid input, then a hint) and exit status 2; set ``QTRAIT_DEBUG=1`` for the
traceback. The chain runner's commands (``qtrait chain``, coming with the chain-runner
work) will live in ``chain_runner`` and be imported only when called, so ``qtrait`` itself
never imports torch.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import QtraitError
from . import envcmd, fitcmd, reportcmd, runs, simcmd, theorycmd

app = typer.Typer(
    name="qtrait",
    help="Quantitative-trait statistics of model collapse in self-consuming diffusion chains.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"qtrait {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Quantitative-trait statistics of model collapse in self-consuming diffusion chains."""


runs.register(app)
simcmd.register(app)
fitcmd.register(app)
reportcmd.register(app)


_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True}


def _forward(command: str, module: str, args: list[str]) -> None:
    """Run a chain_runner command line, importing torch only now."""
    import importlib

    try:
        entry = importlib.import_module(module).main
    except ImportError as exc:
        raise QtraitError(f"qtrait {command} needs the chain runner ({exc.name} is missing)",
                          hint="pip install 'qtrait[chain]'") from None
    code = entry(args)
    if code:
        raise typer.Exit(code)


@app.command("chain", add_help_option=False, context_settings=_FORWARD)
def chain_cmd(ctx: typer.Context) -> None:
    """Run and resume chains: `qtrait chain run CONFIG --out RUN`, `qtrait chain resume
    RUN` (needs the chain extra; see `qtrait chain --help`)."""
    _forward("chain", "chain_runner.cli", list(ctx.args))


@app.command("traits", add_help_option=False, context_settings=_FORWARD)
def traits_cmd(ctx: typer.Context) -> None:
    """Traits of chains run with other tools: `qtrait traits extract CHAIN_DIR --out RUN`
    (needs the chain extra; see `qtrait traits --help`)."""
    _forward("traits", "chain_runner.traits_cli", list(ctx.args))


theorycmd.register(app)
envcmd.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 invalid data found, 2 usage error)."""
    try:
        # with standalone_mode=False click returns the code of typer.Exit instead of exiting
        code = app(args=argv, prog_name="qtrait", standalone_mode=False)
    except QtraitError as exc:
        if os.environ.get("QTRAIT_DEBUG"):
            raise
        typer.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:
        # usage errors of click (typer >= 0.29 vendors its own copy): duck-typed
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None),
                                                               int):
            exc.show()
            return exc.exit_code
        raise
    return code if isinstance(code, int) else 0


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
