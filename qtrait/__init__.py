"""qtrait: quantitative-trait statistics of model collapse in self-consuming diffusion chains.

The base package is the statistics core. It never imports torch; the chain runner
(``chain_runner``) is a separate package installed with the ``chain`` extra.
"""

# the one place the version is written; pyproject.toml reads it from here
__version__ = "0.1.0"

__all__ = ["__version__"]
