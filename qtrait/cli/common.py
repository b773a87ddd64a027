"""Conventions shared by every qtrait command: errors, JSON output, generation ranges."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


from ..errors import QtraitError

JSON_HELP = "Print one JSON object on stdout (documented in docs/cli.md) instead of text."
GENERATIONS_HELP = ("Generations to use, 'A:B' with Python slice meaning (A included, "
                    "B excluded; 'A:' or ':B' open-ended). The first K generations are ':K'.")


def parse_generations(text: str | None) -> slice | None:
    """Parse ``A:B`` (Python slice meaning) into a slice of generation numbers."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise QtraitError(f"--generations {text!r}: expected 'A:B' (e.g. 0:5 or :5)")
    try:
        a = int(parts[0]) if parts[0].strip() else None
        b = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise QtraitError(f"--generations {text!r}: A and B must be integers") from None
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise QtraitError(f"--generations {text!r}: generation numbers are >= 0")
    if a is not None and b is not None and b <= a:
        raise QtraitError(f"--generations {text!r}: empty range (B must be greater than A)")
    return slice(a, b)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """One JSON object on stdout (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
