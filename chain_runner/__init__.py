"""chain_runner: runs Chains of Diffusion and extracts traits from every generation.

It writes run directories through :mod:`qtrait.rundir` (the only qtrait module it uses
besides the theory's guidance schedules) and needs torch (the ``chain`` extra).
Backends: ``toy`` (a real miniature diffusion model on scikit-learn's digits, CPU).
"""

__all__ = ["__version__"]

from qtrait import __version__  # noqa: E402  one version for the project
