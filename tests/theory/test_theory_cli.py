"""`qtrait simulate` and `qtrait theory` from the command line."""

from __future__ import annotations

import json

from qtrait.rundir import open_run
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from qtrait.theory.schedules import GuidanceSchedule, Sampler
from tests.helpers import SIM_RUN


def test_simulate_cli_writes_a_valid_run_with_truth(cli, tmp_path):
    out = tmp_path / "sim"
    res = cli("simulate", "--out", out, "--model", "exact", "--generations", "4",
              "--images", "50", "--traits", "2", "--h2", "0.9,0.8", "--cfg-scale", "3",
              "--cfg-schedule", "linear", "--concepts", "a,b", "--seed", "7", "--json")
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["model"] == "exact" and info["true_horizon"]["criteria"]["q"] == 0.5
    run = open_run(out)
    assert run.generations == [0, 1, 2, 3] and run.traits == ["trait_1", "trait_2"]
    assert run.design["cfg_schedule"] == "linear"
    assert [t["h2"] for t in run.manifest["truth"]["parameters"]["traits"]] == [0.9, 0.8]
    assert cli("validate", out).code == 0


def test_simulate_cli_from_config_and_errors(cli, tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text('model = "tilt"\ngenerations = 3\nimages = 20\ncfg_scale = 2.0\n'
                   '[[traits]]\nname = "x"\nh2 = 0.5\n')
    assert cli("simulate", "--out", tmp_path / "a", "--config", cfg).code == 0
    assert open_run(tmp_path / "a").manifest["truth"]["parameters"]["traits"][0]["h2"] == 0.5
    res = cli("simulate", "--out", tmp_path / "b", "--model", "tilt", "--cfg-schedule",
              "cosine")
    assert res.code == 2 and "no form for a guidance schedule" in res.err
    res = cli("simulate", "--out", tmp_path / "c", "--traits", "2", "--h2", "0.1,0.2,0.3")
    assert res.code == 2 and "one value or one per trait (2)" in res.err
    cfg.write_text("model = \"tilt\"\nbogus = 1\n")
    res = cli("simulate", "--out", tmp_path / "d", "--config", cfg)
    assert res.code == 2 and "bogus" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists()


def test_theory_horizon_json(cli):
    res = cli("theory", "horizon", "--cfg-scale", "3", "--model", "tilt", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    # tilt, h2 = 1, frozen branch: V_1 = 1/(3/0.36 - 2) = 0.158 < 0.5 * 0.36
    assert out["horizon"] == {"t_star": 1, "reason": "variance", "invalid_at": None}
    assert abs(out["trajectory"]["var"][1] - 1 / (3 / 0.36 - 2)) < 1e-12


def test_theory_horizon_lists_rho_when_condition_drop_is_planned(cli):
    res = cli("theory", "horizon", "--cfg-scale", "1.5", "--p-drop", "0.1", "--json")
    out = json.loads(res.out)
    assert out["rho_unknown"] is True
    assert [r["rho"] for r in out["by_rho"]] == [0.1, 0.25, 0.5, 0.75]
    res = cli("theory", "horizon", "--cfg-scale", "1.5", "--p-drop", "0.1")
    assert "effect rho is not known" in res.out and "rho = 0.75" in res.out


def test_theory_horizon_from_a_run(cli, tmp_path):
    res = cli("theory", "horizon", "--run", SIM_RUN, "--cfg-scale", "3", "--h2", "0.9",
              "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert {(t["concept"], t["trait"]) for t in out["traits"]} == {
        (c, t) for c in ("cat", "dog") for t in ("axis_1", "axis_2", "saturation")}
    truth = ChainTruth(traits=(TraitTruth("x"),), generations=2, probe_w1=0, probe_uncond=0,
                       guidance=GuidanceSchedule("constant", 2.0))
    write_simulated_run(tmp_path / "noprobe", truth)
    res = cli("theory", "horizon", "--run", tmp_path / "noprobe")
    assert res.code == 2 and "need the base model's probes" in res.err


def test_theory_sweep_and_cfg(cli):
    res = cli("theory", "sweep", "--cfg-scales", "1,3", "--schedules", "constant,linear",
              "--within", "5", "--json")
    rows = json.loads(res.out)["rows"]
    assert [(r["cfg_scale"], r["schedule"]) for r in rows] == [
        (1.0, "constant"), (3.0, "constant"), (1.0, "linear"), (3.0, "linear")]
    assert rows[1]["t_star"] <= rows[0]["t_star"]   # stronger guidance collapses sooner
    assert all(isinstance(r["collapses_within"], bool) for r in rows)
    res = cli("theory", "cfg", "--cfg-scales", "2", "--json")
    row = json.loads(res.out)["rows"][0]
    assert round(row["exact_mean"], 2) == 1.49 and round(row["tilt_mean"], 2) == 1.22
    res = cli("theory", "cfg", "--cfg-scales", "two")
    assert res.code == 2 and "comma-separated numbers" in res.err


def test_simulate_breeder_writes_a_valid_run(cli, tmp_path):
    out = tmp_path / "breeder"
    res = cli("simulate", "--out", out, "--model", "breeder", "--generations", "4",
              "--lambda", "0.7", "--mutation", "0.05", "--json")
    assert res.code == 0, res.err
    run = open_run(out)
    assert run.sets(1) == ["guided"]
    assert run.manifest["truth"]["latent"]["learned_mean"][1][0][0] is None  # undefined


def test_theory_horizon_takes_the_runs_sampler(cli, tmp_path):
    truth = ChainTruth(traits=(TraitTruth("x", m_base=1.0, v_base=0.36, mean0=1.0,
                                          var0=0.36, m_uncond=0.0, v_uncond=1.0),),
                       model="exact", generations=2, images=400, probe_w1=400,
                       probe_uncond=400, guidance=GuidanceSchedule("constant", 1.2),
                       sampler=Sampler("ddpm", 20))
    write_simulated_run(tmp_path / "ddpm", truth)
    a = json.loads(cli("theory", "horizon", "--run", tmp_path / "ddpm", "--json").out)
    b = json.loads(cli("theory", "horizon", "--run", tmp_path / "ddpm", "--sampler", "ddpm",
                       "--steps", "20", "--json").out)
    c = json.loads(cli("theory", "horizon", "--run", tmp_path / "ddpm", "--steps", "50",
                       "--json").out)
    assert a["design"]["sampler"].startswith("ddpm 20 steps")
    assert a["run_trajectory"] == b["run_trajectory"] != c["run_trajectory"]


def test_sweep_text_marks_censored_horizons(cli):
    res = cli("theory", "sweep", "--cfg-scales", "1,9", "--schedules", "constant",
              "--t-max", "5", "--steps", "200")
    lines = res.out.splitlines()
    assert ">5" in lines[1] and "no" in lines[1]
    assert lines[2].split()[2] == "1"


def test_theory_horizon_says_where_the_exact_map_is_invalid(cli):
    # a base conditional twice as wide as the unconditional at w = 3: invalid at once
    res = cli("theory", "horizon", "--cfg-scale", "3", "--var0", "2", "--v-uncond", "1",
              "--json")
    out = json.loads(res.out)
    assert out["horizon"]["invalid_at"] == 1 and out["trajectory"]["var"][1] is None
    res = cli("theory", "horizon", "--cfg-scale", "3", "--var0", "2", "--v-uncond", "1")
    assert "the exact map stops being valid at generation 1" in res.out
