"""The textbook cases of model collapse (issue 13, "What it must show"): how the breeder
does on Gaussian refitting chains, with its default priors and with variants of them.

    python analyses/textbook/run.py            # fit what is not yet recorded, then report
    python analyses/textbook/run.py report     # rewrite results.md from the records

The chains come from :func:`qtrait.simulate.refit_chain_table` (a generator that shares
nothing with the models; tests/models/test_textbook.py checks it against the textbook
process): n = 20, 50, 200 images a generation, 3 traits, 15 generations, seeds 0-2, as
the issue asks and as the tests fit them (2 chains x 500 draws after 500 tuning, seed 0).

* Replace (fitted to the last generation only): all 16 generations; per cell, does
  lambda's 90% interval cover (n - 1)/n, and how wide is it.
* Accumulate (fitted to every sample so far): generations 0..4; P(no collapse within
  T_max = 50) under the tests' criteria (q = 0.5, d = 2).

Every fit's divergences and convergence verdict are recorded. Besides the fits, the
table "What the data say alone" gives, per Replace cell, the maximum-likelihood lambda of
the variance map on generations 2..15 with V_m free and with V_m = 0 (the Gamma law of
the sample variance, no priors): what a model that cannot say V_m = 0 has to work with.

Records go to records.jsonl (a rerun skips what is recorded).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _results import write_results  # noqa: E402

RECORDS = HERE / "records.jsonl"
SIZES = (20, 50, 200)
SEEDS = (0, 1, 2)
#: the issue's bars for the Replace cells and the Accumulate chains
COVER_BAR, WIDTH_BAR, P_BAR = 0.8, 0.3, 0.9


def variants() -> dict[str, tuple[dict, str]]:
    """name -> (the default priors changed: keys set (value) or removed (None), what the
    change is)."""
    from qtrait.models.breeder import (LEVEL_SHARE_PRIOR, ONE_NOISE_PRIOR, SIGMA_TRAIT_PRIOR,
                                       V_MUT_SLAB_PRIOR)

    return {"default": ({}, "the defaults"),
            "V_m scale 0.1": ({"v_mut_scale": 0.1}, "v_mut_scale = 0.1"),
            "V_m scale 0.05": ({"v_mut_scale": 0.05}, "v_mut_scale = 0.05"),
            "level and share": (dict(LEVEL_SHARE_PRIOR), "breeder.LEVEL_SHARE_PRIOR"),
            "no shock, no first step": ({"gen_shock_sd": None, "first_step": None},
                                        "gen_shock_sd and first_step removed"),
            "spike at V_m = 0": (dict(V_MUT_SLAB_PRIOR), "breeder.V_MUT_SLAB_PRIOR"),
            "noise per trait": (dict(SIGMA_TRAIT_PRIOR), "breeder.SIGMA_TRAIT_PRIOR"),
            "one noise": ({"sigma_learn_pooled": None} | ONE_NOISE_PRIOR,
                          "sigma_learn_pooled removed, breeder.ONE_NOISE_PRIOR: the default "
                          "until 2026-12-07")}


def spec_of(name: str):
    from qtrait.models import get_spec

    spec = get_spec("breeder")
    pri = dict(spec.priors)
    for k, v in variants()[name][0].items():
        if v is None:
            pri.pop(k, None)
        else:
            pri[k] = v
    return replace(spec, priors=pri)


def records() -> list[dict]:
    return ([json.loads(x) for x in RECORDS.read_text().splitlines()]
            if RECORDS.exists() else [])


def fit_one(variant: str, mode: str, n: int, seed: int, root: Path) -> dict:
    """One chain, fitted as the tests fit it (module docstring)."""
    from qtrait.fit import SamplerSettings, fit
    from qtrait.forecast import forecast
    from qtrait.simulate import write_refit_run
    from qtrait.theory.horizon import Criteria

    settings = SamplerSettings(chains=2, draws=500, tune=500, seed=0)
    run = write_refit_run(Path(tempfile.mkdtemp(dir=root)) / f"{mode}_{n}_{seed}", mode, n,
                          seed=seed)
    t0 = time.time()
    gens = slice(0, 5) if mode == "accumulate" else None
    res = fit(run, "breeder", settings, generations=gens, save=False, spec=spec_of(variant))
    rec = {"variant": variant, "mode": mode, "n": n, "seed": seed,
           "diagnostics": res.diagnostics}
    if mode == "replace":
        lam = res.idata.posterior["lambda"]
        q = lam.quantile([0.05, 0.5, 0.95], dim=("chain", "draw")).values
        rec["lambda_q05"], rec["lambda_q50"], rec["lambda_q95"] = (q[i].tolist()
                                                                    for i in range(3))
    else:
        crit = Criteria(q=0.5, d=2.0, t_max=50)
        rec["p_no_collapse"] = forecast(res, run, crit, seed=0).run.to_dict()["p_no_collapse"]
    rec["seconds"] = round(time.time() - t0, 1)
    return rec


def fit_all() -> None:
    done = {(r["variant"], r["mode"], r["n"], r["seed"]) for r in records()}
    todo = [(v, m, n, s) for v in variants() for m in ("replace", "accumulate")
            for n in SIZES for s in SEEDS if (v, m, n, s) not in done]
    with tempfile.TemporaryDirectory(prefix="qtrait-textbook-") as root:
        for i, key in enumerate(todo, 1):
            rec = fit_one(*key, Path(root))
            with RECORDS.open("a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            print(f"[{i}/{len(todo)}] {key}: {rec['diagnostics']['divergences']} "
                  f"divergences ({rec['seconds']} s)", flush=True)


def mle_lambda(x: np.ndarray, y: np.ndarray, n: int, free_vm: bool) -> float:
    """Maximum likelihood lambda of E s2_t = lambda s2_{t-1} + V_m (V_m >= 0 free, or 0)
    under s2_t ~ Gamma(shape (n - 1)/2, mean lambda s2_{t-1} + V_m)."""
    from scipy.optimize import minimize

    k = (n - 1) / 2
    if not free_vm:
        return float(np.mean(y / x))

    def nll(p):
        m = np.exp(p[0]) * x + np.exp(p[1])
        return float(np.sum(k * np.log(m) + k * y / m))

    best = min((minimize(nll, [np.log(l0), np.log(v0)], method="Nelder-Mead")
                for l0 in (0.5, 0.9) for v0 in (1e-3, 0.1)), key=lambda r: r.fun)
    return float(np.exp(best.x[0]))


def data_table() -> list[str]:
    from qtrait.simulate import refit_chain_table

    out = ["## What the data say alone", "",
           "Per Replace chain size, over its 9 cells (3 seeds x 3 traits): the maximum-"
           "likelihood lambda of the variance map on generations 2..15 (generation 1 has "
           "its own factor in the default model), with V_m free and with V_m = 0; median "
           "[min, max], and how many cells fall below (n - 1)/n.", "",
           "| n | (n - 1)/n | V_m free: lambda | below | V_m = 0: lambda | below |",
           "|---|---|---|---|---|---|"]
    for n in SIZES:
        free, zero = [], []
        for seed in SEEDS:
            tab = refit_chain_table("replace", n, traits=3, generations=15, seed=seed)
            v = tab.groupby("generation")[["t0", "t1", "t2"]].var(ddof=1).to_numpy()
            for j in range(3):
                free.append(mle_lambda(v[1:-1, j], v[2:, j], n, True))
                zero.append(mle_lambda(v[1:-1, j], v[2:, j], n, False))
        truth = (n - 1) / n
        cells = [f"{np.median(a):.3f} [{np.min(a):.3f}, {np.max(a):.3f}] | "
                 f"{int(np.sum(np.array(a) < truth))}" for a in (free, zero)]
        out.append(f"| {n} | {truth:.3f} | {cells[0]} | {cells[1]} |")
    return out


def fits_table(recs: list[dict]) -> list[str]:
    out = ["## The breeder on the textbook chains", "",
           "Per prior variant: Replace, lambda's 90% interval covering (n - 1)/n over the "
           f"27 cells (bar >= {COVER_BAR:.0%}), its median width (bar <= {WIDTH_BAR}) and "
           "the divergent transitions of the 9 fits; Accumulate from generations 0..4, the "
           f"smallest P(no collapse within 50) over its 9 chains (bar >= {P_BAR}) and its "
           "divergences (bar: none anywhere). *Fits ok*: fits passing qtrait's convergence "
           "rule (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences).", "",
           "| priors | Replace cells covered | median width | Replace divergences (fits) | "
           "Accumulate min P | Accumulate divergences (fits) | fits ok | bars met |",
           "|---|---|---|---|---|---|---|---|"]
    for v, (_, what) in variants().items():
        rep = [r for r in recs if r["variant"] == v and r["mode"] == "replace"]
        acc = [r for r in recs if r["variant"] == v and r["mode"] == "accumulate"]
        if len(rep) < len(SIZES) * len(SEEDS) or len(acc) < len(SIZES) * len(SEEDS):
            continue
        hits, widths = [], []
        for r in rep:
            truth = (r["n"] - 1) / r["n"]
            lo, hi = np.array(r["lambda_q05"]), np.array(r["lambda_q95"])
            hits += list((lo <= truth) & (truth <= hi))
            widths += list(hi - lo)
        div = [sum(r["diagnostics"]["divergences"] for r in x) for x in (rep, acc)]
        nfit = [sum(r["diagnostics"]["divergences"] > 0 for r in x) for x in (rep, acc)]
        pmin = min(r["p_no_collapse"] for r in acc)
        ok = sum(bool(r["diagnostics"]["ok"]) for r in rep + acc)
        met = [np.mean(hits) >= COVER_BAR, np.median(widths) <= WIDTH_BAR,
               pmin >= P_BAR, sum(div) == 0]
        out.append(f"| {v} ({what}) | {sum(hits)}/{len(hits)} | {np.median(widths):.3f} | "
                   f"{div[0]} ({nfit[0]}) | {pmin:.3f} | {div[1]} ({nfit[1]}) | "
                   f"{ok}/{len(rep) + len(acc)} | {sum(met)} of 4 |")
    return out


def report() -> None:
    recs = records()
    secs = sum(r["seconds"] for r in recs)
    text = "\n".join(["# The textbook cases: Gaussian refitting chains", "",
                      "Generated by `python analyses/textbook/run.py` (module docstring: "
                      "the chains, the settings, the bars). Machine: "
                      f"{platform.machine()}, {platform.python_version()}; the "
                      f"{len(recs)} fits took {secs / 60:.1f} min of wall time.", ""]
                     + fits_table(recs) + [""] + data_table())
    write_results(HERE, text)


if __name__ == "__main__":
    if sys.argv[1:] != ["report"]:
        fit_all()
    report()
