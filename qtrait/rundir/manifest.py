"""The manifest: schema version, design, traits and provenance of a run.

The manifest is plain JSON so that any tool can read it. This module builds it,
checks it, and upgrades manifests of older schema versions (see :mod:`.migrate`).
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
from importlib import metadata
from typing import Any

from ..errors import Problem
from . import layout

#: The schema version this qtrait writes. Readers accept it and older versions that
#: have a migration path (``qtrait.rundir.migrate``).
SCHEMA_VERSION = 1

ANCHORS = ("base", "previous")
#: What each generation is finetuned on: ``replace``, the previous generation's guided
#: set; ``accumulate``, every guided set so far (the real data of generation 0 included)
TRAINING_DATA = ("replace", "accumulate")
#: Guidance schedules over sampling steps. ``custom`` means "described in
#: ``cfg_schedule_params``" (e.g. tabulated values), for runs made by other tools.
SCHEDULES = ("constant", "linear", "cosine", "step", "interval", "custom")

#: Design fields that every run must state (``qtrait import`` asks for them).
REQUIRED_DESIGN = ("name", "cfg_scale", "cfg_schedule", "p_drop", "anchor")

#: Every design field with its default (None = unknown / not applicable).
DESIGN_DEFAULTS: dict[str, Any] = {
    "name": None,
    "base_model": None,
    "dataset": None,
    "cfg_scale": None,
    "cfg_schedule": "constant",
    "cfg_schedule_params": {},
    "p_drop": 0.0,
    "anchor": "base",
    "training_data": "replace",
    "images_per_generation": None,
    "probe_sizes": {"probe_w1": 0, "probe_uncond": 0},
    "sampler": {},
    "seeds": {},
    "feature_extractor": None,
}

_PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "pymc", "arviz", "xarray")


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds and a ``Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed versions of the named distributions (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def producer(name: str, extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Provenance of the program writing a run (recorded in the manifest)."""
    from .. import __version__

    return {
        "name": name,
        "qtrait_version": __version__,
        "python": platform.python_version(),
        "packages": package_versions(_PACKAGES + tuple(extra_packages)),
    }


def make_design(fields: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into a design dict (unknown keys are kept, under the same names)."""
    design = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DESIGN_DEFAULTS.items()}
    design.update(fields)
    return design


def check_design(design: dict[str, Any], file: str = layout.MANIFEST) -> list[Problem]:
    """Check the design fields; returns one problem per bad field."""
    problems: list[Problem] = []

    def bad(field: str, msg: str) -> None:
        problems.append(Problem(f"design field '{field}': {msg}", file=file))

    for field in REQUIRED_DESIGN:
        if design.get(field) is None:
            bad(field, "missing (required)")
    name = design.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        bad("name", f"must be a non-empty string, got {name!r}")
    w = design.get("cfg_scale")
    if w is not None and not _is_number(w, minimum=0.0):
        bad("cfg_scale", f"must be a number >= 0, got {w!r}")
    sched = design.get("cfg_schedule")
    if sched is not None and sched not in SCHEDULES:
        bad("cfg_schedule", f"unknown schedule {sched!r}; expected one of {', '.join(SCHEDULES)}")
    p = design.get("p_drop")
    if p is not None and not (_is_number(p, minimum=0.0) and float(p) <= 1.0):
        bad("p_drop", f"must be a number in [0, 1], got {p!r}")
    anchor = design.get("anchor")
    if anchor is not None and anchor not in ANCHORS:
        bad("anchor", f"must be 'base' or 'previous', got {anchor!r}")
    data = design.get("training_data")
    if data is not None and data not in TRAINING_DATA:
        bad("training_data", f"must be 'replace' or 'accumulate', got {data!r}")
    n = design.get("images_per_generation")
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        bad("images_per_generation", f"must be a positive integer, got {n!r}")
    probes = design.get("probe_sizes", {})
    if not isinstance(probes, dict) or any(
        k not in layout.SETS[1:] or not isinstance(v, int) or isinstance(v, bool) or v < 0
        for k, v in probes.items()
    ):
        bad("probe_sizes", f"must map probe_w1/probe_uncond to integers >= 0, got {probes!r}")
    for field in ("cfg_schedule_params", "sampler", "seeds"):
        if not isinstance(design.get(field, {}), dict):
            bad(field, "must be a table/object")
    return problems


def check_trait_names(names: Any, file: str = layout.MANIFEST) -> list[Problem]:
    """Problems with a list of trait names: not a non-empty list of strings, an empty or
    multi-line name, a reserved column name, a duplicate. ``file`` labels the problems."""
    if not isinstance(names, list) or not names:
        return [Problem("traits.names must be a non-empty list of strings", file=file)]
    problems = []
    seen = set()
    for name in names:
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "\n\r\t"):
            problems.append(Problem(f"invalid trait name {name!r}", file=file))
        elif name in layout.RESERVED_NAMES:
            problems.append(Problem(f"'{name}' is a reserved column name, not a trait", file=file))
        elif name in seen:
            problems.append(Problem(f"trait '{name}' is listed twice", file=file))
        seen.add(name)
    return problems


def make_manifest(
    run_id: str,
    design: dict[str, Any],
    trait_names: list[str],
    *,
    producer_name: str,
    axes: list[str] | None = None,
    basis: dict[str, Any] | None = None,
    truth: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    extra_packages: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Build a schema-version-1 manifest.

    ``axes`` are the trait names that span the feature-space trait basis (the K
    principal axes); set-level diversity is computed over them. Default: all traits.
    ``basis`` describes how traits were obtained (kind, feature extractor, whether
    ``trait_basis.npz`` holds the matrix). ``truth`` holds the true parameters of a
    simulated run.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": utc_now(),
        "producer": producer(producer_name, extra_packages),
        "design": make_design(design),
        "traits": {
            "names": list(trait_names),
            "axes": list(axes) if axes is not None else list(trait_names),
            "basis": basis or {"kind": "given", "file": None},
        },
        "truth": truth,
        "extra": extra or {},
    }


def check_manifest(m: Any, file: str = layout.MANIFEST) -> list[Problem]:
    """Structural checks of a (current-version) manifest."""
    if not isinstance(m, dict):
        return [Problem("manifest is not a JSON object", file=file)]
    problems = []
    for key in ("schema_version", "run_id", "created_at", "producer", "design", "traits"):
        if key not in m:
            problems.append(Problem(f"missing key '{key}'", file=file))
    if problems:
        return problems
    if not isinstance(m["run_id"], str) or not m["run_id"]:
        problems.append(Problem("run_id must be a non-empty string", file=file))
    if not isinstance(m["design"], dict):
        problems.append(Problem("design must be an object", file=file))
    else:
        problems += check_design(m["design"], file)
    traits = m["traits"]
    if not isinstance(traits, dict):
        return problems + [Problem("traits must be an object", file=file)]
    problems += check_trait_names(traits.get("names"), file)
    names = traits.get("names") or []
    axes = traits.get("axes", names)
    if not isinstance(axes, list) or any(a not in names for a in axes):
        problems.append(Problem("traits.axes must be a list of trait names", file=file))
    return problems


def _is_number(x: Any, minimum: float | None = None) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    if not math.isfinite(float(x)):
        return False
    return minimum is None or float(x) >= minimum
