"""Closed forms of the generation map (theory.md section 2). numpy only."""

from .closed_forms import inherit, tilt

__all__ = ["inherit", "tilt"]
