"""The run directory: the on-disk contract between chain_runner and qtrait.

This package is the only code that knows the file names inside a run directory
(:mod:`qtrait.rundir.layout`). The contract is written up in ``docs/run-directory.md``.
"""

from .layout import OUTPUT_DIRS, SETS
from .manifest import SCHEMA_VERSION, make_manifest
from .migrate import Migration
from .reader import Run, open_run, scan_run, validate_run
from .table import import_table, read_long_table
from .writer import GenerationWriter, RunWriter

__all__ = [
    "OUTPUT_DIRS",
    "SCHEMA_VERSION",
    "SETS",
    "GenerationWriter",
    "Migration",
    "Run",
    "RunWriter",
    "import_table",
    "make_manifest",
    "open_run",
    "read_long_table",
    "scan_run",
    "validate_run",
]
