"""The exact Gaussian CFG sampler map against theory.md's table and against diffusers."""

from __future__ import annotations

import numpy as np
import pytest

from qtrait.theory.sampler import (gaussian_cfg_map, sampler_variance_factor,
                                   summarize_schedule)
from qtrait.theory.schedules import GuidanceSchedule, NoiseSchedule, Sampler

SPEC_SAMPLER = Sampler("ddim", 200, timestep_spacing="floor_linspace", prev="next")


@pytest.mark.parametrize("w,mean,var,digits", [(0.5, 0.58, 0.59, 2), (2.0, 1.49, 0.125, 3),
                                               (3.0, 1.71, 0.044, 3), (7.5, 1.76, 0.0004, 4)])
def test_reproduces_the_exact_cfg_column_of_theory_md(w, mean, var, digits):
    """To the digits the table gives (two decimals for the mean)."""
    got_mean, got_var = gaussian_cfg_map(1.0, 0.36, 0.0, 1.0, w, SPEC_SAMPLER)
    assert round(float(got_mean), 2) == mean
    assert round(float(got_var), digits) == var


@pytest.mark.parametrize("steps,factor", [(200, 0.975), (50, 0.90), (25, 0.81)])
def test_sampler_loses_variance_at_w1(steps, factor):
    s = Sampler("ddim", steps, timestep_spacing="floor_linspace", prev="next")
    got = sampler_variance_factor(s, 1.0, 0.36, 0.0, 1.0)
    assert round(got, 3 if steps == 200 else 2) == factor


def test_variance_loss_shrinks_with_more_steps():
    factors = [sampler_variance_factor(Sampler("ddim", n), 1.0, 0.36, 0.0, 1.0)
               for n in (10, 25, 50, 100, 250, 1000)]
    assert all(a < b for a, b in zip(factors, factors[1:]))
    assert factors[-1] > 0.99


def test_map_is_vectorised():
    w = np.array([1.0, 3.0, 7.5])
    mean, var = gaussian_cfg_map(np.array([[1.0], [0.5]]), 0.36, 0.0, 1.0, 3.0)
    assert mean.shape == (2, 1)
    one = gaussian_cfg_map(0.5, 0.36, 0.0, 1.0, 3.0)
    assert mean[1, 0] == pytest.approx(float(one[0]), abs=1e-14)
    means = [float(gaussian_cfg_map(1.0, 0.36, 0.0, 1.0, x)[0]) for x in w]
    assert means == sorted(means)  # stronger guidance, further from the uncond mean


def test_schedule_summary():
    constant = summarize_schedule(3.0, 1.0, 0.36, 0.0, 1.0)
    assert constant.w_eff == pytest.approx(3.0, abs=1e-6)
    assert constant.variance_ratio < 1 and constant.mean_shift > 0
    decaying = summarize_schedule(GuidanceSchedule("linear", 7.5, end=1.0),
                                  1.0, 0.36, 0.0, 1.0)
    full = summarize_schedule(7.5, 1.0, 0.36, 0.0, 1.0)
    assert 1.0 < decaying.w_eff < 7.5
    assert decaying.variance_ratio > full.variance_ratio  # weaker selection
    # the decaying schedule still exaggerates the mean (more than constant 7.5, which
    # saturates: most of its push happens at high noise, where both schedules agree)
    assert decaying.mean_shift > constant.mean_shift > 0


def test_guidance_schedule_values():
    g = GuidanceSchedule("linear", 5.0, end=1.0).values(5)
    np.testing.assert_allclose(g, [5, 4, 3, 2, 1])
    c = GuidanceSchedule("cosine", 5.0, end=1.0).values(3)
    np.testing.assert_allclose(c, [5, 3, 1])
    s = GuidanceSchedule("step", 5.0, until=0.5).values(5)
    np.testing.assert_allclose(s, [5, 5, 1, 1, 1])
    i = GuidanceSchedule("interval", 5.0, start=0.25, until=0.75).values(5)
    np.testing.assert_allclose(i, [1, 5, 5, 1, 1])
    f = GuidanceSchedule("custom", fn=lambda p: 2 + p).values(3)
    np.testing.assert_allclose(f, [2, 2.5, 3])
    with pytest.raises(ValueError, match="guidance schedule must be one of"):
        GuidanceSchedule("exponential")


def test_timesteps_match_diffusers_conventions():
    assert Sampler("ddim", 4, timestep_spacing="leading").timesteps().tolist() == \
        [750, 500, 250, 0]
    assert Sampler("ddim", 4, timestep_spacing="trailing").timesteps().tolist() == \
        [999, 749, 499, 249]
    assert Sampler("ddim", 4, timestep_spacing="linspace").timesteps().tolist() == \
        [999, 666, 333, 0]


# ---------------------------------------------------------------------------------------
# Monte Carlo reference: diffusers' own schedulers stepping Gaussian samples
# ---------------------------------------------------------------------------------------

CASES = [
    # scheduler, steps, spacing, offset, prediction, noise schedule, guidance
    ("ddim", 50, "leading", 0, "epsilon", NoiseSchedule(), GuidanceSchedule("constant", 3.0)),
    ("ddim", 20, "trailing", 0, "v_prediction", NoiseSchedule(),
     GuidanceSchedule("linear", 5.0, end=1.0)),
    ("ddim", 30, "leading", 1, "epsilon", NoiseSchedule.stable_diffusion(),
     GuidanceSchedule("step", 7.5, until=0.4)),
    ("ddpm", 50, "leading", 0, "epsilon", NoiseSchedule(),
     GuidanceSchedule("cosine", 4.0, end=1.0)),
    ("ddpm", 25, "linspace", 0, "v_prediction", NoiseSchedule.stable_diffusion(),
     GuidanceSchedule("constant", 0.5)),
]


def monte_carlo(torch, scheduler, guidance, m, u, mu, vu, n, seed):
    """Sample with diffusers' scheduler and an analytic Gaussian model (written from the
    posterior of x0 given x_t, independently of the map's affine algebra)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=gen, dtype=torch.float64)  # (batch, channels)
    ws = guidance.values(len(scheduler.timesteps))
    for t, w in zip(scheduler.timesteps, ws):
        ab = float(scheduler.alphas_cumprod[int(t)])

        def branch(mean, var):
            marg = ab * var + 1 - ab
            x0 = mean + np.sqrt(ab) * var * (x - np.sqrt(ab) * mean) / marg  # E[x0 | x_t]
            eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)                  # E[eps | x_t]
            if scheduler.config.prediction_type == "v_prediction":
                return np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0
            return eps

        out_c, out_u = branch(m, u), branch(mu, vu)
        out = out_u + float(w) * (out_c - out_u)
        kwargs = {"generator": gen} if hasattr(scheduler, "variance_type") else {}
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return float(x.mean()), float(x.var())


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[4]}-{c[6].kind}"
                                             for c in CASES])
def test_map_agrees_with_diffusers_schedulers(case):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    name, steps, spacing, offset, prediction, noise, guidance = case
    common = dict(num_train_timesteps=noise.num_train_timesteps, beta_start=noise.beta_start,
                  beta_end=noise.beta_end, beta_schedule=noise.beta_schedule,
                  prediction_type=prediction, clip_sample=False, timestep_spacing=spacing,
                  steps_offset=offset)
    if name == "ddim":
        sched = diffusers.DDIMScheduler(set_alpha_to_one=True, **common)
    else:
        sched = diffusers.DDPMScheduler(variance_type="fixed_small", **common)
    sched.set_timesteps(steps)
    m, u, mu, vu = 1.0, 0.36, 0.0, 1.0
    n = 200_000
    mc_mean, mc_var = monte_carlo(torch, sched, guidance, m, u, mu, vu, n, seed=1)
    sampler = Sampler(name, steps, noise, prediction, spacing, steps_offset=offset)
    mean, var = gaussian_cfg_map(m, u, mu, vu, guidance, sampler)
    # The samples are Gaussian: SE(mean) = sqrt(var/n), SE(var) = var sqrt(2/(n-1)).
    # 4.5 SEs: a false alarm has probability < 1e-5 per comparison; float32 alphas in
    # diffusers differ from the map's float64 ones by ~1e-7 relative, far below the SE.
    assert abs(mc_mean - float(mean)) < 4.5 * np.sqrt(float(var) / n)
    assert abs(mc_var - float(var)) < 4.5 * float(var) * np.sqrt(2 / (n - 1))


def test_exact_map_is_marked_invalid_where_it_would_run_away():
    # D_0 = base conditional N(1, u0), unconditional N(0, 1), w = 3, h2 = 1. Left alone,
    # the exact map from u0 = 2 (wider than the unconditional) widens the variance every
    # generation without bound; the guard marks it invalid where the guided score's end
    # precision w/u - (w - 1)/V_u turns negative (u > 1.5 here) and stops the trajectory
    from qtrait.theory.generation import Generation0, MapParams, exact_map_valid, predict
    from qtrait.theory.schedules import GuidanceSchedule, Sampler

    params = MapParams(model="exact", h2=1.0, guidance=GuidanceSchedule("constant", 3.0),
                       sampler=Sampler("ddim", 50))
    m, v = 1.0, 2.0
    for _ in range(15):                      # the unguarded iteration
        m, v = gaussian_cfg_map(m, v, 0.0, 1.0, 3.0, params.sampler)
    assert v > 1e6
    u = np.array([1.2, 1.49, 1.51, 2.0])
    np.testing.assert_array_equal(exact_map_valid(params, u, 1.0, params.guidance),
                                  [True, True, False, False])
    # from u0 = 1.3 (valid, but wider than the unconditional) the variance grows, and the
    # trajectory stops at the first generation whose learned variance passes 1.5
    g0 = Generation0.of(mean0=1.0, var0=1.3, m_base=1.0, v_base=1.3, m_uncond=0.0,
                        v_uncond=1.0)
    traj = predict(g0, params, 10)
    m, v, first = 1.0, 1.3, None
    for t in range(1, 11):                   # independent iteration: learned = last guided
        if v >= 1.5:
            first = t
            break
        m, v = gaussian_cfg_map(m, v, 0.0, 1.0, 3.0, params.sampler)
    assert first is not None and first >= 2
    assert traj["valid"][first - 1] and not traj["valid"][first]
    assert np.isnan(traj["guided_var"][first]) and np.isfinite(traj["guided_var"][first - 1])
