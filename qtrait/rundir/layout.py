"""Every file and folder name of the run-directory contract, and nothing else.

This is the only place in qtrait and chain_runner that spells a file name inside a run
directory. Everything else asks :mod:`qtrait.rundir` for paths. The layout is described
for users in ``docs/run-directory.md``; keep the two in step.

::

    RUN/
      manifest.json              design, traits, provenance (schema_version first)
      manifest.v<N>.json         the schema-N manifest kept by `qtrait migrate`
      trait_basis.npz            optional: the fixed trait basis (F x K) and centre
      generations/
        gen_0000/
          guided.csv             one row per image: image_id, concept, <traits...>
          probe_w1.csv           optional probe sets
          probe_uncond.csv
          artifacts/             optional: image grids, LoRA weights, ...
          COMPLETE.json          completion record, written last (sha256 of every file)
        gen_0001/ ...
      fits/  reports/  summaries/   qtrait's own outputs (one subfolder each)
      chain_state/gen_NNNN/      the chain runner's private resume state (training images,
                                 LoRA weights); not part of the contract, never read by
                                 qtrait, not shipped with example runs
"""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = "manifest.json"
BASIS = "trait_basis.npz"
GENERATIONS = "generations"
COMPLETE = "COMPLETE.json"
ARTIFACTS = "artifacts"
TABLE_SUFFIX = ".csv"

#: The sample sets of a generation (theory.md section 1). ``guided`` is required.
SETS = ("guided", "probe_w1", "probe_uncond")
REQUIRED_SETS = ("guided",)

#: Columns of a set table that are not traits.
ID_COLUMN = "image_id"
CONCEPT_COLUMN = "concept"
KEY_COLUMNS = (ID_COLUMN, CONCEPT_COLUMN)
#: Names a trait may not take (columns of the long table).
RESERVED_NAMES = ("generation", "set", ID_COLUMN, CONCEPT_COLUMN)

#: Subfolders where qtrait writes its own outputs; it writes nowhere else in a run.
OUTPUT_DIRS = ("fits", "reports", "summaries")

_GEN_RE = re.compile(r"^gen_(-?\d+)$")


def manifest_path(root: Path) -> Path:
    return root / MANIFEST


def manifest_backup_path(root: Path, version: int) -> Path:
    """Where ``qtrait migrate`` keeps the manifest of schema ``version``."""
    return root / f"manifest.v{version}.json"


def basis_path(root: Path) -> Path:
    return root / BASIS


def generations_dir(root: Path) -> Path:
    return root / GENERATIONS


def generation_dir(root: Path, generation: int) -> Path:
    return root / GENERATIONS / f"gen_{generation:04d}"


def set_path(root: Path, generation: int, set_name: str) -> Path:
    return generation_dir(root, generation) / f"{set_name}{TABLE_SUFFIX}"


def complete_path(root: Path, generation: int) -> Path:
    return generation_dir(root, generation) / COMPLETE


def artifacts_dir(root: Path, generation: int) -> Path:
    return generation_dir(root, generation) / ARTIFACTS


STATE = "chain_state"
STATE_IMAGES = "guided_images.npz"
STATE_ADAPTER = "adapter.safetensors"


def state_dir(root: Path, generation: int) -> Path:
    """The chain runner's private resume state of one generation."""
    return root / STATE / f"gen_{generation:04d}"


def output_dir(root: Path, kind: str) -> Path:
    if kind not in OUTPUT_DIRS:
        raise ValueError(f"unknown output folder {kind!r}; expected one of {OUTPUT_DIRS}")
    return root / kind


def fit_path(root: Path, model: str, config_hash: str) -> Path:
    """Where ``qtrait fit`` saves a posterior (netCDF) of ``model`` with that configuration."""
    return output_dir(root, "fits") / f"{model}-{config_hash}.nc"


def parse_generation_dir(name: str) -> int | None:
    """Generation number of a folder name ``gen_NNNN``, or None if it is not one."""
    m = _GEN_RE.match(name)
    return int(m.group(1)) if m else None


def relative(root: Path, path: Path) -> str:
    """A path as shown in messages: relative to the run root, with forward slashes."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
