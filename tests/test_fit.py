"""`qtrait fit` with the breeder model: recovery on a simulated chain, saved provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run

pytest.importorskip("pymc")

TRUTH = {"a": dict(lam=0.8, gamma=0.05, v_mut=0.1), "b": dict(lam=0.7, gamma=-0.03,
                                                                v_mut=0.2)}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from qtrait.cli.main import main

    traits = tuple(TraitTruth(k, m_uncond=-1.0 if k == "a" else 1.0, **v)
                   for k, v in TRUTH.items())
    truth = ChainTruth(traits=traits, model="breeder", generations=12, images=500,
                       probe_w1=0, probe_uncond=0, seed=1)
    run = write_simulated_run(tmp_path_factory.mktemp("fit") / "breeder", truth)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["fit", str(run), "--chains", "2", "--draws", "500", "--tune", "700",
                     "--target-accept", "0.95", "--seed", "3", "--json"])
    assert code == 0
    return run, json.loads(buf.getvalue())


def test_fit_summary_table(fitted):
    """Every reported parameter of every cell is in the table, as an ordered interval.
    (Recovery is tested statistically, over 20 seeds, in tests/models/test_recovery.py.)"""
    _, out = fitted
    params = {p["parameter"]: p for p in out["parameters"]}
    for trait in TRUTH:
        for name in ("lambda", "gamma", "v_mut", "v_star"):
            p = params[f"{name}[cell=all/{trait}]"]
            assert p["lo90"] <= p["median"] <= p["hi90"], p
    # the learning noise: one per trait (pooled like V_m), each non-negative
    noise = [p for name, p in params.items() if name.startswith("sigma_learn[trait=")]
    assert len(noise) == len(TRUTH) and all(p["lo90"] >= 0 for p in noise), noise
    assert params["sigma_learn_scale"]["lo90"] >= 0


def test_fit_saves_posterior_with_provenance(fitted):
    import arviz as az

    run, out = fitted
    d = out["diagnostics"]
    assert set(d) == {"rhat_max", "ess_bulk_min", "ess_tail_min", "divergences",
                      "ebfmi_min", "ok"}
    # the verdict and the warnings say the same thing: ok exactly when nothing failed
    assert d["ok"] == (out["warnings"] == [])
    assert isinstance(out["warnings"], list) and out["excluded_traits"] == []
    idata = az.from_netcdf(out["posterior"])
    attrs = idata.posterior.attrs
    assert attrs["model"] == "breeder" and attrs["run_id"] == "breeder"
    assert attrs["config_hash"] == out["config_hash"] and int(attrs["seed"]) == 3
    assert {"pymc", "nutpie"} <= set(json.loads(attrs["package_versions"]))
    # one pointwise log-likelihood per (generation, set, concept, trait) observed
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "obs")
    assert sorted(set(ll["obs_generation"].values)) == list(range(1, 12))
    assert set(ll["obs_set"].values) == {"guided"} and ll.sizes["obs"] == 11 * 2
    assert np.isfinite(ll.values).all()
    # the fit wrote only into fits/ and the run is still valid
    assert open_run(run).generations == list(range(12))


def test_fit_errors(cli, tiny_run):
    res = cli("fit", tiny_run, "--model", "nope")
    assert res.code == 2 and "unknown model 'nope'; available: breeder, tilt, exact, hier" in res.err
    res = cli("fit", tiny_run, "--generations", "1:3")
    assert res.code == 2 and "a fit needs generation 0" in res.err
    res = cli("fit", tiny_run, "--target-accept", "1.5")
    assert res.code == 2 and "--target-accept" in res.err


_DRAWS_HASH = """
import hashlib, sys
import numpy as np
from qtrait.fit import SamplerSettings, fit
from qtrait.rundir import open_run
for seed in (3, 4):   # the second fit reuses the compiled model
    post = fit(open_run(sys.argv[1]), "breeder", SamplerSettings(chains=2, draws=60,
               tune=60, seed=seed), save=False).idata.posterior
    h = hashlib.sha256()
    for name in sorted(post.data_vars):
        h.update(np.ascontiguousarray(post[name].values).tobytes())
    print(h.hexdigest())
"""


def test_the_same_seed_gives_the_same_draws_in_another_process(tmp_path):
    # `--seed`'s promise (docs/cli.md): a fit in a new process draws bit for bit what an
    # earlier process drew with the same seed and settings (seeds 3 and 4), and another
    # seed draws otherwise (so the hash sees the draws). The first process compiles the
    # model graph into an empty PyTensor/numba disk cache of its own and the next two link
    # it from there: with numba's fast-math flags on, that first fit drew otherwise
    # (qtrait.fit.NUMBA_FASTMATH; docs/models.md 7, "Reproducibility"), so it is compared too.
    import os
    import subprocess
    import sys

    traits = tuple(TraitTruth(k, **v) for k, v in TRUTH.items())
    run = write_simulated_run(tmp_path / "r", ChainTruth(
        traits=traits, model="breeder", generations=5, images=200, seed=2))
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'cache'}"}

    def draws_hashes() -> list[str]:
        out = subprocess.run([sys.executable, "-c", _DRAWS_HASH, str(run)], env=env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()[-2:]

    cold = draws_hashes()
    assert (tmp_path / "cache" / "numba").is_dir()   # the cold process filled the cache
    first, second = draws_hashes(), draws_hashes()
    assert cold == first == second
    assert first[0] != first[1]
