"""Calibrations of the zero-shot theory: how strongly guidance selects on a kind of chain.

The theory (docs/theory.md section 2) treats guidance at scale w as a tilt of the learned
conditional by the unconditional branch, with the Gaussian moments of the probes. On the
CPU miniature chain that selection is far stronger than what the chain does: the exact
sampler map predicts a generation-1 within-concept variance ratio of about 0.004 at
w = 7.5 where the chain keeps about 0.8. A calibration scales the guidance's distance
from 1 by a factor kappa,

    w_eff(s) - 1 = kappa (w(s) - 1)      at every sampling step s,

the effective selection strength the specification already names (theory.md, "In fitted
models CFG enters through an effective selection strength"), together with the
heritability h2 of finetuning that the zero-shot theory otherwise assumes (1), and the
variance retention r of finetuning (the learned conditional's variance is r times what
inheritance gives it: a finetuned model narrower than its training set, as a refit on n
samples keeps (n - 1)/n of the variance). kappa = 1, h2 = 1 and r = 1 are the theory as
derived. A calibration is learned on chains that are not judged with it
(analyses/zeroshot_calibration: the forecasting benchmark's seed-1 chains) and applies to
the kind of chain it was learned on, recognised by the run's producer; other chains get
the uncalibrated theory unless the user chooses a profile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .generation import MapParams
from .schedules import GuidanceSchedule


@dataclass(frozen=True)
class Calibration:
    """A named calibration: the selection factor kappa, the heritability h2, the variance
    retention of finetuning and where they come from."""

    name: str
    kappa: float
    source: str
    h2: float = 1.0
    retention: float = 1.0

    def __post_init__(self):
        if not self.kappa > 0:
            raise ValueError(f"kappa must be > 0, got {self.kappa}")
        if not 0 <= self.h2 <= 1:
            raise ValueError(f"h2 must be in [0, 1], got {self.h2}")
        if not 0 < self.retention <= 1:
            raise ValueError(f"retention must be in (0, 1], got {self.retention}")

    def guidance(self, g: GuidanceSchedule) -> GuidanceSchedule:
        """The schedule with every step's w - 1 multiplied by kappa."""
        if self.kappa == 1.0:
            return g
        k = float(self.kappa)
        fn = None
        if g.fn is not None:
            inner = g.fn

            def fn(p, inner=inner):
                return 1.0 + k * (np.asarray(inner(p), dtype=float) - 1.0)
        return replace(g, scale=1.0 + k * (g.scale - 1.0), end=1.0 + k * (g.end - 1.0),
                       fn=fn)

    def apply(self, params: MapParams) -> MapParams:
        """``params`` with the calibrated guidance (:meth:`guidance`) and retention; h2
        stays the caller's (:func:`for_run` resolves it)."""
        return replace(params, guidance=self.guidance(params.guidance),
                       retention=self.retention)

    def describe(self) -> str:
        if self.kappa == 1.0 and self.h2 == 1.0 and self.retention == 1.0:
            return f"{self.name} (the theory as derived: w_eff = w, h2 = 1, retention 1)"
        return (f"{self.name} (w_eff - 1 = {self.kappa:.3g} (w - 1), h2 = {self.h2:g}, "
                f"retention {self.retention:g}; {self.source})")


#: the theory as derived
NONE = Calibration("none", 1.0, "no calibration")

#: the CPU miniature chain (chain_runner's toy backend); fitted by
#: analyses/zeroshot_calibration/run.py on the forecasting benchmark's 16 seed-1 chains,
#: never on the shipped runs it is judged on (analyses/zeroshot_calibration/results.md)
MINIATURE = Calibration("miniature", 0.017, "fitted on the benchmark's seed-1 miniature "
                        "chains, analyses/zeroshot_calibration", h2=0.83, retention=0.83)

PROFILES = {c.name: c for c in (NONE, MINIATURE)}

#: a run's producer (manifest ``producer.name``) -> the calibration learned on its kind
BY_PRODUCER = {"chain_runner (toy)": MINIATURE}


def calibration_for(producer: str | None, choice: str = "auto") -> Calibration:
    """The calibration ``choice`` names, or with ``"auto"`` the one learned on chains of
    the run's ``producer`` (none for any other producer). ValueError for an unknown
    name."""
    if choice == "auto":
        return BY_PRODUCER.get(producer or "", NONE)
    if choice not in PROFILES:
        raise ValueError(f"calibration must be auto or one of {sorted(PROFILES)}, "
                         f"got {choice!r}")
    return PROFILES[choice]


def for_run(manifest: dict | None, choice: str = "auto",
            h2: float | None = None) -> tuple[Calibration, float]:
    """The calibration for a run (its manifest, None without a run: ``calibration_for`` of
    its producer, or of the program that made an imported table, ``producer.source``) and
    the heritability to use: ``h2`` when given, else the
    calibration's."""
    prod = (manifest or {}).get("producer") or {}
    producer = prod.get("source") or prod.get("name")   # an imported table: its source
    cal = calibration_for(producer, choice)
    return cal, (cal.h2 if h2 is None else h2)
