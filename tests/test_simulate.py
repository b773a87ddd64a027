"""The simulator: deterministic, records the truth, and shows the theory's directions."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from qtrait.rundir import open_run
from qtrait.simulate import (ChainTruth, TraitTruth, simulate_tables, truth_from_config,
                             write_simulated_run)
from qtrait.theory.closed_forms import breeder_variance
from qtrait.theory.generation import MapParams, predict
from qtrait.theory.horizon import Criteria
from qtrait.theory.schedules import GuidanceSchedule, Sampler
from qtrait.theory.zeroshot import zero_shot

TRAIT = TraitTruth("z", h2=1.0, mean0=1.0, var0=0.36, m_base=1.0, v_base=0.36, m_uncond=0.0,
                   v_uncond=1.0)


def chain(**kw) -> ChainTruth:
    base = dict(traits=(TRAIT,), model="exact", generations=8, images=2000, probe_w1=400,
                probe_uncond=400, guidance=GuidanceSchedule("constant", 2.0),
                sampler=Sampler("ddim", 25), seed=3)
    base.update(kw)
    return ChainTruth(**base)


def guided_moments(tables):
    g = np.array([t["guided"]["z"].mean() for t in tables])
    v = np.array([t["guided"]["z"].var(ddof=1) for t in tables])
    return g, v


def test_simulation_is_deterministic_given_the_seed():
    a, la = simulate_tables(chain())
    b, lb = simulate_tables(chain())
    c, _ = simulate_tables(chain(seed=4))
    for ta, tb in zip(a, b):
        for s in ta:
            pd.testing.assert_frame_equal(ta[s], tb[s], check_exact=True)
    assert all(np.array_equal(la[k], lb[k]) for k in la)
    assert not a[1]["guided"].equals(c[1]["guided"])


@pytest.mark.parametrize("model", ["tilt", "exact"])
def test_high_cfg_shrinks_variance_and_exaggerates(model):
    """w > 1 with u < V_u: variance falls, the mean moves away from m_u = 0."""
    mean, var = guided_moments(simulate_tables(chain(model=model))[0])
    assert np.all(np.diff(var[:4]) < 0)
    assert mean[3] > mean[0] + 0.2  # m_u = 0 < mu_0 = 1: away means up


@pytest.mark.parametrize("model", ["tilt", "exact"])
def test_low_cfg_dilutes_toward_the_unconditional_mean(model):
    truth = chain(model=model, guidance=GuidanceSchedule("constant", 0.4), generations=12)
    tables, latent = simulate_tables(truth)
    mean, _ = guided_moments(tables)
    assert mean[6] < 0.5 * mean[0]           # halfway to m_u = 0 and beyond
    rec = write_and_read_truth(truth)
    # dilution is a per-trait criterion (the run's horizon pools variance and drift)
    per = rec["horizon"]["per_trait"][0]
    assert per["reason"] == "dilution" and per["t_star"] is not None


def write_and_read_truth(truth, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        run = open_run(write_simulated_run(Path(d) / "r", truth))
        return run.manifest["truth"]


def horizon(truth: ChainTruth) -> int:
    t = write_and_read_truth(truth)["horizon"]["t_star"]
    return truth.criteria.t_max + 1 if t is None else t


def test_condition_drop_and_decaying_schedule_lengthen_the_horizon():
    """Zero-shot (expected moments) and realised (simulated) horizons both lengthen."""
    crit = Criteria(t_max=30)
    base = chain(generations=31, guidance=GuidanceSchedule("constant", 1.3), criteria=crit,
                 images=1000)
    drop = replace(base, rho=0.6)
    sched = replace(base, guidance=GuidanceSchedule("linear", 1.3, end=1.0))
    g0 = base.generation0()
    zs = {name: zero_shot(g0, t.map_params(), crit).run_t_star
          for name, t in (("base", base), ("drop", drop), ("sched", sched))}
    assert zs["base"] < zs["drop"] and zs["base"] < zs["sched"]
    assert horizon(base) < horizon(drop) and horizon(base) < horizon(sched)


def test_mutation_gives_an_equilibrium():
    """h2 = 1, anchor = previous, w = 2: without mutation the variance collapses to 0;
    with V_m > 0 it settles at the map's fixed point V* > 0."""
    common = dict(model="tilt", anchor="previous", generations=40, images=4000,
                  guidance=GuidanceSchedule("constant", 2.0), probe_w1=0, probe_uncond=0)
    no_mut = chain(**common)
    mut = chain(**{**common, "traits": (replace(TRAIT, v_mut=0.1),)})
    _, v0 = guided_moments(simulate_tables(no_mut)[0])
    _, v1 = guided_moments(simulate_tables(mut)[0])
    assert v0[-1] < 1e-3
    # fixed point of V = 1 / (w/V - (w-1)/V_u) + V_m with w = 2, V_u = 1, V_m = 0.1
    traj = predict(mut.generation0(), mut.map_params(), 200)["guided_var"]
    v_star = traj[-1]
    assert abs(traj[-1] - traj[-2]) < 1e-10 and v_star > 0.1
    # the last 20 simulated generations fluctuate around V*: drift of 4000-image sets is
    # ~sqrt(2/4000) = 2% per generation; 10% covers the accumulated wander
    assert abs(v1[-20:].mean() / v_star - 1) < 0.10


def test_breeder_variance_closed_form_against_simulation():
    """E[V_t] of the breeder with drift equals the closed form (E[s2] = V is unbiased).

    200 chains of 200 images: the Monte Carlo SE of the mean variance is about
    V sqrt(2/199)/sqrt(200) = 0.7% of V; 4 SEs plus the compounding of earlier
    generations' noise stays under 5%."""
    trait = TraitTruth("z", lam=0.8, gamma=0.05, mean0=1.0, var0=1.0, m_uncond=0.0,
                       v_mut=0.1)
    sims = []
    for seed in range(200):
        t = ChainTruth(traits=(trait,), model="breeder", generations=8, images=200,
                       probe_w1=0, probe_uncond=0, seed=seed)
        sims.append(guided_moments(simulate_tables(t)[0])[1])
    mean_var = np.mean(sims, axis=0)
    closed = breeder_variance(0.8, 0.1, 1.0, np.arange(8))
    np.testing.assert_allclose(mean_var, closed, rtol=0.05)


def test_generation0_probes_come_from_the_base_model():
    truth = chain(traits=(replace(TRAIT, m_base=0.7, v_base=0.5),), model="tilt")
    tables, latent = simulate_tables(truth)
    w1 = tables[0]["probe_w1"]["z"]
    # 400 draws: SE of the mean 0.035, of the variance 0.035; 4 SE bands
    assert abs(w1.mean() - 0.7) < 0.15 and abs(w1.var() - 0.5) < 0.15
    assert latent["guided_mean"][0, 0, 0] == 1.0  # the real data's mean


def test_manifest_records_truth_and_horizon(tmp_path):
    truth = chain(generations=5)
    run = open_run(write_simulated_run(tmp_path / "sim", truth))
    rec = run.manifest["truth"]
    assert rec["model"] == "exact"
    assert rec["parameters"]["guidance"]["scale"] == 2.0
    assert np.array(rec["latent"]["guided_var"]).shape == (5, 1, 1)
    assert rec["horizon"]["criteria"] == Criteria().to_dict()
    assert rec["horizon"]["per_trait"][0]["trait"] == "z"
    assert run.design["cfg_scale"] == 2.0 and run.design["sampler"]["steps"] == 25
    json.dumps(run.manifest)


def test_correlated_traits():
    traits = tuple(replace(TRAIT, name=f"z{i}") for i in range(3))
    tables, _ = simulate_tables(chain(traits=traits, trait_correlation=0.6, images=4000,
                                      generations=1))
    r = np.corrcoef(tables[0]["guided"][["z0", "z1", "z2"]].to_numpy().T)
    # SE of a correlation of 0.6 from 4000 pairs is (1 - 0.36)/sqrt(4000) = 0.01
    assert np.all(np.abs(r[np.triu_indices(3, 1)] - 0.6) < 0.05)


def test_breeder_has_no_probes_and_invalid_configs_are_refused():
    tables, _ = simulate_tables(ChainTruth(traits=(TRAIT,), model="breeder", generations=2))
    assert set(tables[1]) == {"guided"}
    with pytest.raises(ValueError, match="no form for a guidance schedule"):
        ChainTruth(traits=(TRAIT,), model="tilt", guidance=GuidanceSchedule("linear", 3.0))
    with pytest.raises(ValueError, match="distinct names"):
        ChainTruth(traits=(TRAIT, TRAIT))
    wide = replace(TRAIT, v_base=3.0, var0=3.0)
    with pytest.raises(ValueError, match="the CFG tilt does not exist"):
        simulate_tables(ChainTruth(traits=(wide,), model="tilt",
                                   guidance=GuidanceSchedule("constant", 5.0)))


def test_truth_from_config():
    truth = truth_from_config({
        "model": "exact", "generations": 4, "cfg_scale": 5.0, "cfg_schedule": "cosine",
        "rho": 0.3, "concepts": ["a", "b"], "sampler": {"scheduler": "ddpm", "steps": 20},
        "criteria": {"q": 0.4}, "traits": [{"name": "x", "h2": 0.8}, {"name": "y"}]})
    assert truth.guidance.kind == "cosine" and truth.guidance.scale == 5.0
    assert truth.sampler.scheduler == "ddpm" and truth.criteria.q == 0.4
    assert [t.name for t in truth.traits] == ["x", "y"] and truth.concepts == ("a", "b")
    assert isinstance(truth.map_params(), MapParams)
