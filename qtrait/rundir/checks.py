"""Checks of set tables shared by the writer, the reader and ``qtrait import``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import Problem
from . import layout

#: Cell texts read as "missing" (reported as missing values, not as non-numeric text).
_MISSING_TEXT = ["", "nan", "na", "n/a", "null", "none"]
#: How many offending rows a message lists before it says "and N more".
_SHOW = 5


def rows_text(mask: np.ndarray, first_line: int, unit: str = "line") -> str:
    """``line 3, 7 and 2 more``: where the True entries of ``mask`` are in the file."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i + first_line) for i in idx[:_SHOW])
    more = f" and {len(idx) - _SHOW} more" if len(idx) > _SHOW else ""
    return f"{unit}{'s' if len(idx) > 1 else ''} {shown}{more}"


def check_trait_values(
    df: pd.DataFrame,
    traits: list[str],
    *,
    file: str | None,
    generation: int | None,
    first_line: int = 2,
    unit: str = "line",
) -> list[Problem]:
    """Every trait column must be numeric and finite.

    ``first_line`` is the file line of the first data row (2 for a CSV with a header),
    so messages point at lines a person can open.
    """
    problems = []
    for col in traits:
        if col not in df.columns:
            continue
        values = df[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            text = values.astype(str).str.strip().str.lower()
            bad = (numeric.isna() & ~text.isin(_MISSING_TEXT)).to_numpy()
            if bad.any():
                example = values[bad].iloc[0]
                problems.append(
                    Problem(
                        f"non-numeric values ({rows_text(bad, first_line, unit)}, e.g. {example!r})",
                        file=file, generation=generation, column=col,
                    )
                )
                continue
            values = numeric
        arr = values.to_numpy(dtype=float, na_value=np.nan)
        nan = np.isnan(arr)
        if nan.any():
            problems.append(
                Problem(f"missing or NaN values ({rows_text(nan, first_line, unit)})",
                        file=file, generation=generation, column=col)
            )
        inf = np.isinf(arr)
        if inf.any():
            problems.append(
                Problem(f"infinite values ({rows_text(inf, first_line, unit)})",
                        file=file, generation=generation, column=col)
            )
    return problems


def check_group_sizes(
    df: pd.DataFrame, *, set_name: str, file: str | None, generation: int | None
) -> list[Problem]:
    """A set needs at least 2 images per concept (a variance needs two values)."""
    if len(df) < 2:
        return [Problem(f"set '{set_name}' has {len(df)} image(s); at least 2 are needed",
                        file=file, generation=generation)]
    if layout.CONCEPT_COLUMN not in df.columns:
        return []
    counts = df.groupby(layout.CONCEPT_COLUMN, sort=True).size()
    small = counts[counts < 2]
    return [
        Problem(f"set '{set_name}', concept '{c}' has {n} image; at least 2 are needed",
                file=file, generation=generation)
        for c, n in small.items()
    ]


def check_columns(
    df: pd.DataFrame, traits: list[str], *, file: str | None, generation: int | None
) -> list[Problem]:
    """The table's trait columns must be exactly the run's traits."""
    have = [c for c in df.columns if c not in layout.KEY_COLUMNS]
    missing = [t for t in traits if t not in have]
    extra = [c for c in have if c not in traits]
    problems = []
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        problems.append(Problem(
            "trait columns differ from the run's traits: " + "; ".join(parts),
            file=file, generation=generation,
        ))
    for key in layout.KEY_COLUMNS:
        if key not in df.columns:
            problems.append(Problem(f"missing key column '{key}'", file=file,
                                    generation=generation))
    return problems


def check_set_table(
    df: pd.DataFrame, traits: list[str], *, set_name: str, file: str | None,
    generation: int | None,
) -> list[Problem]:
    """All checks of one set table."""
    problems = check_columns(df, traits, file=file, generation=generation)
    problems += check_trait_values(df, traits, file=file, generation=generation)
    problems += check_group_sizes(df, set_name=set_name, file=file, generation=generation)
    return problems
