"""Bayesian models of a chain: one file per model, a registry, specs separate from graphs.

* ``breeder`` (:mod:`.breeder`): the simplified map V' = lambda s2 + V_m, works without probes;
* ``tilt`` (:mod:`.tilt`): inheritance (h2), CFG as the tilt, condition drop, mutation;
  needs the probe sets;
* ``exact`` (:mod:`.exact`): ``tilt`` with the exact Gaussian sampler map;
* ``hier`` (:mod:`.hier`): several runs, breeder per run, run-level parameters regressed
  on the design.
"""

from __future__ import annotations

from ..errors import QtraitError
from .base import ModelSpec
from .breeder import BreederSpec
from .data import ChainData, FitData, chain_data, fit_data
from .exact import ExactSpec
from .hier import HierSpec
from .tilt import TiltSpec

REGISTRY = {"breeder": BreederSpec, "tilt": TiltSpec, "exact": ExactSpec, "hier": HierSpec}


def get_spec(name: str) -> ModelSpec:
    """The specification of model ``name`` (breeder, tilt, exact, hier); QtraitError for
    another name."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise QtraitError(f"unknown model {name!r}; available: {', '.join(REGISTRY)}") from None


__all__ = ["REGISTRY", "ChainData", "FitData", "ModelSpec", "chain_data", "fit_data",
           "get_spec"]
