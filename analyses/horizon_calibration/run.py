"""Calibration of the early-stopping horizon forecast (``qtrait predict``) on simulated
chains with known truth.

For each of ``chains`` simulated chains (CFG scale, h^2, V_m and rho drawn from the ranges
in config.toml), simulate T_max + 1 generations with :mod:`qtrait.simulate`, fit the model
on the first K generations (0..K-1), forecast the run horizon and score it against the
realised horizon: the first crossing of the simulated run's *observed* guided moments
(what a user measures, and what the forecast predicts; docs/models.md section 9), censored
at T_max. The crossing of the generating (latent) moments is recorded beside it.
Outcomes live on 1..T_max + 1, T_max + 1 meaning "no collapse within T_max" (as in
:class:`qtrait.forecast.HorizonDistribution`). Reported:

* coverage of the central 90% interval, with its Clopper-Pearson 95% interval. Horizons
  are integers, so the interval holds more than 90% of its own forecast (the "implied"
  coverage, reported beside it); the discrete analogue of a 90% interval is the
  randomized one, "the randomized PIT lies in [0.05, 0.95]", whose coverage is exactly
  0.9 under calibration (Czado, Gneiting and Held 2009), also reported with its interval;
* the randomized PIT histogram (u = F(t-1) + V (F(t) - F(t-1)), V ~ U(0, 1)) and a
  chi-square test of its uniformity;
* the absolute error of the forecast median against two practitioners' baselines
  (:func:`qtrait.forecast.baseline_horizons`: a least-squares line and a least-squares
  exponential through the total variance ratio of generations 0..K-1), all on the
  censored scale (no collapse counts as T_max + 1).

Per-chain records are appended to ``chains.jsonl`` beside this file as they finish (a
rerun resumes where it stopped); ``--report`` only rewrites results.md and the figure.

    python analyses/horizon_calibration/run.py            # ~25 min on 2 cores
    python analyses/horizon_calibration/run.py --report
"""

from __future__ import annotations

import argparse
import json
import platform
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
from _results import write_results  # noqa: E402  (shared by the analyses)
ROOT = HERE.parents[1]


def load_config() -> dict:
    return tomllib.loads((HERE / "config.toml").read_text())


# --- one chain --------------------------------------------------------------------------------

def draw_truth(cfg: dict, i: int):
    """The i-th chain's truth (deterministic in (seed, i)); redraws while the CFG tilt
    stops existing within the simulated generations. Returns (truth, tables-free latent
    horizon record, number of rejected draws)."""
    from qtrait.simulate import ChainTruth, TraitTruth, simulate_tables, true_horizon
    from qtrait.theory.horizon import Criteria
    from qtrait.theory.schedules import GuidanceSchedule

    rng = np.random.default_rng([cfg["seed"], i])
    crit = Criteria(**cfg["criteria"])
    rejected = 0
    while True:
        w = float(rng.choice(cfg["cfg_scales"]))
        rho = float(rng.uniform(*cfg["rho"]))
        traits = tuple(TraitTruth(
            f"trait_{k}", h2=float(rng.uniform(*cfg["h2"])),
            v_mut=float(rng.uniform(*cfg["v_mut"])),
            m_base=float(rng.normal(0, cfg["m_base_sd"])),
            v_base=float(np.exp(rng.normal(0, cfg["log_v_base_sd"]))),
            m_uncond=float(rng.normal(0, cfg["m_uncond_sd"])),
            v_uncond=float(rng.uniform(*cfg["v_uncond"])),
            learn_sd=cfg["learn_sd"], learn_sd_logvar=cfg["learn_sd_logvar"])
            for k in range(cfg["traits"]))
        truth = ChainTruth(traits=traits, model=cfg["model"], generations=crit.t_max + 1,
                           images=cfg["images"], probe_w1=cfg["probe_w1"],
                           probe_uncond=cfg["probe_uncond"],
                           guidance=GuidanceSchedule("constant", w), rho=rho,
                           p_drop=cfg["p_drop"], criteria=crit,
                           seed=int(rng.integers(2 ** 31)))
        try:
            _, latent = simulate_tables(truth)
        except ValueError:      # the tilt stopped existing: not a chain the model can run
            rejected += 1
            continue
        return truth, true_horizon(truth, latent), rejected


def randomized_pit(pmf: np.ndarray, t: int, rng: np.random.Generator) -> float:
    """Randomized PIT of outcome t (1-based, t_max + 1 = no collapse) under ``pmf``."""
    cdf = np.concatenate([[0.0], np.cumsum(pmf)])
    return float(cdf[t - 1] + rng.uniform() * (cdf[t] - cdf[t - 1]))


def observe_run(run, fc):
    """The observed statistics of all of ``run``'s generations on the forecast's traits."""
    from qtrait.forecast import observed_collapse

    return observed_collapse(run, list(fc.horizon_traits))["run"]


def run_chain(cfg: dict, i: int, workdir: Path) -> dict:
    """Simulate, fit, forecast and score chain i; a JSON-able record."""
    from qtrait.fit import SamplerSettings, fit
    from qtrait.baselines import baseline_forecasts
    from qtrait.forecast import forecast
    from qtrait.rundir.reader import open_run
    from qtrait.simulate import write_simulated_run
    from qtrait.theory.horizon import Criteria

    crit = Criteria(**cfg["criteria"])
    none = crit.t_max + 1
    K = cfg["from_generations"]
    truth, horizon, rejected = draw_truth(cfg, i)
    path = write_simulated_run(workdir / f"chain_{i:04d}", truth)
    t0 = time.perf_counter()
    settings = SamplerSettings(chains=cfg["sampler_chains"], draws=cfg["draws"],
                               tune=cfg["tune"], target_accept=cfg["target_accept"],
                               seed=i)
    run = open_run(path)
    res = fit(run, cfg["model"], settings, generations=slice(0, K), save=False)
    fc = forecast(res, run, crit, seed=i)
    seconds = time.perf_counter() - t0
    h = fc.run.to_dict()
    pmf = fc.run.pmf()
    t_star = horizon["t_star"]                      # latent (generating) moments
    # the target: the run's detected horizon on all its generations (theory.md 3.1)
    t_seen, _ = observe_run(run, fc).detected(crit)
    t_obs = none if t_seen is None else int(t_seen)
    ext = lambda t: none if t is None else int(t)  # noqa: E731
    lo, hi, med = ext(h["lo90"]), ext(h["hi90"]), ext(h["median"])
    rng = np.random.default_rng([cfg["seed"], i, 1])
    base = {m: d.to_dict()["median"] for m, d, _ in baseline_forecasts(
        fc.observed, run, crit, np.random.default_rng([cfg["seed"], i, 2]),
        ("linear", "exponential"))}
    shutil.rmtree(path)
    return {
        "chain": i, "cfg_scale": truth.cfg_scale, "rho": truth.rho,
        "h2": [t.h2 for t in truth.traits], "v_mut": [t.v_mut for t in truth.traits],
        "rejected_draws": rejected,
        "t_star_latent": t_star, "reason": horizon["reason"], "t_obs": t_obs,
        "observed_in_fit": fc.run.observed_at,
        "median": med, "lo90": lo, "hi90": hi, "p_no_collapse": h["p_no_collapse"],
        "covered": bool(lo <= t_obs <= hi),
        "pit": randomized_pit(pmf, t_obs, rng),
        "linear": ext(base["linear"]), "exponential": ext(base["exponential"]),
        "pmf": [round(float(p), 5) for p in pmf],
        "diagnostics": {k: round(float(v), 4) for k, v in res.diagnostics.items()},
        "seconds": round(seconds, 2),
    }


def run_chains(cfg: dict, indices, out: Path | None = None, log=print) -> list[dict]:
    """Records of the given chains, appended to ``out`` (JSON lines) as they finish;
    chains already in ``out`` are read, not rerun."""
    done = {}
    if out is not None and out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["chain"]] = r
    work = Path(tempfile.mkdtemp(prefix="qtrait_hcal_"))
    try:
        for i in indices:
            if i in done:
                continue
            t0 = time.perf_counter()
            r = run_chain(cfg, i, work)
            done[i] = r
            if out is not None:
                with out.open("a") as f:
                    f.write(json.dumps(r) + "\n")
            log(f"chain {i}: w={r['cfg_scale']} t*={r['t_obs']} (latent {r['t_star_latent']}) forecast {r['median']} "
                f"[{r['lo90']}, {r['hi90']}] covered={r['covered']} "
                f"({time.perf_counter() - t0:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [done[i] for i in indices]


# --- scores -----------------------------------------------------------------------------------

def summarize(records: list[dict], cfg: dict) -> dict:
    """Coverage with its 95% Clopper-Pearson interval, PIT uniformity and absolute errors,
    for all chains and for those whose crossing was not already in the fitted data."""
    K = cfg["from_generations"]
    out = {}
    subsets = {"all": records,
               f"t* >= {K}": [r for r in records if r["t_obs"] >= K]}
    for name, rs in subsets.items():
        n = len(rs)
        if not n:
            continue
        k = sum(r["covered"] for r in rs)
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        pit = np.array([r["pit"] for r in rs])
        counts = np.histogram(pit, bins=cfg["pit_bins"], range=(0, 1))[0]
        chi2 = stats.chisquare(counts)
        t = np.array([r["t_obs"] for r in rs])
        err = {m: np.abs(np.array([r[m] for r in rs]) - t)
               for m in ("median", "linear", "exponential")}
        # a discrete interval with inclusive ends holds >= 90% of its own forecast: the
        # coverage a calibrated forecast would have is that mass, averaged over chains
        implied = np.mean([sum(r["pmf"][r["lo90"] - 1:r["hi90"]]) for r in rs])
        # the randomized 90% interval: covered when the randomized PIT is in [0.05, 0.95]
        k_rand = int(sum(0.05 <= r["pit"] <= 0.95 for r in rs))
        ci_rand = stats.binomtest(k_rand, n).proportion_ci(0.95, method="exact")
        out[name] = {
            "n": n, "covered": k, "coverage": k / n, "ci95": (ci.low, ci.high),
            "implied": float(implied), "covered_rand": k_rand, "coverage_rand": k_rand / n,
            "ci95_rand": (ci_rand.low, ci_rand.high),
            "pit_counts": counts.tolist(), "pit_chi2": float(chi2.statistic),
            "pit_p": float(chi2.pvalue),
            "medae": {m: float(np.median(e)) for m, e in err.items()},
            "meanae": {m: float(np.mean(e)) for m, e in err.items()},
            "exact": {m: float(np.mean(e == 0)) for m, e in err.items()},
        }
    return out


def figure(records: list[dict], cfg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tmax = cfg["criteria"]["t_max"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    pit = np.array([r["pit"] for r in records])
    nb = cfg["pit_bins"]
    ax[0].hist(pit, bins=nb, range=(0, 1), color="tab:blue", edgecolor="white")
    n = len(pit)
    lo, hi = stats.binom.ppf([0.025, 0.975], n, 1 / nb)
    ax[0].axhspan(lo, hi, color="0.85", zorder=0, label="95% band (uniform)")
    ax[0].axhline(n / nb, color="k", lw=0.8)
    ax[0].set(xlabel="randomized PIT of the realised horizon", ylabel="chains",
              title=f"PIT, {n} chains, K = {cfg['from_generations']}")
    ax[0].legend(loc="upper center", fontsize=8)
    t = np.array([r["t_obs"] for r in records], float)
    jit = np.random.default_rng(0).uniform(-0.25, 0.25, len(t))
    med = np.array([r["median"] for r in records], float)
    lo90 = np.array([r["lo90"] for r in records], float)
    hi90 = np.array([r["hi90"] for r in records], float)
    cov = np.array([r["covered"] for r in records])
    for c, colour in ((True, "tab:blue"), (False, "tab:red")):
        m = cov == c
        ax[1].errorbar(t[m] + jit[m], med[m], yerr=[med[m] - lo90[m], hi90[m] - med[m]],
                       fmt="o", ms=3, lw=0.6, alpha=0.5, color=colour,
                       label="90% interval covers" if c else "misses")
    ax[1].plot([0, tmax + 1.5], [0, tmax + 1.5], "k", lw=0.8)
    ax[1].set(xlabel=f"realised horizon ({tmax + 1} = none by T_max = {tmax})",
              ylabel="forecast median and 90% interval",
              title="forecast vs realised run horizon")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(records: list[dict], cfg: dict, runtime: str) -> str:
    s = summarize(records, cfg)
    K, tmax = cfg["from_generations"], cfg["criteria"]["t_max"]
    t = np.array([r["t_obs"] for r in records])
    reasons = {}
    for r in records:
        reasons[r["reason"] or "none"] = reasons.get(r["reason"] or "none", 0) + 1
    diag = [r["diagnostics"] for r in records]
    lines = [
        "# Horizon calibration (generated by run.py; do not edit)", "",
        f"{len(records)} simulated {cfg['model']} chains, forecasts from K = {K} generations "
        f"(0..{K - 1}), criteria {cfg['criteria']}; CFG scales {cfg['cfg_scales']}, h2 "
        f"U{tuple(cfg['h2'])}, V_m U{tuple(cfg['v_mut'])}, rho U{tuple(cfg['rho'])} "
        f"(p_drop = {cfg['p_drop']}), {cfg['traits']} traits, {cfg['images']} images, probes "
        f"{cfg['probe_w1']}/{cfg['probe_uncond']}. Sampler: nutpie, {cfg['sampler_chains']} "
        f"chains x {cfg['draws']} draws after {cfg['tune']} tuning steps.", "",
        f"Realised run horizons: {int(np.sum(t < K))} before K (< {K}), "
        f"{int(np.sum((t >= K) & (t <= tmax)))} in [{K}, {tmax}], "
        f"{int(np.sum(t > tmax))} no collapse by T_max; quartiles "
        f"{np.percentile(t, [25, 50, 75]).tolist()} (censored scale). Reasons: {reasons}. "
        f"Rejected truth draws (tilt stops existing): "
        f"{sum(r['rejected_draws'] for r in records)}.", "",
        f"Fit diagnostics: max R-hat over chains {max(d['rhat_max'] for d in diag):.3f} "
        f"(median {np.median([d['rhat_max'] for d in diag]):.3f}), fits with divergences "
        f"{sum(d['divergences'] > 0 for d in diag)}, median min bulk ESS "
        f"{np.median([d['ess_bulk_min'] for d in diag]):.0f}.", "",
        "## 90% interval coverage and PIT", "",
        "Implied: the forecast's own mass inside its interval, averaged over chains (the "
        "coverage a calibrated forecast has: > 0.9, since horizons are integers and the "
        "interval's ends are included).", "",
        "| chains | n | covered | coverage | 95% CI (Clopper-Pearson) | 0.9 inside | implied "
        "| implied inside | PIT counts (10 bins) | PIT chi-square p |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in s.items():
        lo, hi = v["ci95"]
        lines.append(f"| {name} | {v['n']} | {v['covered']} | {v['coverage']:.3f} | "
                     f"[{lo:.3f}, {hi:.3f}] | {'yes' if lo <= 0.9 <= hi else 'no'} | "
                     f"{v['implied']:.3f} | {'yes' if lo <= v['implied'] <= hi else 'no'} | "
                     f"{v['pit_counts']} | {v['pit_p']:.3g} |")
    lines += ["", "Randomized 90% interval (covered when the randomized PIT lies in "
              "[0.05, 0.95]; exactly 0.9 under calibration, whatever the discreteness):", "",
              "| chains | n | covered | coverage | 95% CI (Clopper-Pearson) | 0.9 inside |",
              "|---|---|---|---|---|---|"]
    for name, v in s.items():
        lo, hi = v["ci95_rand"]
        lines.append(f"| {name} | {v['n']} | {v['covered_rand']} | {v['coverage_rand']:.3f} "
                     f"| [{lo:.3f}, {hi:.3f}] | {'yes' if lo <= 0.9 <= hi else 'no'} |")
    latent = [r for r in records if "t_star_latent" in r]
    differ = sum((r["t_star_latent"] or tmax + 1) != r["t_obs"] for r in latent)
    lines += ["", f"Realised horizon of the observed moments against that of the generating "
              f"(latent) moments: they differ in {differ} of {len(latent)} chains."]
    lines += ["", "## Point error against the practitioners' baselines", "",
              f"Absolute error |forecast - realised| on the censored scale (no collapse = "
              f"{tmax + 1}); the baselines forecast variance collapse only.", "",
              "| chains | method | median abs. error | mean abs. error | exact |",
              "|---|---|---|---|---|"]
    label = {"median": "model (posterior predictive median)", "linear": "linear extrapolation",
             "exponential": "exponential least squares"}
    for name, v in s.items():
        for m in ("median", "linear", "exponential"):
            lines.append(f"| {name} | {label[m]} | {v['medae'][m]:.1f} | "
                         f"{v['meanae'][m]:.2f} | {v['exact'][m]:.2f} |")
    lines += ["", f"Figure: `{cfg['figure']}`.", "", runtime, ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", action="store_true", help="only rewrite results.md")
    ap.add_argument("--chains", type=int, help="override config chains")
    a = ap.parse_args(argv)
    cfg = load_config()
    n = a.chains or cfg["chains"]
    out = HERE / "chains.jsonl"
    t0 = time.perf_counter()
    if not a.report:
        run_chains(cfg, range(n), out, log=lambda m: print(m, flush=True))
    records = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    records = sorted(records, key=lambda r: r["chain"])[:n]
    secs = [r["seconds"] for r in records]
    import qtrait

    runtime = (f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python "
               f"{sys.version.split()[0]}, qtrait {qtrait.__version__}; fit + forecast per "
               f"chain median {np.median(secs):.1f} s (total {sum(secs) / 60:.0f} min, plus "
               f"one compilation per CFG scale, ~1.5 min each on a shared 2-core machine).")
    if not a.report:
        runtime += f" This run: {(time.perf_counter() - t0) / 60:.0f} min wall."
    figure(records, cfg, ROOT / cfg["figure"])
    text = report(records, cfg, runtime)
    write_results(HERE, text)
    print(text)


if __name__ == "__main__":
    main()
