"""Low-level file operations of the run directory: atomic writes, hashes, tables."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from . import layout


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (no-op where the OS does not allow it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a hidden temporary file in the same folder, are flushed to disk, and
    the temporary file is renamed over the target.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run is meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def table_to_bytes(df: pd.DataFrame) -> bytes:
    """Serialise a set table as CSV. Floats are written with ``repr`` precision, so
    reading them back with :func:`read_table_bytes` gives bit-identical values."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


# pandas >= 3 parses floats exactly by default (and deprecates the option); older pandas
# needs float_precision="round_trip" for bit-identical round trips.
_ROUND_TRIP = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def looks_binary(data: bytes) -> bool:
    """A text table never holds NUL bytes; most binary formats do early on."""
    return b"\x00" in data[:8192]


def read_table_bytes(data: bytes) -> pd.DataFrame:
    """Parse a set table written by :func:`table_to_bytes`.

    Key columns are read as strings; everything else as it parses (validation checks
    the traits are numeric). Raises ``ValueError`` with a readable message on failure.
    """
    if looks_binary(data):
        raise ValueError("binary data, not a CSV table")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise ValueError("empty file")
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])))
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ValueError(f"duplicated column name(s) {dupes}")
    try:
        return pd.read_csv(
            io.StringIO(text),
            dtype={c: str for c in layout.KEY_COLUMNS},
            keep_default_na=False,  # a concept named "NA" stays a string
            **_ROUND_TRIP,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ValueError(f"unreadable CSV: {str(exc).strip().splitlines()[0]}") from None
