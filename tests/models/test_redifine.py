"""`qtrait compare BASELINE MITIGATED`: the ReDiFine check on a simulated pair where the
mitigated chain's unconditional branch adapts (rho = 0.6): predictions 1 and 2 must hold
with high probability, and the zero-shot theory must predict effects of the same sign."""

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


def test_redifine_check(cli, pair):
    base, mit = pair
    res = cli("compare", base, mit, "--chains", "2", "--draws", "400", "--tune", "400",
              "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    rows = {r["prediction"]: r for r in out["predictions"]}
    assert set(rows) == {1, 2, 3, 4}
    assert 0.3 < out["rho"] < 0.9          # measured from the mitigated run's probes
    for no in (1, 2):
        r = rows[no]
        assert r["p_direction"] > 0.9 and r["verdict"] == "yes", r
        assert r["measured_effect"] < 0 and r["predicted_effect"] < 0, r
        assert len(r["per_trait"]) == 2
    assert out["per_trait_threshold"] == pytest.approx(0.95)
    res = cli("compare", base, mit, "--rho", "2")
    assert res.code == 2 and "--rho must be in [0, 1]" in res.err


def test_redifine_check_with_assumed_theory(cli, pair, monkeypatch):
    """--h2 with --rho: the theory column assumes them, and only breeder is fitted."""
    import qtrait.fit as fitmod

    models = []
    original = fitmod.fit

    def recording(runs, model="breeder", *args, **kwargs):
        models.append(model)
        return original(runs, model, *args, **kwargs)

    monkeypatch.setattr(fitmod, "fit", recording)
    base, mit = pair
    res = cli("compare", base, mit, "--chains", "2", "--draws", "300", "--tune", "300",
              "--h2", "0.9", "--rho", "0.6", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert models == ["breeder", "breeder"]
    assert out["rho"] == 0.6
    rows = {r["prediction"]: r for r in out["predictions"]}
    # the truth is h2 = 0.9, rho = 0.6: the assumed theory predicts the measured signs
    for no in (1, 2):
        assert rows[no]["predicted_effect"] < 0 and rows[no]["measured_effect"] < 0, rows[no]
    res = cli("compare", base, mit, "--h2", "1.5")
    assert res.code == 2 and "--h2 must be in [0, 1]" in res.err
