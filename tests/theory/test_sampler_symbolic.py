"""The sampler map builds a PyTensor graph that equals the numpy map (the Bayesian
models' likelihood calls this same function)."""

from __future__ import annotations

import numpy as np
import pytest

from qtrait.theory.sampler import gaussian_cfg_map
from qtrait.theory.schedules import GuidanceSchedule, NoiseSchedule, Sampler


@pytest.mark.parametrize("sampler,guidance", [
    (Sampler("ddim", 20), GuidanceSchedule("constant", 3.0)),
    (Sampler("ddpm", 15, NoiseSchedule.stable_diffusion(), "v_prediction"),
     GuidanceSchedule("linear", 7.5, end=1.0)),
])
def test_symbolic_map_equals_numpy_map(sampler, guidance):
    pt = pytest.importorskip("pytensor.tensor")
    import pytensor

    m, u, mu, vu = (pt.vector(n) for n in ("m", "u", "mu", "vu"))
    mean, var = gaussian_cfg_map(m, u, mu, vu, guidance, sampler)
    f = pytensor.function([m, u, mu, vu], [mean, var])
    rng = np.random.default_rng(0)
    args = (rng.normal(size=6), rng.uniform(0.05, 1.0, 6), rng.normal(size=6),
            rng.uniform(1.0, 3.0, 6))
    got_mean, got_var = f(*args)
    want_mean, want_var = gaussian_cfg_map(*args, guidance, sampler)
    # the same float64 operations in a different order: agreement to 1e-10 relative
    np.testing.assert_allclose(got_mean, want_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_var, want_var, rtol=1e-10, atol=1e-14)
