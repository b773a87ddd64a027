"""Forecasting the collapse horizon from the first K generations, against naive baselines.

Superseded by analyses/benchmark (docs/results.md section 4): its committed records were
made with the earlier run-level rule (the first digit to cross, at face value) on short
300-image chains, where 82 of 84 real forecasts were trivial. The code runs with the
current definition (docs/theory.md 3.1) if its records are deleted.

For K in ``from_generations``, fit generations 0..K-1, forecast the run horizon
(:func:`qtrait.forecast.forecast`) and score it against the horizon observed in the whole
run (:func:`qtrait.forecast.backtest`: 90% interval coverage, log score, absolute error),
beside the two naive baselines of :func:`qtrait.forecast.baseline_horizons` (a line and an
exponential through the total variance ratio of generations 0..K-1). Two sets of chains:

* **real**: every miniature chain of analyses/cfg_sweep and analyses/redifine_study
  (their trait axes; analyses/_minichains.py says why), breeder model. Most of them
  cross a criterion at generation 1, inside every forecast's window, so their
  forecasts are mostly trivially "observed";
* **simulated**: chains of :mod:`qtrait.simulate` (tilt model) with parameter ranges
  whose horizons mostly fall in 4..25, run for T_max + 1 generations, tilt model.

All errors are on the censored scale: a horizon beyond the last generation L a run shows
(or beyond T_max, for a forecast) counts as L + 1. Records go to ``real.jsonl`` and
``simulated.jsonl`` beside this file (a rerun resumes); ``--report`` only rewrites
results.md and the figure.

    nice -n 15 python analyses/forecasting/run.py
    python analyses/forecasting/run.py --report
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import _minichains as mc  # noqa: E402  (shared by the miniature-chain studies)
from _results import write_results  # noqa: E402

ROOT = HERE.parents[1]
REAL = HERE / "real.jsonl"
SIMULATED = HERE / "simulated.jsonl"
METHODS = ("model", "linear", "exponential")


def load_config() -> dict:
    return tomllib.loads((HERE / "config.toml").read_text())


def censor(t, last: int) -> int:
    """A horizon on the censored scale 1..last+1 (None or beyond ``last``: last + 1)."""
    return last + 1 if t is None or t > last else int(t)


def score_one(res, fc, run, crit, K: int) -> dict:
    """Backtest of one forecast, with the baselines' errors on the same censored scale."""
    from qtrait.scoring import backtest

    bt = backtest(fc, run, crit, ("linear", "exponential"))
    last = bt["last_generation"]
    run_row = bt["scores"][0]
    obs = run_row["observed"]
    o = censor(obs, last)
    preds = {"model": run_row["median"],
             **{m: b["median"] for m, b in bt["baselines"].items()}}
    return {
        "K": K, "last_generation": last, "observed": obs,
        "trivial": obs is not None and obs <= K - 1,
        "model": {k: run_row[k] for k in ("median", "lo90", "hi90", "covered", "log_score")},
        "baselines": bt["baselines"],
        "abs_error": {m: abs(censor(p, last) - o) for m, p in preds.items()},
        "traits": [{k: r[k] for k in ("horizon", "observed", "median", "covered",
                                      "log_score")} for r in bt["scores"][1:]],
        "diagnostics": {k: round(float(v), 4) for k, v in res.diagnostics.items()},
        "code": mc.code_state(),
    }


# --- real chains ------------------------------------------------------------------------------

def real_runs(cfg: dict) -> list[Path]:
    """Every complete miniature chain of the listed studies, once (symlinks resolved)."""
    seen, out = set(), []
    for folder in cfg["real"]["runs_from"]:
        for toml in sorted((ROOT / folder).glob("*.toml")):
            path = toml.with_suffix("")
            gens = tomllib.loads(toml.read_text())["generations"]
            if not mc.is_complete(path, gens) or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            out.append(path)
    return out


def run_real(cfg: dict, log=print) -> None:
    from qtrait.fit import SamplerSettings, fit
    from qtrait.forecast import forecast
    from qtrait.theory.horizon import Criteria

    crit = Criteria(**cfg["criteria"])
    r = cfg["real"]
    done = mc.read_records(REAL, "id")
    for path in real_runs(cfg):
        axes = mc.axes_view(path)
        for K in cfg["from_generations"]:
            rid = f"{path.name}_K{K}"
            if rid in done:
                continue
            t0 = time.perf_counter()
            settings = SamplerSettings(chains=r["chains"], draws=r["draws"], tune=r["tune"],
                                       seed=K)
            res = fit(axes, r["model"], settings, generations=slice(0, K), save=False)
            fc = forecast(res, axes, crit, seed=K)
            rec = {"id": rid, "run": path.name, "study": path.parent.parent.name,
                   **score_one(res, fc, axes, crit, K),
                   "seconds": round(time.perf_counter() - t0, 1)}
            mc.append_record(REAL, rec)
            log(f"{rid}: observed {rec['observed']}, forecast {rec['model']['median']} "
                f"[{rec['model']['lo90']}, {rec['model']['hi90']}], baselines "
                f"{rec['baselines']} ({rec['seconds']:.0f} s)")


# --- simulated chains -------------------------------------------------------------------------

def draw_truth(cfg: dict, i: int):
    """The i-th simulated chain's truth (deterministic in (seed, i)); redrawn while the
    CFG tilt stops existing within the simulated generations."""
    from qtrait.simulate import ChainTruth, TraitTruth, simulate_tables, true_horizon
    from qtrait.theory.horizon import Criteria
    from qtrait.theory.schedules import GuidanceSchedule

    s = cfg["simulated"]
    crit = Criteria(**cfg["criteria"])
    rng = np.random.default_rng([s["seed"], i])
    while True:
        traits = tuple(TraitTruth(
            f"trait_{k}", h2=float(rng.uniform(*s["h2"])), v_mut=float(rng.uniform(*s["v_mut"])),
            m_base=float(rng.normal(0, s["m_base_sd"])),
            v_base=float(np.exp(rng.normal(0, s["log_v_base_sd"]))),
            m_uncond=float(rng.normal(0, s["m_uncond_sd"])),
            v_uncond=float(rng.uniform(*s["v_uncond"])),
            learn_sd=s["learn_sd"], learn_sd_logvar=s["learn_sd_logvar"])
            for k in range(s["traits"]))
        truth = ChainTruth(traits=traits, model=s["model"], generations=crit.t_max + 1,
                           images=s["images"], probe_w1=s["probe_w1"],
                           probe_uncond=s["probe_uncond"],
                           guidance=GuidanceSchedule("constant", s["cfg_scale"]),
                           rho=float(rng.uniform(*s["rho"])), p_drop=s["p_drop"],
                           criteria=crit, seed=int(rng.integers(2 ** 31)))
        try:
            _, latent = simulate_tables(truth)
        except ValueError:      # the tilt stopped existing
            continue
        return truth, true_horizon(truth, latent)


def run_simulated(cfg: dict, log=print) -> None:
    from qtrait.fit import SamplerSettings, fit
    from qtrait.forecast import forecast
    from qtrait.rundir import open_run
    from qtrait.simulate import write_simulated_run
    from qtrait.theory.horizon import Criteria

    s = cfg["simulated"]
    crit = Criteria(**cfg["criteria"])
    done = mc.read_records(SIMULATED, "id")
    work = Path(tempfile.mkdtemp(prefix="qtrait_forecasting_"))
    try:
        # K outermost: one compiled tilt per K, reused by every chain
        for K in cfg["from_generations"]:
            for i in range(s["chains"]):
                rid = f"sim{i:03d}_K{K}"
                if rid in done:
                    continue
                t0 = time.perf_counter()
                truth, horizon = draw_truth(cfg, i)
                path = write_simulated_run(work / f"chain_{i:03d}_{K}", truth)
                run = open_run(path)
                settings = SamplerSettings(chains=s["chains_per_fit"], draws=s["draws"],
                                           tune=s["tune"], target_accept=s["target_accept"],
                                           seed=i)
                res = fit(run, s["model"], settings, generations=slice(0, K), save=False)
                fc = forecast(res, run, crit, seed=i)
                rec = {"id": rid, "chain": i, "rho": truth.rho,
                       "h2": [t.h2 for t in truth.traits],
                       "v_mut": [t.v_mut for t in truth.traits],
                       "latent_t_star": horizon["t_star"], "latent_reason": horizon["reason"],
                       **score_one(res, fc, run, crit, K),
                       "seconds": round(time.perf_counter() - t0, 1)}
                shutil.rmtree(path)
                mc.append_record(SIMULATED, rec)
                log(f"{rid}: observed {rec['observed']} (latent {rec['latent_t_star']}), "
                    f"forecast {rec['model']['median']} [{rec['model']['lo90']}, "
                    f"{rec['model']['hi90']}] ({rec['seconds']:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- report -----------------------------------------------------------------------------------

def summarize(records: list[dict], K: int, nontrivial: bool) -> dict | None:
    rs = [r for r in records if r["K"] == K and (not nontrivial or not r["trivial"])]
    if not rs:
        return None
    n = len(rs)
    k = sum(r["model"]["covered"] for r in rs)
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    err = {m: np.array([r["abs_error"][m] for r in rs]) for m in METHODS}
    width = [censor(r["model"]["hi90"], r["last_generation"])
             - censor(r["model"]["lo90"], r["last_generation"]) for r in rs]
    return {"n": n, "width": float(np.median(width)), "covered": k, "coverage": k / n, "ci95": (ci.low, ci.high),
            "log_score": float(np.mean([r["model"]["log_score"] for r in rs])),
            "meanae": {m: float(e.mean()) for m, e in err.items()},
            "medae": {m: float(np.median(e)) for m, e in err.items()},
            "exact": {m: float(np.mean(e == 0)) for m, e in err.items()},
            "trivial": sum(r["trivial"] for r in rs)}


def table(records: list[dict], Ks, label: str) -> list[str]:
    lines = ["| chains | K | n | trivial | coverage of 90% (95% CI) | median width of 90% "
             "| mean log score | method | mean abs. error | median abs. error | exact |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for subset, nontrivial in (("all", False), ("non-trivial", True)):
        for K in Ks:
            s = summarize(records, K, nontrivial)
            if s is None:
                lines.append(f"| {label}, {subset} | {K} | 0 | | | | | | | | |")
                continue
            for j, m in enumerate(METHODS):
                head = (f"| {label}, {subset} | {K} | {s['n']} | {s['trivial']} | "
                        f"{s['coverage']:.2f} ({s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}) | "
                        f"{s['width']:.0f} | {s['log_score']:.2f} |") if j == 0 \
                    else "| | | | | | | |"
                lines.append(f"{head} {m} | {s['meanae'][m]:.2f} | {s['medae'][m]:.1f} | "
                             f"{s['exact'][m]:.2f} |")
    return lines


def figure(real: list[dict], sim: list[dict], cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ks = cfg["from_generations"]
    colours = {"model": "tab:blue", "linear": "tab:orange", "exponential": "tab:green"}
    fig, axs = plt.subplots(2, 2, figsize=(10, 7))
    for row, (label, recs) in enumerate((("real miniature chains", real),
                                         ("simulated chains", sim))):
        for style, nontrivial in (("-", False), ("--", True)):
            ss = [summarize(recs, K, nontrivial) for K in Ks]
            ks = [K for K, s in zip(Ks, ss) if s]
            ss = [s for s in ss if s]
            if not ss:
                continue
            for m in METHODS:
                axs[row, 0].plot(ks, [s["meanae"][m] for s in ss], style + "o",
                                 color=colours[m], ms=4,
                                 label=f"{m}, {'non-trivial' if nontrivial else 'all'}")
            cov = np.array([s["coverage"] for s in ss])
            lo = np.array([s["ci95"][0] for s in ss])
            hi = np.array([s["ci95"][1] for s in ss])
            axs[row, 1].errorbar(np.array(ks) + (0.05 if nontrivial else 0), cov,
                                 yerr=[cov - lo, hi - cov], fmt=style[0] + "o",
                                 color="tab:blue", capsize=3,
                                 label="non-trivial" if nontrivial else "all")
        axs[row, 0].set(title=f"{label}: mean absolute error (censored scale)",
                        xlabel="K (generations fitted)", ylabel="generations")
        axs[row, 1].axhline(0.9, color="k", lw=0.8)
        axs[row, 1].set(title=f"{label}: coverage of the model's 90% interval",
                        xlabel="K (generations fitted)", ylim=(0, 1.05))
        for ax in axs[row]:
            ax.set_xticks(Ks)
            ax.title.set_fontsize(9)
        for ax in axs[row]:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / cfg["figures"]["scores"], dpi=100)
    plt.close(fig)


def report(real: list[dict], sim: list[dict], cfg: dict, runtime: str) -> str:
    Ks = cfg["from_generations"]
    crit, s, r = cfg["criteria"], cfg["simulated"], cfg["real"]
    runs = sorted({x["run"] for x in real})
    obs = {x["run"]: x["observed"] for x in real}
    dist = {}
    for t in obs.values():
        dist[str(t)] = dist.get(str(t), 0) + 1
    sim_obs = {x["chain"]: (x["observed"], x["last_generation"]) for x in sim}
    t_sim = np.array([censor(t, last) for t, last in sim_obs.values()])
    lat = np.array([censor(x["latent_t_star"], crit["t_max"]) for x in sim if x["K"] == Ks[0]])
    lines = [
        "# Forecasting the collapse horizon (generated by run.py; do not edit)", "",
        f"Forecasts from K = {Ks} generations (fit of generations 0..K-1), criteria "
        f"{crit}; scored against the horizon observed in the whole run "
        "(`qtrait.forecast.backtest`). Methods: model = the posterior predictive median "
        "(and its 90% interval and log score); linear / exponential = the naive "
        "baselines (`qtrait.forecast.baseline_horizons`, variance collapse only). "
        "Errors on the censored scale (beyond the run's last generation L counts as "
        "L + 1). Trivial: the crossing is already inside the fitted generations (the "
        "forecast then reports it as observed, a point mass). Width: hi90 - lo90 on the "
        "censored scale.", "",
        "## Which chains", "",
        f"* **Real** (the CPU miniature chain): {len(runs)} chains of analyses/cfg_sweep "
        f"and analyses/redifine_study, generations 0..{real[0]['last_generation'] if real else '?'}"
        f", their 9 trait axes; model `{r['model']}` ({r['chains']} chains x {r['draws']} "
        f"draws after {r['tune']} tuning steps). Observed run horizons: {dist} "
        "('None' = no crossing by the last generation).",
        f"* **Simulated** (`qtrait.simulate`, known truth): {len(sim_obs)} chains of the "
        f"`{s['model']}` model at constant w = {s['cfg_scale']}, {s['traits']} traits, "
        f"{s['images']} images, probes {s['probe_w1']}/{s['probe_uncond']}, p_drop "
        f"{s['p_drop']}, rho U{tuple(s['rho'])}, h2 U{tuple(s['h2'])}, V_m "
        f"U{tuple(s['v_mut'])}, generations 0..{crit['t_max']}; model `{s['model']}` "
        f"({s['chains_per_fit']} chains x {s['draws']} draws after {s['tune']} tuning "
        "steps). Observed run horizons: "
        + (f"{int(np.sum(t_sim < 4))} below 4, {int(np.sum((t_sim >= 4) & (t_sim <= crit['t_max'])))} "
           f"in 4..{crit['t_max']}, {int(np.sum(t_sim > crit['t_max']))} none; quartiles "
           f"{np.percentile(t_sim, [25, 50, 75]).tolist()}" if len(t_sim) else "none yet")
        + (f". The generating (latent) moments' horizons: quartiles "
           f"{np.percentile(lat, [25, 50, 75]).tolist()} (not used for scoring here; "
           "analyses/horizon_calibration scores against them)." if len(lat) else "."), "",
        "## Scores", "",
        *table(real, Ks, "real"), "", *table(sim, Ks, "simulated"), "",
        f"Figure: `{cfg['figures']['scores']}`.", ""]
    if real:
        per = [t for x in real for t in x["traits"] if not (t["observed"] is not None and
                                                             t["observed"] <= x["K"] - 1)]
        lines += ["Per-trait horizons of the real chains (the 9 axes, model only; the "
                  "baselines forecast the run's total variance): non-trivial forecasts "
                  f"{len(per)}, 90% coverage "
                  f"{np.mean([t['covered'] for t in per]) if per else float('nan'):.2f}, "
                  "mean log score "
                  f"{np.mean([t['log_score'] for t in per]) if per else float('nan'):.2f}.",
                  ""]
        diag = [x["diagnostics"] for x in real]
        lines += [f"Real-chain fits: max R-hat {max(d['rhat_max'] for d in diag):.3f}, "
                  f"with divergences {sum(d['divergences'] > 0 for d in diag)} of "
                  f"{len(diag)}.", ""]
    if sim:
        diag = [x["diagnostics"] for x in sim]
        lines += [f"Simulated-chain fits: max R-hat {max(d['rhat_max'] for d in diag):.3f}, "
                  f"with divergences {sum(d['divergences'] > 0 for d in diag)} of "
                  f"{len(diag)}.", ""]
    codes = sorted({x.get("code", "not recorded") for x in real + sim})
    lines += [f"qtrait code of the fits (commit): {', '.join(codes)}.", "", runtime, ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", action="store_true", help="only rewrite results.md and figure")
    ap.add_argument("--only", choices=["real", "simulated"], help="run one set of chains")
    a = ap.parse_args(argv)
    cfg = load_config()
    t0 = time.perf_counter()
    log = lambda m: print(m, flush=True)  # noqa: E731
    if not a.report:
        if a.only in (None, "simulated"):
            run_simulated(cfg, log)
        if a.only in (None, "real"):
            run_real(cfg, log)
    Ks = set(cfg["from_generations"])
    real = [x for x in mc.read_records(REAL, "id").values() if x["K"] in Ks]
    sim = [x for x in mc.read_records(SIMULATED, "id").values()
           if x["K"] in Ks and x["chain"] < cfg["simulated"]["chains"]]
    secs = {k: [x["seconds"] for x in v] for k, v in (("real", real), ("simulated", sim))}
    runtime = (f"Machine: {mc.software()}; the 2-core development machine, shared with "
               "other jobs (`nice -n 15`). Fit + forecast + backtest: " + "; ".join(
                   f"{k} median {np.median(v):.1f} s each, total {sum(v) / 60:.0f} min"
                   for k, v in secs.items() if v)
               + " (compilations included: one per K and model).")
    if not a.report:
        runtime += f" This run: {(time.perf_counter() - t0) / 60:.0f} min wall."
    figure(real, sim, cfg)
    text = report(real, sim, cfg, runtime)
    write_results(HERE, text)
    print(text)


if __name__ == "__main__":
    main()
