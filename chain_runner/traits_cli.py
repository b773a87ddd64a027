"""``qtrait traits``: traits of chains run with other tools (imported only when called)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from qtrait.errors import QtraitError

app = typer.Typer(name="traits", help="Extract traits from images (needs the chain extra).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def _root() -> None:
    """Extract traits from images (needs the chain extra)."""


@app.command("extract")
def extract_cmd(
    chain_dir: Path = typer.Argument(..., help="Folder of generation folders of images."),
    out: Path = typer.Option(..., "--out", help="New run directory."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML with a [features] "
                                          "table (and optionally [design]); see docs/chain.md."),
    extractor: Optional[str] = typer.Option(None, "--extractor", help="open_clip or "
                                            "efficientnet_lite0 (overrides the config)."),
    pca_axes: int = typer.Option(8, "--pca-axes", help="K principal axes of generation 0."),
    resolution: int = typer.Option(0, "--resolution", help="Resize and centre-crop images to "
                                   "this size (0: keep; all images must then match)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Turn a folder of generation folders (from any tool) into a run directory."""
    import dataclasses

    from .config import FeaturesConfig, _check_types, check_features, read_toml
    from .extract import extract_traits

    raw: dict = {}
    if config is not None:
        raw = read_toml(config, "config")
        bad = [k for k in raw if k not in ("features", "design")]
        if bad:
            raise QtraitError(f"unknown table(s) {bad} in {config}; expected features, design")
    feats = dict(raw.get("features", {}))
    names = {f.name for f in dataclasses.fields(FeaturesConfig)}
    unknown = [k for k in feats if k not in names]
    if unknown:
        raise QtraitError(f"unknown key(s) {unknown} in [features]",
                          hint=f"known keys: {', '.join(sorted(names))}")
    if extractor is not None:
        feats["extractor"] = extractor
    _check_types(FeaturesConfig, feats, "[features] ")
    f = FeaturesConfig(**feats)
    problems = check_features(f)
    if problems:
        raise QtraitError("; ".join(problems))
    path = extract_traits(chain_dir, out, f, pca_axes=pca_axes, resolution=resolution,
                          design=raw.get("design"), progress=not quiet)
    typer.echo(f"traits extracted: {path}")


def main(args: list[str]) -> int:
    code = app(args=args, prog_name="qtrait traits", standalone_mode=False)
    return code if isinstance(code, int) else 0
