"""Schema versions and the migration path between them.

Readers dispatch on ``manifest["schema_version"]``:

* the current version is read as is;
* an older version is upgraded *in memory*, one step at a time, through the registered
  :class:`Migration` steps (``1 -> 2 -> ...``); the files on disk are not touched;
* a newer version, or an older one without a path, is refused with a clear message.

``qtrait migrate RUN`` applies the same steps on disk: it keeps the old manifest as
``manifest.v<N>.json`` and writes the upgraded one atomically.

Adding schema version 2 means: bump ``SCHEMA_VERSION`` in :mod:`.manifest`, write a
function that turns a version-1 manifest into a version-2 one (and, if files move, an
``on_disk`` step that moves them idempotently), and register it here with
``register(Migration(1, ...))``. The test suite migrates the committed version-1 fixture
``tests/fixtures/run_v1`` through the registered path.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import QtraitError
from . import manifest as _manifest


@dataclass(frozen=True)
class Migration:
    """One step from ``from_version`` to ``from_version + 1``."""

    from_version: int
    description: str
    upgrade: Callable[[dict[str, Any]], dict[str, Any]]
    #: Optional file moves for ``qtrait migrate`` (must be idempotent).
    on_disk: Callable[[Path], None] | None = None


MIGRATIONS: dict[int, Migration] = {}


def register(step: Migration) -> None:
    """Register a migration step (replacing any step from the same version)."""
    MIGRATIONS[step.from_version] = step


def current_version() -> int:
    """The schema version this qtrait writes (:data:`qtrait.rundir.SCHEMA_VERSION`)."""
    return _manifest.SCHEMA_VERSION


def schema_version_of(m: dict[str, Any]) -> int:
    """A manifest's ``schema_version``; QtraitError unless it is an integer."""
    v = m.get("schema_version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise QtraitError(f"schema_version must be an integer, got {v!r}")
    return v


def path_to_current(version: int) -> list[Migration]:
    """The steps from ``version`` to the current version; QtraitError if there is none."""
    current = current_version()
    if version > current:
        raise QtraitError(
            f"unsupported schema version {version}: this qtrait reads versions up to {current}",
            hint="upgrade qtrait (pip install -U qtrait)",
        )
    if version < 1:
        raise QtraitError(f"unsupported schema version {version}: versions start at 1")
    steps = []
    for v in range(version, current):
        if v not in MIGRATIONS:
            raise QtraitError(
                f"unsupported schema version {version}: no migration from version {v} "
                f"to {v + 1} is known"
            )
        steps.append(MIGRATIONS[v])
    return steps


def upgrade(m: dict[str, Any]) -> dict[str, Any]:
    """Return the manifest upgraded to the current schema (input left unchanged)."""
    out = copy.deepcopy(m)
    for step in path_to_current(schema_version_of(m)):
        out = step.upgrade(out)
        out["schema_version"] = step.from_version + 1
    return out
