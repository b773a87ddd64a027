"""Reading and validating a run directory.

:func:`scan_run` walks a run directory and collects every problem it finds (it never
writes). :func:`open_run` returns a :class:`Run` when there are no errors and raises
:class:`~qtrait.errors.InvalidInputError` listing them otherwise. Every qtrait command
that reads a run goes through :func:`open_run`, so the checks of ``qtrait validate``
guard them all.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, Problem, QtraitError
from . import checks, io, layout, migrate
from .manifest import check_manifest


@dataclass
class Run:
    """A validated run directory, read-only.

    Only complete generations (with a completion record) are visible. Tables are
    loaded during validation and kept in memory.
    """

    root: Path
    manifest: dict[str, Any]
    generations: list[int]
    incomplete: list[int]
    notices: list[Problem]
    _tables: dict[tuple[int, str], pd.DataFrame] = field(repr=False, default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def design(self) -> dict[str, Any]:
        return self.manifest["design"]

    @property
    def traits(self) -> list[str]:
        return list(self.manifest["traits"]["names"])

    @property
    def axes(self) -> list[str]:
        return list(self.manifest["traits"].get("axes", self.traits))

    @property
    def schema_version(self) -> int:
        return self.manifest["schema_version"]

    def select_generations(self, gens: slice | None) -> list[int]:
        """The complete generations whose *numbers* lie in ``gens`` (Python slice
        meaning: ``slice(0, 3)`` is generations 0, 1, 2)."""
        if gens is None:
            return list(self.generations)
        lo = gens.start if gens.start is not None else 0
        hi = gens.stop if gens.stop is not None else float("inf")
        chosen = [g for g in self.generations if lo <= g < hi]
        if not chosen:
            end = "" if gens.stop is None else gens.stop
            raise QtraitError(f"no complete generation in {lo}:{end} (run {self.run_id} has "
                              f"generations {self.generations[0]}..{self.generations[-1]})")
        return chosen

    def sets(self, generation: int) -> list[str]:
        """The sample sets present in a generation, in the canonical order."""
        return [s for s in layout.SETS if (generation, s) in self._tables]

    def table(self, generation: int, set_name: str) -> pd.DataFrame:
        """Per-image table of one set: ``image_id``, ``concept`` and the traits."""
        try:
            return self._tables[(generation, set_name)].copy()
        except KeyError:
            raise QtraitError(
                f"run {self.run_id}: generation {generation} has no set '{set_name}'"
            ) from None

    def long_table(self) -> pd.DataFrame:
        """All complete generations as one long table (columns: generation, set,
        image_id, concept, traits...)."""
        frames = []
        for (g, s), df in sorted(self._tables.items(),
                                 key=lambda kv: (kv[0][0], layout.SETS.index(kv[0][1]))):
            frames.append(df.assign(generation=g, set=s))
        out = pd.concat(frames, ignore_index=True)
        cols = ["generation", "set", *layout.KEY_COLUMNS, *self.traits]
        return out[cols]

    def basis(self) -> dict[str, np.ndarray] | None:
        """Arrays of ``trait_basis.npz`` (e.g. ``basis`` F x K, ``center`` F) if present."""
        path = layout.basis_path(self.root)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def select(self, traits: list[str] | None = None,
               concepts: list[str] | None = None) -> "Run":
        """The same run restricted to some traits and concepts (``None``: all), e.g. to fit
        a model on the trait axes only. The selection is recorded in the manifest copy
        (``selection``), so fits of different selections never share a saved file."""
        if traits is None and concepts is None:
            return self
        unknown = [t for t in traits or [] if t not in self.traits]
        if unknown:
            raise QtraitError(f"run {self.run_id} has no trait {', '.join(unknown)}",
                              hint="its traits: " + ", ".join(self.traits))
        have = {str(c) for df in self._tables.values() for c in df["concept"].unique()}
        missing = [c for c in concepts or [] if c not in have]
        if missing:
            raise QtraitError(f"run {self.run_id} has no concept {', '.join(missing)}",
                              hint="its concepts: " + ", ".join(sorted(have)))
        keep_t = [t for t in self.traits if traits is None or t in traits]
        manifest = copy.deepcopy(self.manifest)
        manifest["traits"]["names"] = keep_t
        if "axes" in manifest["traits"]:
            manifest["traits"]["axes"] = [a for a in manifest["traits"]["axes"] if a in keep_t]
        manifest["selection"] = {"traits": keep_t if traits is not None else None,
                                 "concepts": sorted(concepts) if concepts else None}
        tables = {}
        for key, df in self._tables.items():
            if concepts:
                df = df[df["concept"].astype(str).isin(concepts)]
            tables[key] = df[[c for c in df.columns if c not in self.traits or c in keep_t]]
        return Run(self.root, manifest, list(self.generations), list(self.incomplete),
                   list(self.notices), tables)

    def output_dir(self, kind: str) -> Path:
        """qtrait's own output folder of this run (``fits``, ``reports``, ``summaries``)."""
        path = layout.output_dir(self.root, kind)
        path.mkdir(exist_ok=True)
        return path


def read_manifest(root: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """Read, upgrade (in memory) and check the manifest of the run at ``root``.

    Returns the manifest, or None when it is missing, unreadable or has errors; every
    problem found is appended to ``problems``.
    """
    path = layout.manifest_path(root)
    name = layout.MANIFEST
    if not path.is_file():
        problems.append(Problem("missing manifest (is this a run directory?)", file=name))
        return None
    try:
        data = path.read_bytes()
        if io.looks_binary(data):
            raise ValueError("binary data, not JSON")
        raw = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(Problem(f"unreadable manifest: {exc}", file=name))
        return None
    if not isinstance(raw, dict):
        problems.append(Problem("manifest is not a JSON object", file=name))
        return None
    try:
        m = migrate.upgrade(raw)
    except QtraitError as exc:
        problems.append(Problem(exc.message, file=name))
        return None
    bad = check_manifest(m)
    problems.extend(bad)
    return None if any(p.severity == "error" for p in bad) else m


def _check_record(root: Path, g: int, gdir: Path, problems: list[Problem]) -> dict | None:
    rel = layout.relative(root, layout.complete_path(root, g))
    try:
        record = json.loads(layout.complete_path(root, g).read_text("utf-8"))
        files = record["files"]
        if record.get("generation") != g or not isinstance(files, dict):
            raise ValueError("record does not describe this generation")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(Problem(f"unreadable completion record: {exc}", file=rel, generation=g))
        return None
    listed = set(files)
    present = {
        p.relative_to(gdir).as_posix()
        for p in gdir.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != layout.COMPLETE
    }
    for name in sorted(present - listed):
        problems.append(Problem("file added after the generation was completed",
                                file=layout.relative(root, gdir / name), generation=g))
    for name in sorted(listed - present):
        problems.append(Problem("file listed in the completion record is missing",
                                file=layout.relative(root, gdir / name), generation=g))
    return record


def scan_run(root: str | Path, *, load: bool = True) -> tuple[Run | None, list[Problem]]:
    """Validate a run directory; returns the run (None on errors) and all problems.

    Nothing is written. Problems of severity ``notice`` (an incomplete last generation)
    do not make the run invalid.
    """
    root = Path(root)
    problems: list[Problem] = []
    if not root.exists():
        return None, [Problem(f"no such run directory: {root}")]
    if not root.is_dir():
        return None, [Problem(f"not a directory: {root}")]

    manifest = read_manifest(root, problems)
    traits: list[str] | None = manifest["traits"]["names"] if manifest else None

    gen_root = layout.generations_dir(root)
    if not gen_root.is_dir():
        problems.append(Problem("missing generations folder", file=layout.GENERATIONS))
        return None, problems

    found: dict[int, list[Path]] = {}
    for entry in sorted(gen_root.iterdir()):
        if entry.name.startswith("."):
            continue  # temporary files of an atomic write in progress
        g = layout.parse_generation_dir(entry.name) if entry.is_dir() else None
        rel = layout.relative(root, entry)
        if g is None:
            problems.append(Problem("unexpected entry (generation folders are named gen_NNNN)",
                                    file=rel))
        elif g < 0:
            problems.append(Problem(f"negative generation number {g}", file=rel))
        else:
            found.setdefault(g, []).append(entry)

    complete, incomplete = [], []
    tables: dict[tuple[int, str], pd.DataFrame] = {}
    for g in sorted(found):
        dirs = found[g]
        if len(dirs) > 1:
            names = ", ".join(layout.relative(root, d) for d in dirs)
            problems.append(Problem(f"duplicated generation: {names}", generation=g))
            continue
        gdir = dirs[0]
        if gdir != layout.generation_dir(root, g):
            problems.append(Problem(
                f"generation folder should be named {layout.generation_dir(root, g).name}",
                file=layout.relative(root, gdir), generation=g))
            continue
        if not layout.complete_path(root, g).is_file():
            incomplete.append(g)
            continue
        n_before = len(problems)
        record = _check_record(root, g, gdir, problems)
        if record is None:
            continue
        for p in sorted(gdir.glob("*" + layout.TABLE_SUFFIX)):
            if p.stem not in layout.SETS and not p.name.startswith("."):
                problems.append(Problem(
                    f"unknown set '{p.stem}' (expected {', '.join(layout.SETS)})",
                    file=layout.relative(root, p), generation=g))
        for set_name in layout.SETS:
            path = layout.set_path(root, g, set_name)
            rel = layout.relative(root, path)
            if not path.is_file():
                if set_name in layout.REQUIRED_SETS:
                    problems.append(Problem(f"missing required set '{set_name}'",
                                            file=rel, generation=g))
                continue
            data = path.read_bytes()
            entry = record["files"].get(path.name, {})
            if entry.get("sha256") != io.sha256_bytes(data):
                problems.append(Problem("changed after completion (sha256 mismatch)",
                                        file=rel, generation=g))
                continue
            if not load:
                continue
            try:
                df = io.read_table_bytes(data)
            except ValueError as exc:
                problems.append(Problem(f"unreadable table: {exc}", file=rel, generation=g))
                continue
            if traits is not None:
                problems += checks.check_set_table(df, traits, set_name=set_name, file=rel,
                                                   generation=g)
                if not problems[n_before:]:
                    df = df[list(layout.KEY_COLUMNS) + traits].astype(
                        {t: float for t in traits})
            tables[(g, set_name)] = df
        set_files = {s + layout.TABLE_SUFFIX for s in layout.SETS}
        other_artifacts = {n for n in record["files"] if n not in set_files}
        for name in sorted(other_artifacts):
            path = gdir / name
            if path.is_file() and io.sha256_file(path) != record["files"][name].get("sha256"):
                problems.append(Problem("changed after completion (sha256 mismatch)",
                                        file=layout.relative(root, path), generation=g))
        complete.append(g)  # with or without errors: it counts for contiguity

    everything = sorted(found)
    if everything:
        last = everything[-1]
        for g in range(0, last + 1):
            if g not in found:
                problems.append(Problem(f"missing generation {g} (present: "
                                        f"{_ranges(everything)})", generation=g))
    for g in incomplete:
        rel = layout.relative(root, layout.generation_dir(root, g))
        if any(c > g for c in complete):
            problems.append(Problem(
                "incomplete (no completion record) although later generations are complete",
                file=rel, generation=g))
        else:
            problems.append(Problem(
                "incomplete (no completion record): an interrupted or running writer; "
                "readers ignore it", file=rel, generation=g, severity="notice"))
    if not complete and not any(p.severity == "error" for p in problems):
        problems.append(Problem("the run has no complete generation"))

    if manifest is None or any(p.severity == "error" for p in problems):
        return None, problems
    run = Run(root=root, manifest=manifest, generations=complete, incomplete=incomplete,
              notices=[p for p in problems if p.severity != "error"], _tables=tables)
    return run, problems


def open_run(root: str | Path) -> Run:
    """Open a run for reading; raises InvalidInputError listing every error found."""
    run, problems = scan_run(root)
    if run is None:
        raise InvalidInputError(f"invalid run directory {root}", problems,
                                hint="nothing was modified; `qtrait validate RUN --json` "
                                     "lists the problems for scripts")
    return run


def validate_run(root: str | Path) -> list[Problem]:
    """Every problem of a run directory (errors and notices), as ``qtrait validate``."""
    return scan_run(root)[1]


def _ranges(values: list[int]) -> str:
    out, start, prev = [], None, None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)
