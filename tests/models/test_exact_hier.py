"""The exact model's likelihood is the theory's map; hier recovers design coefficients."""

from __future__ import annotations

import numpy as np
import pytest

from qtrait.errors import QtraitError
from qtrait.fit import SamplerSettings, fit
from qtrait.models import chain_data, fit_data, get_spec
from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from qtrait.theory.generation import Generation0, MapParams, generation0_probes, generation_step
from qtrait.theory.schedules import GuidanceSchedule, Sampler

pytest.importorskip("nutpie")


def sim_run(path, model="exact", anchor="base", guidance=GuidanceSchedule("linear", 4.0),
            generations=4, seed=0):
    traits = tuple(TraitTruth(f"t{k}", h2=0.9, v_mut=0.02, m_uncond=-1.0, v_uncond=2.0)
                   for k in range(2))
    truth = ChainTruth(traits=traits, model=model, generations=generations, images=200,
                       probe_w1=50, probe_uncond=50, guidance=guidance, anchor=anchor,
                       sampler=Sampler("ddim", 8), concepts=("a", "b"), seed=seed)
    return open_run(write_simulated_run(path, truth))


@pytest.mark.parametrize("anchor", ["base", "previous"])
def test_exact_model_trajectories_equal_the_theory_map(tmp_path, anchor):
    """The model's deterministic guided and probe moments, at arbitrary parameter values,
    equal qtrait.theory's generation_step fed the same observed moments, to 1e-8."""
    import pymc as pm  # noqa: F401

    cd = chain_data([fit_data(sim_run(tmp_path / "r", anchor=anchor))])
    spec = get_spec("exact")
    model = spec.build(cd)
    G, J = cd.G, cd.J
    rng = np.random.default_rng(0)
    z = {k: rng.normal(size=J) for k in ("h2", "kappa", "vm")}
    e_m, e_v = rng.normal(size=(G, J)), rng.normal(size=(G, J))
    m_b, lv_b = rng.normal(0, 0.3, J), rng.normal(0, 0.2, J)
    m_u, lv_u = rng.normal(-1, 0.3, J), rng.normal(0.7, 0.2, J)
    point = model.initial_point()
    point.update({"logit_h2_mu": 1.0, "logit_h2_sd_log__": np.log(0.5), "logit_h2_z": z["h2"],
                  "log_kappa_mu": 0.2, "log_kappa_sd_log__": np.log(0.3),
                  "log_kappa_z": z["kappa"], "v_mut_scale_log__": np.log(0.05),
                  "v_mut_z_log__": np.log(np.abs(z["vm"])), "m_base": m_b, "log_v_base": lv_b,
                  "m_uncond": m_u, "log_v_uncond": lv_u, "sigma_learn_log__": np.log(0.05),
                  "tau_log__": np.log(0.1), "learn_z_mean": e_m, "learn_z_logvar": e_v})
    names = ["guided_mean", "guided_var", "learned_mean", "learned_var"]
    import pytensor

    outs = model.replace_rvs_by_values([model[n] for n in names])
    f = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    got = dict(zip(names, f(*[point[v.name] for v in model.value_vars])))
    h2 = 1 / (1 + np.exp(-(1.0 + 0.5 * z["h2"])))
    kappa = np.exp(0.2 + 0.3 * z["kappa"])
    guidance, sampler = spec.schedule(cd)
    params = MapParams(model="exact", h2=h2, anchor=anchor, guidance=guidance, sampler=sampler,
                       v_mut=0.05 * np.abs(z["vm"]), gain=kappa)
    g0 = Generation0.of(mean0=np.zeros(J), var0=np.ones(J), m_base=m_b, v_base=np.exp(lv_b),
                        m_uncond=m_u, v_uncond=np.exp(lv_u))
    g = cd.sets["guided"]
    prev = (m_b, np.exp(lv_b))
    for t in range(1, G):
        r = generation_step(g.mean[t - 1], g.var[t - 1], prev, g0, params,
                            (0.05 * e_m[t], 0.1 * e_v[t]))
        for key, want in (("guided_mean", r.guided_mean), ("guided_var", r.guided_var),
                          ("learned_mean", r.learned_mean), ("learned_var", r.learned_var)):
            np.testing.assert_allclose(got[key][t], want, rtol=1e-8, atol=1e-10,
                                       err_msg=f"{key} at generation {t}")
        prev = (r.learned_mean, r.learned_var)
    # generation 0: the base model, whose probes go through the same map at w = 1
    (w1m, w1v), _ = generation0_probes(g0, params)
    assert np.isfinite(w1m).all() and np.all(w1v < np.exp(lv_b))  # the sampler loses variance


def test_hier_recovers_design_coefficients(tmp_path):
    """8 breeder chains at 4 CFG scales x 2 seeds, with log lambda and gamma linear in w:
    the 98% intervals of both slopes contain the truth, and the 90% intervals exclude 0.

    One design, so a containment check fails at the interval's miss rate; 98% keeps that
    at about 2% (a 90% interval missed on another machine, whose nutpie draws differ).
    Without an unconditional probe (the simulator writes none for the breeder) each
    run's gamma is identified only by the curvature of its mean trajectory, so 10
    generations; on 6 seed sets the 90% intervals of b_gamma were about 0.04 wide, all
    covering 0.025 and all above 0."""
    a_ll, b_ll, a_g, b_g = np.log(0.75), -0.06, 0.02, 0.025
    runs = []
    for i, w in enumerate([2.0, 4.0, 6.0, 8.0] * 2):
        lam = float(np.exp(a_ll + b_ll * (w - 5.0)))
        gamma = a_g + b_g * (w - 5.0)
        traits = tuple(TraitTruth(f"t{k}", lam=lam, gamma=gamma, v_mut=0.05,
                                  m_uncond=-1.0 if k else 1.0) for k in range(2))
        truth = ChainTruth(traits=traits, model="breeder", generations=10, images=500,
                           probe_w1=0, probe_uncond=0, guidance=GuidanceSchedule("constant", w),
                           seed=10 + i)
        runs.append(open_run(write_simulated_run(tmp_path / f"h{i}", truth)))
    result = fit(runs, "hier", SamplerSettings(chains=2, draws=600, tune=800,
                                               target_accept=0.95), save=False)
    post = result.idata.posterior
    for name, true in (("b_log_lambda", b_ll), ("b_gamma", b_g)):
        v = post[name].sel(covariate="cfg_scale").values.ravel()
        lo, hi = np.quantile(v, [0.01, 0.99])
        assert lo <= true <= hi, (name, lo, hi, true)
        lo, hi = np.quantile(v, [0.05, 0.95])
        assert hi < 0 if true < 0 else lo > 0, (name, lo, hi)


def test_hier_refuses_a_single_run(tmp_path, cli):
    run = sim_run(tmp_path / "one", model="breeder", guidance=GuidanceSchedule("constant", 3.0))
    res = cli("fit", run.root, "--model", "hier")
    assert res.code == 2 and "needs several runs" in res.err and "Traceback" not in res.err
    with pytest.raises(QtraitError, match="needs several runs"):
        get_spec("hier").check(chain_data([fit_data(run)]))


def test_tilt_refuses_schedule_and_missing_probes(tmp_path, cli):
    run = sim_run(tmp_path / "sched")
    res = cli("fit", run.root, "--model", "tilt")
    assert res.code == 2 and "use --model exact" in res.err
    b = sim_run(tmp_path / "noprobe", model="breeder", guidance=GuidanceSchedule("constant", 3.0))
    res = cli("fit", b.root, "--model", "tilt")
    assert res.code == 2 and "needs the probe sets" in res.err
