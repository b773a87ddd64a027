"""What the analysis scripts share: writing results.md without losing the discussion.

Each study's ``run.py`` regenerates the numbers above :data:`MARKER` and keeps the
hand-written discussion below it.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "<!-- hand-written discussion below: kept when run.py rewrites this file -->"


def write_results(folder: Path, text: str) -> None:
    """Write ``folder/results.md``, keeping the hand-written discussion after MARKER."""
    path = folder / "results.md"
    old = path.read_text() if path.exists() else ""
    tail = old[old.index(MARKER):] if MARKER in old else MARKER + "\n"
    path.write_text(text + "\n" + tail)


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines file (one object per line), [] when it does not exist."""
    return ([json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            if path.exists() else [])
