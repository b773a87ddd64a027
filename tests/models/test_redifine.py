"""`qtrait compare BASELINE MITIGATED`: the ReDiFine check on a simulated pair where the
mitigated chain's unconditional branch adapts (rho = 0.6): predictions 1 and 2 must hold
with high probability, rho is measured from the probes, and the zero-shot theory must
predict effects of the same sign; on simulated pairs without any effect, 'yes' is rare."""

from __future__ import annotations

import json

import pytest

from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from qtrait.theory.schedules import GuidanceSchedule

pytest.importorskip("nutpie")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pair")
    traits = tuple(TraitTruth(f"t{k}", h2=0.9, v_mut=0.01, m_uncond=-1.0, v_uncond=2.0)
                   for k in range(2))
    common = dict(traits=traits, model="tilt", generations=6, images=300, probe_w1=100,
                  probe_uncond=100, guidance=GuidanceSchedule("constant", 3.0))
    base = write_simulated_run(tmp_path / "base", ChainTruth(seed=1, **common))
    mit = write_simulated_run(tmp_path / "mit", ChainTruth(seed=2, p_drop=0.2, rho=0.6,
                                                           **common))
    return base, mit


def test_redifine_check(cli, pair, monkeypatch):
    """Defaults: rho measured from the probes, the theory column assumed (h2 = 1), and
    only breeder is fitted."""
    import qtrait.fit as fitmod

    models = []
    original = fitmod.fit

    def recording(runs, model="breeder", *args, **kwargs):
        models.append(model)
        return original(runs, model, *args, **kwargs)

    monkeypatch.setattr(fitmod, "fit", recording)
    base, mit = pair
    res = cli("compare", base, mit, "--chains", "2", "--draws", "400", "--tune", "400",
              "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert models == ["breeder", "breeder"]
    rows = {r["prediction"]: r for r in out["predictions"]}
    assert set(rows) == {1, 2, 3, 4}
    # the truth is 0.6; the moment estimator pools 2 traits x 5 generations of probes of
    # 100 images, whose sampling error is about 0.1
    assert out["rho_source"] == "probes" and 0.4 < out["rho"] < 0.8, out["rho"]
    for no in (1, 2):
        r = rows[no]
        assert r["p_direction"] > 0.95 and r["verdict"] == "yes", r
        assert r["measured_effect"] < 0 and r["predicted_effect"] < 0, r
        # where the model is the truth (a simulated tilt chain) the theory column is in
        # the measurement's units and within an order of magnitude of it
        assert 0.1 < r["predicted_effect"] / r["measured_effect"] < 10, r
        assert [t["trait"] for t in r["per_trait"]] == ["t0", "t1"]
        assert not r["trait_level"]          # 2 traits: the trait level is dropped
    res = cli("compare", base, mit, "--rho", "2")
    assert res.code == 2 and "--rho must be in [0, 1]" in res.err
    res = cli("compare", base, mit, "--h2", "1.5")
    assert res.code == 2 and "--h2 must be in [0, 1]" in res.err
    res = cli("compare", base, mit, "--theory", "guess")
    assert res.code == 2 and "--theory must be" in res.err


def test_redifine_check_with_fitted_theory(cli, pair):
    """--theory fitted: rho from the mitigated run's tilt fit, h2 from the baseline's."""
    base, mit = pair
    res = cli("compare", base, mit, "--chains", "2", "--draws", "300", "--tune", "300",
              "--theory", "fitted", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["rho_source"] == "fitted" and 0.3 < out["rho"] < 0.9
    assert out["theory"] == "the baseline's posterior h2 and V_m"
    rows = {r["prediction"]: r for r in out["predictions"]}
    for no in (1, 2):
        assert rows[no]["predicted_effect"] < 0 and rows[no]["measured_effect"] < 0, rows[no]


def test_no_effect_rarely_says_yes(tmp_path):
    """Pairs of simulated chains with the same design and truth (no effect of any kind):
    over 12 pairs x 4 predictions the check says 'yes' in at most 10% (the issue's bar;
    a calibrated check says it in about 5%, and 5 or more of 48 has probability 0.1 at
    that rate, so this bound is not met by chance alone)."""
    from qtrait.fit import SamplerSettings
    from qtrait.redifine import redifine_check
    from qtrait.rundir import open_run

    traits = tuple(TraitTruth(f"t{k}", h2=0.9, v_mut=0.05, m_uncond=-1.0, v_uncond=2.0)
                   for k in range(3))
    common = dict(traits=traits, model="tilt", generations=6, images=200, probe_w1=60,
                  probe_uncond=60, guidance=GuidanceSchedule("constant", 3.0),
                  concepts=("a", "b", "c"), trait_correlation=0.2)
    settings = SamplerSettings(chains=2, draws=300, tune=300)
    verdicts = []
    for k in range(12):
        runs = [open_run(write_simulated_run(tmp_path / f"p{k}_{i}",
                                             ChainTruth(seed=100 * k + i, **common)))
                for i in range(2)]
        out = redifine_check(*runs, settings, h2=0.9)
        verdicts += [r["verdict"] for r in out["predictions"]]
    assert len(verdicts) == 48
    assert sum(v == "yes" for v in verdicts) <= 4, verdicts
