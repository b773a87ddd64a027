"""CFG sweep on the CPU miniature chain: collapse horizon, variance and drift against w.

For every CFG scale w and schedule (constant, or linear decay from w to ``cfg_end`` over
the sampling steps) in config.toml and every seed, run a miniature chain (``qtrait chain
run``, in a ``nice``-d subprocess, one at a time) and record, on the run's trait axes
(pc_1..pc_8, concept_axis; see analyses/_minichains.py for why the axes):

* the **observed** horizon: qtrait's criteria on the observed guided moments
  (``qtrait.forecast.observed_horizons``), censored at the last generation;
* the **fitted** horizon: a ``breeder`` fit of the whole run; the horizon of the
  posterior's latent guided moments, run forward to T_max (median and 90% interval), and
  the fitted per-generation variance factor lambda;
* the **zero-shot** horizon: ``qtrait theory horizon --run RUN`` (the exact Gaussian
  sampler map from generation 0 and the run's design) for each assumed h2;
* the variance ratio, Mahalanobis drift and image traits at the last generation.

Records go to ``chains.jsonl`` beside this file as chains finish (a rerun resumes);
``--report`` only rewrites results.md and the figures. Runs live in ``runs/`` (ignored).

    nice -n 15 python analyses/cfg_sweep/run.py             # chains, fits, report
    python analyses/cfg_sweep/run.py --chains-only          # only run the chains
    python analyses/cfg_sweep/run.py --report
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import _minichains as mc  # noqa: E402  (shared by the miniature-chain studies)
from _results import write_results  # noqa: E402

ROOT = HERE.parents[1]
RUNS = HERE / "runs"
RECORDS = HERE / "chains.jsonl"


def load_config() -> dict:
    return tomllib.loads((HERE / "config.toml").read_text())


def design_name(schedule: str, w: float, p_drop: float, seed: int) -> str:
    return f"{schedule}_w{w:g}_p{p_drop:g}_s{seed}"


def chain_configs(cfg: dict) -> list[dict]:
    """Every chain of the sweep, seed by seed (so that a partial sweep covers the grid)."""
    out = []
    p_drop = cfg["chain"]["design"]["p_drop"]
    for seed in cfg["seeds"]:
        for schedule, scales in cfg["cfg_scales"].items():
            for w in scales:
                design = {"cfg_scale": float(w), "cfg_schedule": schedule}
                if schedule != "constant":
                    design["cfg_end"] = float(cfg["cfg_end"])
                out.append(mc.chain_config(cfg["chain"], design_name(schedule, w, p_drop, seed),
                                           seed, design))
    return out


def analyse(path: Path, config: dict, cfg: dict, chain_seconds: float) -> dict:
    """The record of one chain."""
    from qtrait.rundir import open_run

    t_max = cfg["criteria"]["t_max"]
    run = open_run(path)
    axes = mc.axes_view(path)
    obs = mc.observed(axes)
    obs_all = mc.observed(run)          # every trait (qtrait's default), for comparison
    d = config["design"]
    return {
        "name": config["name"], "seed": config["seed"], "cfg_scale": d["cfg_scale"],
        "schedule": d["cfg_schedule"], "p_drop": d["p_drop"],
        "observed": obs, "observed_all_traits": {"t_obs": obs_all["t_obs"],
                                                 "reason": obs_all["reason"]},
        "fitted": mc.fitted(axes, cfg["fit"], t_max, seed=config["seed"]),
        "zero_shot": {str(h2): mc.zero_shot(path, h2, t_max) for h2 in cfg["zero_shot"]["h2"]},
        "image_traits": mc.image_traits(run),
        "chain_seconds": round(mc.chain_seconds(path), 1),
    }


def run_all(cfg: dict, chains_only: bool, existing_only: bool = False, log=print) -> None:
    done = mc.read_records(RECORDS)
    for config in chain_configs(cfg):
        if config["name"] in done:
            continue
        if existing_only and not mc.is_complete(RUNS / config["name"], config["generations"]):
            continue
        path, secs = mc.ensure_chain(RUNS, config, log=log)
        if chains_only:
            continue
        t0 = time.perf_counter()
        rec = analyse(path, config, cfg, secs)
        mc.append_record(RECORDS, rec)
        f = rec["fitted"]
        log(f"{config['name']}: observed {rec['observed']['t_obs']} "
            f"({rec['observed']['reason']}), fitted {f['median']} [{f['lo90']}, {f['hi90']}], "
            f"zero-shot {[z['t_star'] for z in rec['zero_shot'].values()]} "
            f"({time.perf_counter() - t0:.0f} s)")


# --- report -----------------------------------------------------------------------------------

def _h(t) -> str:
    return "none" if t is None else str(t)


def pooled_crossing(values, above: bool, threshold: float):
    """First generation >= 1 where a digit-averaged statistic crosses its threshold."""
    for t, v in enumerate(values[1:], start=1):
        if (v > threshold) if above else (v < threshold):
            return t
    return None


def figures(records: list[dict], cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_max = cfg["criteria"]["t_max"]
    last = cfg["chain"]["generations"] - 1
    schedules = list(cfg["cfg_scales"])
    fig, axs = plt.subplots(1, len(schedules), figsize=(5.2 * len(schedules), 4.2),
                            sharey=True, squeeze=False)
    cap = t_max + 1
    for ax, sched in zip(axs[0], schedules):
        rs = [r for r in records if r["schedule"] == sched]
        ax.set_title(f"{sched} schedule")
        if not rs:
            continue
        seeds = sorted({r["seed"] for r in rs})
        for k, seed in enumerate(seeds):
            sub = sorted([r for r in rs if r["seed"] == seed], key=lambda r: r["cfg_scale"])
            w = np.array([r["cfg_scale"] for r in sub]) * (1 + 0.03 * (k - 0.5))
            obs = [r["observed"]["t_obs"] or last + 1 for r in sub]
            ax.plot(w, obs, "s", color="k", ms=6, mfc="none",
                    label="observed (axes, first digit)" if k == 0 else None)
            pooled = [pooled_crossing(r["observed"]["var_ratio"], False, cfg["criteria"]["q"])
                      or last + 1 for r in sub]
            ax.plot(w * 0.96, pooled, "v", color="0.5", ms=5,
                    label="observed, digit-mean V/V0 < q" if k == 0 else None)
            med = np.array([r["fitted"]["median"] or cap for r in sub], float)
            lo = np.array([r["fitted"]["lo90"] or cap for r in sub], float)
            hi = np.array([r["fitted"]["hi90"] or cap for r in sub], float)
            ax.errorbar(w * 1.04, med, yerr=[med - lo, hi - med], fmt="o", color="tab:blue",
                        ms=4, lw=1, label="fitted (breeder, 90% interval)" if k == 0 else None)
        for h2, colour in zip(cfg["zero_shot"]["h2"], ("tab:red", "tab:orange")):
            ws = sorted({r["cfg_scale"] for r in rs})
            z = [np.mean([r["zero_shot"][str(h2)]["t_star"] or cap for r in rs
                          if r["cfg_scale"] == w]) for w in ws]
            ax.plot(ws, z, "-", color=colour, lw=1.2, label=f"zero-shot, h2 = {h2}")
        ax.axhline(last + 0.5, color="0.6", lw=0.6, ls=":")
        ax.set(xscale="log", xlabel="CFG scale w" + (" (start of the decay)"
                                                      if sched != "constant" else ""),
               title=f"{sched} schedule")
        ax.minorticks_off()
        ax.set_xticks(sorted({r["cfg_scale"] for r in rs}))
        ax.set_xticklabels([f"{w:g}" for w in sorted({r["cfg_scale"] for r in rs})])
    axs[0, 0].set_ylabel(f"horizon t* (observed: {last + 1} = none by {last}; "
                         f"others: {cap} = none by {cap - 1})")
    axs[0, 0].set_ylim(bottom=0)
    axs[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(ROOT / cfg["figures"]["horizons"], dpi=110)
    plt.close(fig)

    panels = [("var_ratio", "variance ratio V_t/V_0 (axes, mean over digits)", "observed"),
              ("drift", "drift |mu_t - mu_0| / sd_0 (axes, mean over digits)", "observed"),
              ("saturation", "saturation (fraction of extreme pixels)", "image_traits"),
              ("hf_energy", "high-frequency energy fraction", "image_traits"),
              ("label_correct", "classifier accuracy", "image_traits"),
              ("lambda", "fitted variance factor lambda (breeder)", "fitted")]
    fig, axs = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, title, group) in zip(axs.ravel(), panels):
        for sched, colour in zip(schedules, ("tab:blue", "tab:green")):
            rs = sorted([r for r in records if r["schedule"] == sched],
                        key=lambda r: r["cfg_scale"])
            ws = sorted({r["cfg_scale"] for r in rs})
            val = (lambda r: r[group][key]) if group == "fitted" else \
                (lambda r: r[group][key][-1])
            ax.plot([r["cfg_scale"] for r in rs], [val(r) for r in rs], "o", color=colour,
                    ms=3, alpha=0.6)
            ax.plot(ws, [np.mean([val(r) for r in rs if r["cfg_scale"] == w]) for w in ws],
                    "-", color=colour, label=sched)
        if group == "image_traits":
            g0 = np.mean([r[group][key][0] for r in records])
            ax.axhline(g0, color="0.5", lw=0.8, ls="--", label="generation 0")
        if key == "var_ratio":
            ax.axhline(cfg["criteria"]["q"], color="0.5", lw=0.8, ls=":", label="q")
        ax.set(xscale="log", title=title, xlabel="CFG scale w")
        ax.title.set_fontsize(9)
        ax.minorticks_off()
        ax.set_xticks(sorted({r["cfg_scale"] for r in records}))
        ax.set_xticklabels([f"{w:g}" for w in sorted({r["cfg_scale"] for r in records})])
    axs[0, 0].legend(fontsize=8)
    fig.suptitle(f"Miniature chains at generation {last} against w (lines: mean over seeds)")
    fig.tight_layout()
    fig.savefig(ROOT / cfg["figures"]["last_generation"], dpi=100)
    plt.close(fig)


def report(records: list[dict], cfg: dict, runtime: str) -> str:
    last = cfg["chain"]["generations"] - 1
    h2s = cfg["zero_shot"]["h2"]
    crit = cfg["criteria"]
    lines = [
        "# CFG sweep on the miniature chain (generated by run.py; do not edit)", "",
        f"{len(records)} chains of the CPU miniature chain (docs/chain.md): seeds "
        f"{sorted({r['seed'] for r in records})}; constant w in "
        f"{cfg['cfg_scales'].get('constant')}, linear decay from w to {cfg['cfg_end']} with "
        f"w in {cfg['cfg_scales'].get('linear')}; {cfg['chain']['images']} images and "
        f"generations 0..{last} per chain, design {cfg['chain']['design']}; everything else "
        "the default chain config.", "",
        f"Horizons on the run's 9 trait axes (pc_1..pc_8, concept_axis), qtrait's criteria "
        f"q = {crit['q']}, d = {crit['d']}, r = {crit['r']} (earliest digit). Observed: the "
        f"observed guided moments, censored at generation {last} ('none' = no crossing by "
        f"{last}). Fitted: breeder fit of generations 0..{last} ({cfg['fit']['chains']} "
        f"chains x {cfg['fit']['draws']} draws after {cfg['fit']['tune']} tuning steps), "
        f"horizon of the posterior's latent guided moments run forward to T_max = "
        f"{crit['t_max']} (median [90% interval]; 'none' = beyond T_max). Zero-shot: "
        f"`qtrait theory horizon --run RUN --h2 H2 --t-max {crit['t_max']}`. "
        "All traits: qtrait's observed horizon over every trait of the run (16), for "
        "comparison.", "",
        "Pooled: the first generation where the digit-averaged variance ratio falls "
        "below q, and where the digit-averaged drift exceeds d (the run-level criteria "
        "fire at the first digit to cross).", "",
        "| schedule | w | seed | observed | all traits | pooled V/V0 < q | pooled drift > d "
        "| fitted | lambda | "
        + " | ".join(f"zero-shot h2 = {h}" for h in h2s)
        + f" | V/V0 at {last} | drift at {last} | saturation at {last} | hf energy at {last} "
        f"| accuracy at {last} | max R-hat | divergences |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(h2s)
        + "---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["schedule"], r["cfg_scale"], r["seed"])):
        o, f, it = r["observed"], r["fitted"], r["image_traits"]
        zs = " | ".join(
            f"{_h(r['zero_shot'][str(h)]['t_star'])} {r['zero_shot'][str(h)]['reason'] or ''}"
            .strip() for h in h2s)
        lines.append(
            f"| {r['schedule']} | {r['cfg_scale']:g} | {r['seed']} | {_h(o['t_obs'])} "
            f"{o['reason'] or ''} | {_h(r['observed_all_traits']['t_obs'])} "
            f"{r['observed_all_traits']['reason'] or ''} | "
            f"{_h(pooled_crossing(o['var_ratio'], False, crit['q']))} | "
            f"{_h(pooled_crossing(o['drift'], True, crit['d']))} | {_h(f['median'])} "
            f"[{_h(f['lo90'])}, {_h(f['hi90'])}] | {f['lambda']:.3f} | {zs} | "
            f"{o['var_ratio'][-1]:.3f} | {o['drift'][-1]:.2f} | {it['saturation'][-1]:.3f} | "
            f"{it['hf_energy'][-1]:.3f} | {it['label_correct'][-1]:.3f} | "
            f"{f['diagnostics']['rhat_max']:.3f} | {int(f['diagnostics']['divergences'])} |")
    g0 = records[0]["image_traits"] if records else None
    if g0:
        lines += ["", f"Generation 0 (D_0, the same {cfg['chain']['images']} images in every "
                  f"chain of a seed): saturation {g0['saturation'][0]:.3f}, hf energy "
                  f"{g0['hf_energy'][0]:.3f}, accuracy {g0['label_correct'][0]:.3f}."]
    # agreement summary
    both = [r for r in records if r["observed"]["t_obs"] is not None]
    lines += ["", "## Agreement", "",
              "Over the chains whose observed horizon is within the run: how often the "
              "fitted median and the zero-shot horizon equal it, and whether the observed "
              "one lies in the fitted 90% interval.", "",
              "| horizon | chains | equal to observed | mean abs. difference | observed in "
              "90% interval |", "|---|---|---|---|---|"]
    cap = crit["t_max"] + 1
    if both:
        t = np.array([r["observed"]["t_obs"] for r in both])
        med = np.array([r["fitted"]["median"] or cap for r in both])
        lo = np.array([r["fitted"]["lo90"] or cap for r in both])
        hi = np.array([r["fitted"]["hi90"] or cap for r in both])
        lines.append(f"| fitted (breeder median) | {len(both)} | {np.mean(med == t):.2f} | "
                     f"{np.mean(np.abs(med - t)):.2f} | {np.mean((lo <= t) & (t <= hi)):.2f} |")
        for h in h2s:
            z = np.array([r["zero_shot"][str(h)]["t_star"] or cap for r in both])
            lines.append(f"| zero-shot, h2 = {h} | {len(both)} | {np.mean(z == t):.2f} | "
                         f"{np.mean(np.abs(z - t)):.2f} | |")
    lines += ["", f"Chains with no observed crossing by generation {last}: "
              f"{len(records) - len(both)}.", "",
              f"Figures: `{cfg['figures']['horizons']}`, `{cfg['figures']['last_generation']}`.",
              "", "qtrait code of the fits (commit): " + ", ".join(sorted(
                  {r["fitted"].get("code", "not recorded") for r in records})) + ".",
              "", runtime, ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", action="store_true", help="only rewrite results.md and figures")
    ap.add_argument("--chains-only", action="store_true", help="only run the chains")
    ap.add_argument("--existing-only", action="store_true",
                    help="analyse only the chains already complete; run none")
    a = ap.parse_args(argv)
    cfg = load_config()
    t0 = time.perf_counter()
    if not a.report:
        run_all(cfg, a.chains_only, a.existing_only, log=lambda m: print(m, flush=True))
        if a.chains_only:
            return
    names = {c["name"] for c in chain_configs(cfg)}
    records = [r for r in mc.read_records(RECORDS).values() if r["name"] in names]
    chain_s = [r["chain_seconds"] for r in records if r["chain_seconds"] > 0]
    fit_s = [r["fitted"]["seconds"] for r in records]
    runtime = (f"Machine: {mc.software()}; the 2-core development machine, shared with "
               f"other jobs (chains and fits ran under `nice -n 15`). Chain wall time: "
               f"median {np.median(chain_s) if chain_s else float('nan'):.0f} s per chain "
               f"(total {sum(chain_s) / 60:.0f} min); breeder fit + forecast median "
               f"{np.median(fit_s):.0f} s per chain (total {sum(fit_s) / 60:.0f} min, the "
               "first including the compilation).")
    if not a.report:
        runtime += f" This run: {(time.perf_counter() - t0) / 60:.0f} min wall."
    figures(records, cfg)
    text = report(records, cfg, runtime)
    write_results(HERE, text)
    print(text)


if __name__ == "__main__":
    main()
