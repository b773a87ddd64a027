"""Per-generation statistics of trait samples.

``qtrait.stats.array`` is the NumPy/SciPy-only layer: plain arrays in, plain arrays
out. ``qtrait.stats.labelled`` wraps it with named dimensions (pandas/xarray) for runs;
the array layer never imports the labelled one.
"""

from qtrait.stats.array import diversity, moments, realized_h2, selection
from qtrait.stats.labelled import RunSummary, summarize

__all__ = ["moments", "diversity", "selection", "realized_h2", "RunSummary", "summarize"]
