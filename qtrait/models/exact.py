"""The ``exact`` model: the tilt model with selection computed by the exact Gaussian
sampler map (theory.md 2.2) of the run's sampler and guidance schedule.

Its likelihood calls :func:`qtrait.theory.sampler.gaussian_cfg_map`, the same function as
``qtrait theory``, on PyTensor variables. Because inheritance conditions on the observed
moments of the previous guided set, every generation's map is independent of the
previous map's output, so one vectorised call over (set, generation, cell) covers the
whole chain: the graph grows with the sampler's steps, not with the generations. The
probes go through the same map at w = 1 (a finite sampler loses variance even there).
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import ChainData
from .tilt import TiltSpec


@dataclass(frozen=True)
class ExactSpec(TiltSpec):
    """The ``exact`` model: ``tilt`` with selection by the exact Gaussian sampler map of the
    run's sampler and guidance schedule (works with any schedule)."""
    name: str = "exact"
    selection: str = "exact"

    def sampled_moments(self, cd: ChainData, m, u, mu_u, vu, gain) -> dict:
        import pytensor.tensor as pt

        from ..theory.sampler import gaussian_cfg_map

        guidance, sampler = self.schedule(cd)
        # three maps in one call: guided (gain kappa), w = 1 probe and uncond probe (gain 0)
        zero = pt.zeros_like(gain)
        mean, var = gaussian_cfg_map(pt.stack([m, m, mu_u]), pt.stack([u, u, vu]),
                                     pt.stack([mu_u, mu_u, mu_u]), pt.stack([vu, vu, vu]),
                                     guidance, sampler,
                                     gain=pt.stack([gain, zero, zero])[:, None, :])
        return {"guided": (mean[0], var[0]), "probe_w1": (mean[1], var[1]),
                "probe_uncond": (mean[2], var[2])}
