"""A per-machine cache for trained toy models (base denoiser, feature network).

Models are trained once, keyed by a hash of everything that determines them, and stored
as safetensors under ``$QTRAIT_CACHE`` (default ``~/.cache/qtrait``). Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def cache_dir(configured: str = "") -> Path:
    path = Path(configured or os.environ.get("QTRAIT_CACHE", "")
                or Path.home() / ".cache" / "qtrait")
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(kind: str, spec: dict[str, Any]) -> str:
    """A cache key from everything that determines a model, including the versions of the
    libraries whose numerics it depends on."""
    from importlib import metadata

    versions = {}
    for pkg in ("torch", "diffusers", "peft"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    blob = json.dumps({"kind": kind, **spec, "versions": versions}, sort_keys=True).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def cached_state(directory: Path, name: str,
                 train: Callable[[], dict[str, torch.Tensor]]) -> tuple[dict, bool]:
    """Load ``name`` from the cache, or train it and store it. Returns (state, was_cached)."""
    from safetensors.torch import load_file, save_file

    path = directory / f"{name}.safetensors"
    if path.exists():
        return load_file(path), True
    state = {k: v.detach().contiguous() for k, v in train().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # shareable like the run files (mkstemp makes 0600)
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return state, False
