"""``qtrait env``: versions and machine facts for bug reports."""

from __future__ import annotations

import platform
import shutil
import sys
from importlib import metadata

import typer

from .common import JSON_HELP, print_json

PACKAGES = ("qtrait", "numpy", "scipy", "pandas", "pyarrow", "statsmodels", "pymc",
            "pytensor", "arviz", "xarray", "matplotlib", "typer", "torch", "torchvision",
            "diffusers", "peft", "open_clip_torch", "transformers", "ray")


def environment() -> dict:
    """Versions of qtrait and its dependencies, read from package metadata (nothing is
    imported, so this works without torch and is fast)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
        "compiler": shutil.which("g++"),
        "packages": versions,
    }


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env_cmd(json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
        """Print versions of qtrait, Python and the libraries, for bug reports."""
        info = environment()
        if json_out:
            print_json(info)
            return
        typer.echo(f"python      {info['python']} ({info['executable']})")
        typer.echo(f"platform    {info['platform']}")
        typer.echo(f"g++         {info['compiler'] or 'not found (PyTensor needs it to compile)'}")
        for name, version in info["packages"].items():
            typer.echo(f"{name:<16}{version or '-'}")
