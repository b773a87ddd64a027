"""``qtrait migrate``: apply the registered schema migrations to a run on disk."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import QtraitError
from . import io, layout, migrate
from .reader import open_run


def migrate_run(root: str | Path, dry_run: bool = False) -> str:
    """Upgrade ``root`` to the current schema version; returns what was done.

    The old manifest is kept as ``manifest.v<N>.json``; the new one is written
    atomically, after any file moves of the migration steps.
    """
    root = Path(root)
    path = layout.manifest_path(root)
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise QtraitError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise QtraitError(f"{path} is not a JSON object")
    version = migrate.schema_version_of(raw)
    steps = migrate.path_to_current(version)
    if not steps:
        return f"{root}: already at schema version {version}; nothing to do"
    plan = "; ".join(f"{s.from_version} -> {s.from_version + 1}: {s.description}"
                     for s in steps)
    open_run(root)  # the run must be valid (read through the in-memory upgrade) first
    if dry_run:
        return f"{root}: would migrate {plan}"
    backup = layout.manifest_backup_path(root, version)
    if not backup.exists():
        io.atomic_write_bytes(backup, path.read_bytes())
    upgraded = migrate.upgrade(raw)
    for step in steps:
        if step.on_disk is not None:
            step.on_disk(root)
    io.atomic_write_json(path, upgraded)
    return f"{root}: migrated {plan} (old manifest kept as {backup.name})"
