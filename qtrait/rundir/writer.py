"""Writing a run directory: create, add generations, resume.

The rules of the contract, enforced here:

* every file is written atomically (temporary file, fsync, rename);
* a generation's completion record is written last; until it exists readers ignore
  the generation;
* a completed generation is never rewritten;
* generations are written in order 0, 1, 2, ...;
* tables are checked before anything is written, so bad data never reaches the run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, Problem, QtraitError
from . import checks, io, layout
from .manifest import check_manifest, utc_now
from .reader import read_manifest, scan_run


class GenerationWriter:
    """Writes the sets and artifacts of one generation; completes it on a clean exit.

    Use as a context manager (``with writer.generation(g) as gw: ...``). If the block
    raises, the generation is left without completion record: readers ignore it and a
    resuming writer discards it with :meth:`RunWriter.discard_incomplete`.
    """

    def __init__(self, run: "RunWriter", generation: int):
        self.run = run
        self.generation = generation
        self.dir = layout.generation_dir(run.root, generation)
        self._written: set[str] = set()

    def __enter__(self) -> "GenerationWriter":
        self.dir.mkdir(parents=True, exist_ok=False)
        io.fsync_dir(self.dir.parent)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.complete()
        return False

    def write_set(self, set_name: str, table: pd.DataFrame) -> None:
        """Check and write one sample set (``guided``, ``probe_w1``, ``probe_uncond``).

        ``table`` holds one row per image with a column per trait; ``image_id`` and
        ``concept`` are optional (default: ``<set>_<row>`` and ``all``).
        """
        if set_name not in layout.SETS:
            raise QtraitError(f"unknown set '{set_name}'; expected one of {layout.SETS}")
        if set_name in self._written:
            raise QtraitError(f"set '{set_name}' of generation {self.generation} "
                              "was already written")
        df = normalise_set_table(table, self.run.traits, set_name)
        rel = layout.relative(self.run.root, layout.set_path(self.run.root, self.generation,
                                                             set_name))
        problems = checks.check_set_table(df, self.run.traits, set_name=set_name, file=rel,
                                          generation=self.generation)
        if problems:
            raise InvalidInputError(f"refusing to write {rel}", problems)
        self._write_checked(set_name, df)

    def _write_checked(self, set_name: str, df: pd.DataFrame) -> None:
        io.atomic_write_bytes(layout.set_path(self.run.root, self.generation, set_name),
                              io.table_to_bytes(df))
        self._written.add(set_name)

    def artifact_path(self, name: str) -> Path:
        """Where to save an artifact (image grid, LoRA weights) of this generation.

        Write it before the generation completes; it is hashed in the completion record.
        """
        path = layout.artifacts_dir(self.run.root, self.generation) / name
        if self.dir.resolve() not in path.resolve().parents:
            raise QtraitError(f"artifact name {name!r} leaves the generation folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_artifact(self, name: str, data: bytes) -> Path:
        path = self.artifact_path(name)
        io.atomic_write_bytes(path, data)
        return path

    def complete(self) -> None:
        """Write the completion record (hashes of every file), last."""
        missing = [s for s in layout.REQUIRED_SETS if s not in self._written]
        if missing:
            raise QtraitError(f"generation {self.generation} cannot complete without "
                              f"set(s) {missing}")
        files = {}
        for p in sorted(self.dir.rglob("*")):
            if p.is_file() and not p.name.startswith(".") and p.name != layout.COMPLETE:
                rel = p.relative_to(self.dir).as_posix()
                files[rel] = {"sha256": io.sha256_file(p), "bytes": p.stat().st_size}
        record = {
            "generation": self.generation,
            "completed_at": utc_now(),
            "sets": [s for s in layout.SETS if s in self._written],
            "files": files,
        }
        io.atomic_write_json(layout.complete_path(self.run.root, self.generation), record)
        self.run._complete.append(self.generation)


class RunWriter:
    """Creates a run directory or continues one; see the module docstring for the rules."""

    def __init__(self, root: Path, manifest: dict[str, Any], complete: list[int],
                 incomplete: list[int]):
        self.root = root
        self.manifest = manifest
        self._complete = list(complete)
        self._incomplete = list(incomplete)

    @property
    def traits(self) -> list[str]:
        return list(self.manifest["traits"]["names"])

    @property
    def complete_generations(self) -> list[int]:
        return list(self._complete)

    @property
    def incomplete_generations(self) -> list[int]:
        return [g for g in self._incomplete if layout.generation_dir(self.root, g).exists()]

    @property
    def next_generation(self) -> int:
        return (max(self._complete) + 1) if self._complete else 0

    @classmethod
    def create(cls, root: str | Path, manifest: dict[str, Any],
               basis: Mapping[str, np.ndarray] | None = None) -> "RunWriter":
        """Create a new run directory. Refuses an existing non-empty folder."""
        root = Path(root)
        problems = check_manifest(manifest)
        if problems:
            raise InvalidInputError("invalid manifest", problems)
        try:
            json.dumps(manifest, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise QtraitError(f"the manifest cannot be written as JSON: {exc}") from None
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise QtraitError(f"{root} already exists and is not empty",
                              hint="choose a new --out folder; runs are never overwritten")
        layout.generations_dir(root).mkdir(parents=True, exist_ok=True)
        if basis is not None:
            arrays = {k: np.asarray(v) for k, v in basis.items()}
            tmp = layout.basis_path(root).with_name(".basis.tmp.npz")
            np.savez(tmp, **arrays)
            io.atomic_write_bytes(layout.basis_path(root), tmp.read_bytes())
            tmp.unlink()
        io.atomic_write_json(layout.manifest_path(root), manifest)
        return cls(root, manifest, [], [])

    @classmethod
    def resume(cls, root: str | Path) -> "RunWriter":
        """Continue writing an existing valid run (e.g. after a crash)."""
        run, problems = scan_run(root, load=False)
        if run is None and not _only_no_generation(problems):
            raise InvalidInputError(f"cannot resume {root}", problems)
        if run is None:  # created, but generation 0 never completed
            root = Path(root)
            incomplete = [0] if layout.generation_dir(root, 0).exists() else []
            return cls(root, read_manifest(root, []), [], incomplete)
        return cls(run.root, run.manifest, run.generations, run.incomplete)

    def generation(self, generation: int | None = None) -> GenerationWriter:
        """A writer for the next generation (the number is checked if given)."""
        g = self.next_generation if generation is None else generation
        if g in self._complete:
            raise QtraitError(f"generation {g} is complete; completed generations are "
                              "never rewritten")
        if g != self.next_generation:
            raise QtraitError(f"generation {g} cannot be written next; expected "
                              f"{self.next_generation}")
        if layout.generation_dir(self.root, g).exists():
            raise QtraitError(f"generation {g} has an incomplete folder from an interrupted "
                              "writer", hint="call discard_incomplete() before rewriting it")
        return GenerationWriter(self, g)

    def write_generation(self, generation: int, tables: Mapping[str, pd.DataFrame],
                         artifacts: Mapping[str, bytes] | None = None) -> None:
        """Write a whole generation at once (sets and artifacts, then completion)."""
        unknown = [s for s in tables if s not in layout.SETS]
        if unknown:
            raise QtraitError(f"unknown set(s) {unknown}; expected {layout.SETS}")
        missing = [s for s in layout.REQUIRED_SETS if s not in tables]
        if missing:
            raise QtraitError(f"generation {generation} needs the set(s) {missing}")
        # check everything before creating the folder, so bad input writes nothing
        problems, normalised = [], {}
        for set_name in layout.SETS:
            if set_name in tables:
                df = normalise_set_table(tables[set_name], self.traits, set_name)
                problems += checks.check_set_table(df, self.traits, set_name=set_name,
                                                   file=None, generation=generation)
                normalised[set_name] = df
        if problems:
            raise InvalidInputError(f"refusing to write generation {generation}", problems)
        with self.generation(generation) as gw:
            for set_name, df in normalised.items():
                gw._write_checked(set_name, df)
            for name, data in (artifacts or {}).items():
                gw.write_artifact(name, data)

    def discard_incomplete(self, generation: int) -> None:
        """Remove the folder of an interrupted generation (never a complete one)."""
        if generation in self._complete or layout.complete_path(self.root, generation).exists():
            raise QtraitError(f"generation {generation} is complete and is never removed")
        gdir = layout.generation_dir(self.root, generation)
        if gdir.exists():
            shutil.rmtree(gdir)
            io.fsync_dir(gdir.parent)

    def update_manifest(self, **fields: Any) -> None:
        """Record ``truth`` or ``extra`` after generations were written (atomically)."""
        allowed = {"truth", "extra"}
        if not set(fields) <= allowed:
            raise QtraitError(f"only {sorted(allowed)} may be updated in a manifest")
        self.manifest = {**self.manifest, **fields}
        io.atomic_write_json(layout.manifest_path(self.root), self.manifest)


def normalise_set_table(table: pd.DataFrame, traits: list[str], set_name: str) -> pd.DataFrame:
    """Add default key columns and put columns in the canonical order."""
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    df = table.copy()
    if layout.ID_COLUMN not in df.columns:
        df[layout.ID_COLUMN] = [f"{set_name}_{i:05d}" for i in range(len(df))]
    if layout.CONCEPT_COLUMN not in df.columns:
        df[layout.CONCEPT_COLUMN] = "all"
    df[layout.ID_COLUMN] = df[layout.ID_COLUMN].astype(str)
    df[layout.CONCEPT_COLUMN] = df[layout.CONCEPT_COLUMN].astype(str)
    keys = list(layout.KEY_COLUMNS)
    ordered = keys + [t for t in traits if t in df.columns]
    rest = [c for c in df.columns if c not in ordered]
    return df[ordered + rest].reset_index(drop=True)


def _only_no_generation(problems: list[Problem]) -> bool:
    errors = [p for p in problems if p.severity == "error"]
    return bool(errors) and all(p.message == "the run has no complete generation"
                                for p in errors)
