"""``qtrait import``: a per-image long table (CSV or Parquet) becomes a run directory.

Columns of the table:

* ``generation`` (required): integer >= 0;
* ``set`` (optional, default ``guided``): ``guided`` | ``probe_w1`` | ``probe_uncond``;
* ``concept`` (optional, default ``all``), ``image_id`` (optional);
* every other column is a numeric trait.

The whole table is checked before anything is written, and the run is assembled in a
hidden sibling folder that is renamed into place at the end: an import that fails leaves
nothing behind, and an existing folder is never touched.
"""

from __future__ import annotations

import json
import os
from io import BytesIO
import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, Problem, QtraitError
from . import checks, io, layout
from .manifest import (DESIGN_DEFAULTS, REQUIRED_DESIGN, check_design, check_trait_names,
                       make_manifest)
from .reader import Run, open_run
from .writer import RunWriter

_PARQUET_MAGIC = b"PAR1"
#: Keys a --meta file may hold besides the design fields.
META_KEYS = ("run_id", "axes", "extra", "source_producer")


def _is_parquet(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in (".parquet", ".pq") or head[:4] == _PARQUET_MAGIC


def read_long_table(path: str | Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read and check a long table; returns (table, problems). Never raises for bad data."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        return None, [Problem("no such file", file=name)]
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Problem(f"unreadable: {exc.strerror}", file=name)]
    parquet = _is_parquet(path, data[:4])
    try:
        if parquet:
            import pyarrow  # noqa: F401  (a clear error below if missing)

            df = pd.read_parquet(BytesIO(data))
        else:
            df = io.read_table_bytes(data)
    except ImportError:
        return None, [Problem("reading Parquet needs pyarrow (pip install pyarrow)", file=name)]
    except Exception as exc:  # noqa: BLE001  any parser failure is a user-facing problem
        kind = "Parquet" if parquet else "CSV"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, [Problem(f"unreadable {kind} table: {msg}", file=name)]
    return df, check_long_table(df, file=name, first_line=1 if parquet else 2,
                                unit="row" if parquet else "line")


def check_long_table(df: pd.DataFrame, *, file: str, first_line: int = 2,
                     unit: str = "line") -> list[Problem]:
    """All checks of a long table (see the module docstring for the columns)."""
    problems: list[Problem] = []
    if "generation" not in df.columns:
        return [Problem("missing required column 'generation'", file=file)]
    gen = pd.to_numeric(df["generation"], errors="coerce").to_numpy(dtype=float)
    not_int = ~np.isfinite(gen) | (gen != np.round(gen))
    if not_int.any():
        problems.append(Problem(
            f"generation must be an integer ({checks.rows_text(not_int, first_line, unit)})",
            file=file, column="generation"))
        return problems
    negative = gen < 0
    if negative.any():
        problems.append(Problem(
            f"negative generation numbers ({checks.rows_text(negative, first_line, unit)})",
            file=file, column="generation"))
    if "set" in df.columns:
        sets = df["set"].astype(str)
        unknown = ~sets.isin(layout.SETS).to_numpy()
        if unknown.any():
            names = sorted(set(sets[unknown]))
            problems.append(Problem(
                f"unknown set name(s) {names} ({checks.rows_text(unknown, first_line, unit)});"
                f" expected {', '.join(layout.SETS)}", file=file, column="set"))
    traits = trait_columns(df)
    if not traits:
        problems.append(Problem("no trait columns (every column other than generation, set, "
                                "concept and image_id is a trait)", file=file))
    problems += check_trait_names(traits, file=file) if traits else []
    problems += checks.check_trait_values(df, traits, file=file, generation=None,
                                          first_line=first_line, unit=unit)
    if problems:
        return problems
    df = _with_defaults(df)
    gens = sorted(int(g) for g in df["generation"].unique())
    missing = sorted(set(range(0, gens[-1] + 1)) - set(gens))
    if missing:
        problems.append(Problem(f"missing generation(s) {missing}", file=file,
                                column="generation"))
    for g, part in df.groupby("generation", sort=True):
        if not (part["set"] == "guided").any():
            problems.append(Problem("no 'guided' rows (the guided set is required)",
                                    file=file, generation=int(g)))
        for s, sub in part.groupby("set", sort=True):
            problems += checks.check_group_sizes(sub, set_name=str(s), file=file,
                                                 generation=int(g))
    return problems


def trait_columns(df: pd.DataFrame) -> list[str]:
    """The columns of a long table that are traits: every column not reserved
    (``generation``, ``set``, ``image_id``, ``concept``), as strings, in table order."""
    reserved = set(layout.RESERVED_NAMES)
    return [str(c) for c in df.columns if str(c) not in reserved]


def _with_defaults(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    df["generation"] = pd.to_numeric(df["generation"]).astype(int)
    if "set" not in df.columns:
        df["set"] = "guided"
    if layout.CONCEPT_COLUMN not in df.columns:
        df[layout.CONCEPT_COLUMN] = "all"
    df["set"] = df["set"].astype(str)
    df[layout.CONCEPT_COLUMN] = df[layout.CONCEPT_COLUMN].astype(str)
    return df


def load_meta(path: str | Path) -> dict[str, Any]:
    """Read a ``--meta`` file (TOML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise QtraitError(f"--meta: no such file {path}")
    try:
        text = path.read_text("utf-8")
        if path.suffix.lower() == ".json":
            meta = json.loads(text)
        else:
            meta = tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, TOMLDecodeError
        raise QtraitError(f"--meta: cannot parse {path}: {exc}",
                          hint="give a TOML file (.toml) or a JSON object (.json)") from None
    if not isinstance(meta, dict):
        raise QtraitError(f"--meta: {path} must hold a table/object of design fields")
    return meta


def split_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split meta fields into design fields and the other manifest keys; reject typos."""
    unknown = [k for k in meta if k not in DESIGN_DEFAULTS and k not in META_KEYS]
    if unknown:
        raise QtraitError(
            f"unknown meta field(s) {unknown}",
            hint=f"known fields: {', '.join(list(DESIGN_DEFAULTS) + list(META_KEYS))}")
    design = {k: v for k, v in meta.items() if k in DESIGN_DEFAULTS}
    other = {k: v for k, v in meta.items() if k in META_KEYS}
    return design, other


def import_table(table: str | Path, out: str | Path, meta: dict[str, Any]) -> Run:
    """Turn a long table into a run directory at ``out``; returns the opened run."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QtraitError(f"{out} already exists and is not empty",
                          hint="choose a new --out folder; runs are never overwritten")
    design, other = split_meta(meta)
    # the required fields must be stated, not defaulted: the anchor, for one, decides how
    # heritability is measured
    problems = [Problem(f"design field '{f}': missing (required; give it in --meta or as "
                        f"--{f.replace('_', '-')})", file="--meta/options")
                for f in REQUIRED_DESIGN if design.get(f) is None]
    problems += [p for p in check_design({**DESIGN_DEFAULTS, **design}, file="--meta/options")
                 if "missing (required)" not in p.message]
    df, table_problems = read_long_table(table)
    problems += table_problems
    if problems:
        raise InvalidInputError(f"cannot import {table}", problems)
    assert df is not None
    df = _with_defaults(df)
    traits = trait_columns(df)
    axes = other.get("axes")
    if axes is not None and (not isinstance(axes, list) or any(a not in traits for a in axes)):
        raise QtraitError(f"meta field 'axes' must list trait columns; traits are {traits}")
    design.setdefault("probe_sizes", _probe_sizes(df))
    design.setdefault("images_per_generation",
                      int(df[(df["generation"] == 0) & (df["set"] == "guided")].shape[0]))
    manifest = make_manifest(
        other.get("run_id") or design["name"], design, traits, producer_name="qtrait import",
        axes=axes, basis={"kind": "imported", "file": None, "source": Path(table).name},
        extra=other.get("extra"))
    source = other.get("source_producer")
    if source is not None:
        if not isinstance(source, str) or not source.strip():
            raise QtraitError(f"meta field 'source_producer' must be a program's name, "
                              f"got {source!r}")
        manifest["producer"]["source"] = source

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        writer = RunWriter.create(tmp, manifest)
        for g, part in df.groupby("generation", sort=True):
            writer.write_generation(int(g), {
                str(s): sub.drop(columns=["generation", "set"])
                for s, sub in part.groupby("set", sort=False)
            })
        if out.exists():
            out.rmdir()  # an empty folder, checked above
        os.rename(tmp, out)
        io.fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_run(out)


def _probe_sizes(df: pd.DataFrame) -> dict[str, int]:
    """The largest probe set of any generation, per probe kind (0 if never present)."""
    counts = df.groupby(["generation", "set"]).size()
    return {s: int(counts.xs(s, level="set").max()) if s in counts.index.get_level_values(
        "set") else 0 for s in layout.SETS[1:]}
