"""ReDiFine on the CPU miniature chain: baseline, condition drop, decaying schedule, both.

For each CFG scale and seed in config.toml, four chains (``[conditions]``): the constant-w
baseline, condition-drop finetuning (p_drop), a linear decay of the guidance over the
sampling steps, and both together (ReDiFine). Per chain, on the run's trait axes
(analyses/_minichains.py says why): variance ratio and drift per generation, the observed
horizon, the fitted (breeder) horizon and the zero-shot one (``qtrait theory horizon``).
Per mitigated chain, the ReDiFine check against its baseline (``qtrait compare BASELINE
MITIGATED``, :func:`qtrait.redifine.redifine_check`): the four predictions of theory.md
section 4.5 with P(direction) of the hierarchically pooled effect and its verdict, and
how often the decisive verdicts of seeds 1 and 2 agree.

The baseline and decay chains are the CFG sweep's (analyses/cfg_sweep) when it has run
them with the same config. Records: ``chains.jsonl`` and ``checks.jsonl`` beside this file
(a rerun resumes); ``--report`` only rewrites results.md and the figures.

    nice -n 15 python analyses/redifine_study/run.py
    python analyses/redifine_study/run.py --chains-only
    python analyses/redifine_study/run.py --report
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
CHAINS = HERE / "chains.jsonl"
CHECKS = HERE / "checks.jsonl"
MITIGATIONS = ("drop", "decay", "both")
LABELS = {"baseline": "baseline (constant w)", "drop": "condition drop",
          "decay": "linear decay", "both": "both (ReDiFine)"}


def load_config() -> dict:
    return tomllib.loads((HERE / "config.toml").read_text())


def design_name(schedule: str, w: float, p_drop: float, seed: int) -> str:
    """The CFG sweep's naming (analyses/cfg_sweep/run.py), so that its runs are reused."""
    return f"{schedule}_w{w:g}_p{p_drop:g}_s{seed}"


def chain_configs(cfg: dict) -> dict[tuple[str, float, int], dict]:
    """(condition, w, seed) -> chain config, seed by seed."""
    out = {}
    for seed in cfg["seeds"]:
        for w in cfg["cfg_scales"]:
            for cond, c in cfg["conditions"].items():
                design = {"cfg_scale": float(w), "cfg_schedule": c["cfg_schedule"]}
                if c["cfg_schedule"] != "constant":
                    design["cfg_end"] = float(c["cfg_end"])
                design["p_drop"] = float(c["p_drop"])
                name = design_name(c["cfg_schedule"], w, c["p_drop"], seed)
                out[(cond, float(w), seed)] = mc.chain_config(cfg["chain"], name, seed, design)
    return out


def analyse_chain(path: Path, key, config: dict, cfg: dict, secs: float) -> dict:
    cond, w, seed = key
    t_max = cfg["criteria"]["t_max"]
    axes = mc.axes_view(path)
    obs = mc.observed(axes)
    return {"name": config["name"], "condition": cond, "cfg_scale": w, "seed": seed,
            "observed": obs, "fitted": mc.fitted(axes, cfg["fit"], t_max, seed=seed),
            "zero_shot": mc.zero_shot(path, 1.0, t_max), "chain_seconds": round(mc.chain_seconds(path), 1)}


def check(base: Path, mit: Path, key, cfg: dict) -> dict:
    """``qtrait compare BASE MIT`` on the axes views (defaults: rho measured from the
    mitigated run's probes, the theory column with the run's zero-shot calibration: the
    miniature chain's)."""
    from qtrait.fit import SamplerSettings
    from qtrait.redifine import redifine_check
    cond, w, seed = key
    t0 = time.perf_counter()
    f = cfg["compare_fit"]
    # the axes views record the chain's producer as their source, so the default
    # calibration ("auto") is the miniature chain's
    out = redifine_check(mc.axes_view(base), mc.axes_view(mit),
                         SamplerSettings(chains=f["chains"], draws=f["draws"], tune=f["tune"],
                                         seed=seed))
    rho_used = out["rho"]
    zs = mc.zero_shot(mit, 1.0, cfg["criteria"]["t_max"],
                      rho=rho_used if cfg["conditions"][cond]["p_drop"] > 0 else None)
    rows = [{k: r[k] for k in ("prediction", "quantity", "expected", "baseline", "mitigated",
                               "measured_effect", "measured_sd", "predicted_effect",
                               "p_direction", "verdict", "tau_trait", "tau_cell",
                               "generation_bound", "cells", "fits_ok")}
            | {"traits_yes": sum(c["verdict"] == "yes" for c in r["per_trait"]),
               "traits": len(r["per_trait"])}
            for r in out["predictions"]]
    return {"pair": f"{cond}_w{w:g}_s{seed}", "condition": cond, "cfg_scale": w, "seed": seed,
            "rho": rho_used, "rho_source": out["rho_source"], "predictions": rows,
            "zero_shot_at_rho": zs,
            "diagnostics": {k: {m: round(float(v), 4) for m, v in d.items()}
                            for k, d in out["diagnostics"].items()},
            "text": out["text"], "seconds": round(time.perf_counter() - t0, 1),
            "code": mc.code_state()}


def run_all(cfg: dict, chains_only: bool, existing_only: bool = False, log=print) -> None:
    configs = chain_configs(cfg)
    reuse = [ROOT / p for p in cfg["reuse_runs_from"]]
    # only the chains a missing record needs (a rerun with every record runs nothing)
    done, checks = mc.read_records(CHAINS), mc.read_records(CHECKS, "pair")
    needed = {key for key, config in configs.items() if config["name"] not in done}
    for (cond, w, seed) in configs:
        if cond in MITIGATIONS and f"{cond}_w{w:g}_s{seed}" not in checks:
            needed |= {(cond, w, seed), ("baseline", w, seed)}
    paths, secs = {}, {}
    for key, config in configs.items():
        if key not in needed:
            continue
        if existing_only and not (
                mc.is_complete(RUNS / config["name"], config["generations"])
                or any(mc.is_complete(r / config["name"], config["generations"])
                       for r in reuse)):
            continue
        paths[key], secs[key] = mc.ensure_chain(RUNS, config, reuse, log=log)
    if chains_only:
        return
    for key, config in configs.items():
        if config["name"] in done or key not in paths:
            continue
        t0 = time.perf_counter()
        rec = analyse_chain(paths[key], key, config, cfg, secs[key])
        mc.append_record(CHAINS, rec)
        log(f"{config['name']}: observed {rec['observed']['t_obs']}, fitted "
            f"{rec['fitted']['median']} ({time.perf_counter() - t0:.0f} s)")
    for seed in cfg["seeds"]:
        for w in cfg["cfg_scales"]:
            for cond in MITIGATIONS:
                pair = f"{cond}_w{w:g}_s{seed}"
                if pair in checks or (cond, float(w), seed) not in paths or \
                        ("baseline", float(w), seed) not in paths:
                    continue
                rec = check(paths[("baseline", float(w), seed)], paths[(cond, float(w), seed)],
                            (cond, float(w), seed), cfg)
                mc.append_record(CHECKS, rec)
                checks[pair] = rec
                log(f"{pair}: rho {rec['rho']}; " + ", ".join(
                    f"{p['prediction']}: {p['p_direction']:.2f} {p['verdict']}"
                    for p in rec["predictions"]) + f" ({rec['seconds']:.0f} s)")


# --- report -----------------------------------------------------------------------------------

def _h(t) -> str:
    return "none" if t is None else str(t)


def figures(chains: list[dict], checks: list[dict], cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "k", "drop": "tab:blue", "decay": "tab:green", "both": "tab:red"}
    ws = cfg["cfg_scales"]
    fig, axs = plt.subplots(2, len(ws), figsize=(5.5 * len(ws), 7), squeeze=False)
    for j, w in enumerate(ws):
        for cond in cfg["conditions"]:
            rs = [r for r in chains if r["condition"] == cond and r["cfg_scale"] == w]
            for k, r in enumerate(rs):
                for i, key in enumerate(("var_ratio", "drift")):
                    y = r["observed"][key]
                    axs[i, j].plot(range(len(y)), y, "-o", color=colours[cond], ms=3,
                                   alpha=0.8, lw=1, label=LABELS[cond] if k == 0 else None)
        axs[0, j].axhline(cfg["criteria"]["q"], color="0.5", ls=":", lw=0.8)
        axs[1, j].axhline(cfg["criteria"]["d"], color="0.5", ls=":", lw=0.8)
        axs[0, j].set(title=f"w = {w:g}: variance ratio V_t/V_0 (axes, mean over digits)",
                      xlabel="generation", yscale="log")
        axs[1, j].set(title=f"w = {w:g}: drift |mu_t - mu_0| / sd_0 (mean over digits)",
                      xlabel="generation")
        for ax in axs[:, j]:
            ax.title.set_fontsize(9)
    axs[0, 0].legend(fontsize=8)
    fig.suptitle("ReDiFine on the miniature chain (one line per seed; dotted: criteria)")
    fig.tight_layout()
    fig.savefig(ROOT / cfg["figures"]["trajectories"], dpi=100)
    plt.close(fig)

    preds = sorted({p["prediction"] for c in checks for p in c["predictions"]})
    fig, axs = plt.subplots(1, len(preds), figsize=(3.6 * len(preds), 3.6), sharey=True,
                            squeeze=False)
    names = {p["prediction"]: p["quantity"] for c in checks for p in c["predictions"]}
    for ax, no in zip(axs[0], preds):
        for x, cond in enumerate(MITIGATIONS):
            for c in checks:
                if c["condition"] != cond:
                    continue
                p = next(p for p in c["predictions"] if p["prediction"] == no)
                marker = "o" if c["cfg_scale"] == ws[0] else "^"
                ax.plot(x + 0.08 * (c["seed"] - 1.5), p["p_direction"], marker,
                        color=colours[cond], ms=6, mfc="none" if c["seed"] % 2 else None)
        ax.axhspan(0.95, 1.0, color="0.9", zorder=0)
        ax.axhspan(0.0, 0.05, color="0.95", zorder=0)
        ax.set_xticks(range(len(MITIGATIONS)))
        ax.set_xticklabels(MITIGATIONS)
        ax.set(title=f"{no}: {names[no]}", ylim=(-0.03, 1.03))
        ax.title.set_fontsize(8)
    axs[0, 0].set_ylabel(f"P(direction) (circles w = {ws[0]:g}, triangles w = {ws[-1]:g})")
    fig.tight_layout()
    fig.savefig(ROOT / cfg["figures"]["checks"], dpi=100)
    plt.close(fig)


def seed_agreement(checks: list[dict]) -> dict:
    """Per (w, mitigation, prediction) slot with records of two seeds: how many are
    decisive under both, under one, and how many of the first agree."""
    by = {}
    for c in checks:
        for p in c["predictions"]:
            by.setdefault((c["cfg_scale"], c["condition"], p["prediction"]), {})[
                c["seed"]] = p["verdict"]
    slots = [v for v in by.values() if len(v) >= 2]
    decisive = [[x for x in v.values() if x in ("yes", "no")] for v in slots]
    both = [d for d in decisive if len(d) >= 2]
    return {"slots": len(slots), "both": len(both),
            "agree": sum(len(set(d)) == 1 for d in both),
            "one": sum(len(d) == 1 for d in decisive)}


def report(chains: list[dict], checks: list[dict], cfg: dict, runtime: str) -> str:
    last = cfg["chain"]["generations"] - 1
    crit = cfg["criteria"]
    conds = ", ".join(f"{k} ({v['cfg_schedule']}, p_drop {v['p_drop']:g})"
                      for k, v in cfg["conditions"].items())
    lines = [
        "# ReDiFine on the miniature chain (generated by run.py; do not edit)", "",
        f"{len(chains)} chains of the CPU miniature chain: conditions {conds}; linear "
        f"schedules decay to 1; w in {cfg['cfg_scales']}; seeds {cfg['seeds']}; "
        f"{cfg['chain']['images']} images, generations 0..{last}, design "
        f"{cfg['chain']['design']} (as analyses/cfg_sweep). Statistics on the 9 trait axes; "
        f"criteria q = {crit['q']}, d = {crit['d']}, r = {crit['r']}.", "",
        "## Variance, drift and horizons", "",
        f"V/V0 and drift: at generation {last}, mean over the digits (trajectories in the "
        "figure). Horizons as in analyses/cfg_sweep: observed (censored at "
        f"{last}), fitted (breeder, median [90%]), zero-shot (`qtrait theory horizon --run`, "
        "h2 = 1; with condition drop and no rho: the range over rho in 0.1..0.75, and in "
        "the checks' table at the rho the check estimated).", "",
        f"| w | seed | condition | V/V0 at {last} | drift at {last} | observed | fitted | "
        "lambda | zero-shot |", "|---|---|---|---|---|---|---|---|---|"]
    order = {c: i for i, c in enumerate(cfg["conditions"])}
    for r in sorted(chains, key=lambda r: (r["cfg_scale"], r["seed"], order[r["condition"]])):
        o, f, z = r["observed"], r["fitted"], r["zero_shot"]
        if z.get("by_rho"):
            vals = sorted({_h(v) for v in z["by_rho"].values()})
            zt = "rho 0.1..0.75: " + "/".join(vals)
        else:
            zt = f"{_h(z['t_star'])} {z['reason'] or ''}".strip()
        lines.append(f"| {r['cfg_scale']:g} | {r['seed']} | {r['condition']} | "
                     f"{o['var_ratio'][-1]:.3f} | {o['drift'][-1]:.2f} | {_h(o['t_obs'])} "
                     f"{o['reason'] or ''} | {_h(f['median'])} [{_h(f['lo90'])}, "
                     f"{_h(f['hi90'])}] | {f['lambda']:.3f} | {zt} |")
    # mean over seeds
    lines += ["", f"Mean over seeds of V/V0 and drift at generation {last}:", "",
              "| w | condition | V/V0 | drift | mean V/V0 over generations 1.." + str(last)
              + " |", "|---|---|---|---|---|"]
    for w in cfg["cfg_scales"]:
        for cond in cfg["conditions"]:
            rs = [r for r in chains if r["cfg_scale"] == w and r["condition"] == cond]
            if rs:
                lines.append(
                    f"| {w:g} | {cond} | "
                    f"{np.mean([r['observed']['var_ratio'][-1] for r in rs]):.3f} | "
                    f"{np.mean([r['observed']['drift'][-1] for r in rs]):.2f} | "
                    f"{np.mean([np.mean(r['observed']['var_ratio'][1:]) for r in rs]):.3f} |")
    lines += ["", "## The ReDiFine check (`qtrait compare BASELINE MITIGATED`)", "",
              "Per pair: P(direction) and verdict of the four predictions of theory.md "
              "section 4.5, the effect pooled hierarchically over the 90 cells (9 axes x 10 "
              "digits; cells within axes, axes around the typical effect): 1 probe gap "
              "|m_u - m_w1| smaller; 2 |log(guided / w=1 variance)| closer to 0; 3 log "
              "variance 10 generations on larger; 4 |gamma| closer to 0. 'yes' needs "
              "P >= 0.95, 'no' P <= 0.05. In brackets: axes whose shrunk effect says 'yes'. "
              "rho: the mitigated run's adaptation of the unconditional branch, measured "
              "from its probes. Zero-shot: the mitigated run's `qtrait theory horizon "
              "--run` at that rho.",
              "", "| w | seed | mitigation | rho | 1 | 2 | 3 | 4 | yes (of 4) | zero-shot |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(checks, key=lambda c: (c["cfg_scale"], c["seed"],
                                           MITIGATIONS.index(c["condition"]))):
        cells = []
        for no in (1, 2, 3, 4):
            p = next((p for p in c["predictions"] if p["prediction"] == no), None)
            cells.append("n/a" if p is None else
                         f"{p['p_direction']:.2f} {p['verdict']} ({p['traits_yes']}/"
                         f"{p['traits']})" + (" †" if p.get("fits_ok") is False else ""))
        nyes = sum(p["verdict"] == "yes" for p in c["predictions"])
        z = c["zero_shot_at_rho"]
        rho = "n/a" if c["rho"] is None else f"{c['rho']:.3f}"
        lines.append(f"| {c['cfg_scale']:g} | {c['seed']} | {c['condition']} | {rho} | "
                     + " | ".join(cells) + f" | {nyes} | {_h(z['t_star'])} "
                     f"{z['reason'] or ''} |")
    lines += ["", "† rests on a breeder fit that failed its diagnostics (R-hat, ESS or "
              "divergences; the checks' fits: "
              f"{cfg['compare_fit']['chains']} chains x {cfg['compare_fit']['draws']} "
              "draws).", "",
              "Pooled over pairs: share of 'yes' verdicts per prediction and mitigation.", "",
              "| mitigation | pairs | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|---|"]
    for cond in MITIGATIONS:
        cs = [c for c in checks if c["condition"] == cond]
        if not cs:
            continue
        share = []
        for no in (1, 2, 3, 4):
            ps = [p for c in cs for p in c["predictions"] if p["prediction"] == no]
            share.append(f"{sum(p['verdict'] == 'yes' for p in ps)}/{len(ps)}")
        lines.append(f"| {cond} | {len(cs)} | " + " | ".join(share) + " |")
    agree = seed_agreement(checks)
    lines += ["", "Seeds agree: for each (w, mitigation, prediction) with a decisive verdict "
              "('yes' or 'no') under both seeds, whether they are the same.", "",
              f"- decisive under both seeds: {agree['both']} of {agree['slots']}; agreeing: "
              f"{agree['agree']}" + (f" ({agree['agree'] / agree['both']:.0%})"
                                     if agree["both"] else ""),
              f"- decisive under one seed only: {agree['one']}"]
    diag = [d for c in checks for d in c["diagnostics"].values()]
    if diag:
        lines += ["", f"Fit diagnostics of the checks' breeder fits: max R-hat "
                  f"{max(d['rhat_max'] for d in diag):.3f}, fits with divergences "
                  f"{sum(d['divergences'] > 0 for d in diag)} of {len(diag)}."]
    lines += ["", f"Figures: `{cfg['figures']['trajectories']}`, `{cfg['figures']['checks']}`.",
              "", "qtrait code of the fits (commit): " + ", ".join(sorted(
                  {r["fitted"].get("code", "not recorded") for r in chains}
                  | {c.get("code", "not recorded") for c in checks})) + ".",
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
    names = {c["name"] for c in chain_configs(cfg).values()}
    chains = [r for r in mc.read_records(CHAINS).values() if r["name"] in names]
    checks = list(mc.read_records(CHECKS, "pair").values())
    # baseline and decay chains are the CFG sweep's (config reuse_runs_from): not counted
    own = [r for r in chains if cfg["conditions"][r["condition"]]["p_drop"] > 0]
    chain_s = [r["chain_seconds"] for r in own if r["chain_seconds"] > 0]
    runtime = (f"Machine: {mc.software()}; the 2-core development machine, shared with "
               f"other jobs (`nice -n 15`). Chains run by this study (condition drop; "
               f"the others are analyses/cfg_sweep's): {len(chain_s)}, median "
               f"{np.median(chain_s) if chain_s else float('nan'):.0f} s each; breeder fits "
               f"median {np.median([r['fitted']['seconds'] for r in chains]):.0f} s; checks "
               f"median {np.median([c['seconds'] for c in checks]):.0f} s each (total "
               f"{sum(c['seconds'] for c in checks) / 60:.0f} min, compilations included).")
    if not a.report:
        runtime += f" This run: {(time.perf_counter() - t0) / 60:.0f} min wall."
    figures(chains, checks, cfg)
    text = report(chains, checks, cfg, runtime)
    write_results(HERE, text)
    print(text)


if __name__ == "__main__":
    main()
