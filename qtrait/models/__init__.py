"""Bayesian models of a chain: one file per model, a registry, specs separate from graphs."""

from __future__ import annotations

from ..errors import QtraitError
from .breeder import BreederSpec
from .data import FitData, fit_data

REGISTRY = {"breeder": BreederSpec}


def get_spec(name: str):
    try:
        return REGISTRY[name]()
    except KeyError:
        raise QtraitError(f"unknown model {name!r}; available: {', '.join(REGISTRY)}") from None


__all__ = ["REGISTRY", "FitData", "fit_data", "get_spec"]
