"""The generated tables of docs/results.md, from the studies' record files.

docs/results.md is hand-written around blocks that this script rewrites in place, each
between ``<!-- begin generated: NAME -->`` and ``<!-- end generated: NAME -->``:

* ``summary``: one row per study in analyses/ with its headline numbers;
* ``cfg_sweep``, ``redifine``, ``forecasting``: the tables of the three miniature-chain
  studies, condensed (mean over seeds, pooled verdicts, K = 3 scores).

Numbers come from the record files (``*.jsonl``) where a study keeps them, else from the
study's own generated results.md (horizon_vs_cfg, toy_chain_phenomena,
interval_coverage), so a study rerun followed by this script updates docs/results.md.

    python analyses/results_summary.py            # rewrite the blocks
    python analyses/results_summary.py --check    # exit 1 when docs/results.md is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "results.md"


def jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def md_table(text: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table after a heading line that starts with
    ``heading``."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(heading))
    rows = []
    for x in lines[start + 1:]:
        if x.startswith("|"):
            cells = [c.strip() for c in x.strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows


def _h(t) -> str:
    return "none" if t is None else str(t)


# --- existing studies -------------------------------------------------------------------------

def horizon_vs_cfg() -> str:
    text = (HERE / "horizon_vs_cfg" / "results.md").read_text()
    rows = md_table(text, "### A: u = 0.36, h2 = 1")
    head, body = rows[0], {r[0]: r for r in rows[1:]}
    c, lin = head.index("50 const"), head.index("50 lin")
    cells = [f"w = {w}: {body[w][c]} (linear {body[w][lin]})" for w in ("0.5", "1", "2", "7.5")]
    return ("zero-shot t* (exact sampler map, one trait, setting A: u = 0.36, h2 = 1, DDIM "
            "50, constant schedule): " + "; ".join(cells))


def toy_chain_phenomena() -> str:
    text = (HERE / "toy_chain_phenomena" / "results.md").read_text()
    out = []
    for block in re.findall(r"## (.+?)\n\n```\n(.+?)```", text, flags=re.S):
        label, table = block
        lines = table.strip().splitlines()
        cols = lines[0].split()
        last = lines[-1].split()
        vals = dict(zip(cols, map(float, last[1:])))
        out.append(f"{label}: within-digit variance {vals['within_var']:.2f} of generation "
                   f"0's, accuracy {vals['accuracy']:.2f} at generation {last[0]}")
    return "; ".join(out)


def interval_coverage() -> str:
    text = (HERE / "interval_coverage" / "results.md").read_text()
    rows = md_table(text, "Coverage of nominal")
    gauss = [float(r[3]) for r in rows[1:] if r[0] == "Gaussian"]
    gam = [(r[1], float(r[3]), float(r[4])) for r in rows[1:] if r[0].startswith("Gamma")]
    return (f"nominal 90% variance intervals: Gaussian traits {min(gauss):.3f}-{max(gauss):.3f}"
            f"; Gamma(2) traits {min(g[1] for g in gam):.3f}-{max(g[1] for g in gam):.3f} "
            f"(plain chi-square {min(g[2] for g in gam):.3f}-{max(g[2] for g in gam):.3f})")


def sbc() -> list[str]:
    cfg = tomllib.loads((HERE / "sbc" / "config.toml").read_text())
    out = []
    for model in ("breeder", "tilt"):
        recs = [r for r in jsonl(HERE / "sbc" / f"{model}.jsonl") if "ranks" in r]
        if not recs:
            continue
        params = cfg[model]["parameters"]
        bad = []
        for p in params:
            ranks = np.array([r["ranks"][p] for r in recs if p in r["ranks"]])
            if not len(ranks):
                continue
            counts = np.histogram(ranks, bins=cfg["bins"], range=(0, cfg["thin_to"] + 1))[0]
            pval = stats.chisquare(counts).pvalue
            if pval < 0.01:
                bad.append(f"{p} (p = {pval:.2g})")
        out.append(f"{model}: {len(recs)} replications, {len(params)} parameters; rank "
                   f"histograms non-uniform at p < 0.01: {', '.join(bad) or 'none'}")
    return out


def horizon_calibration() -> str:
    recs = jsonl(HERE / "horizon_calibration" / "chains.jsonl")
    if not recs:
        return "no records"
    n, k = len(recs), sum(r["covered"] for r in recs)
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    err = {m: np.mean([abs(r[m] - r["t_obs"]) for r in recs])
           for m in ("median", "linear", "exponential")}
    kr = sum(0.05 <= r["pit"] <= 0.95 for r in recs)   # the randomized 90% interval
    cr = stats.binomtest(kr, n).proportion_ci(0.95, method="exact")
    return (f"{n} simulated tilt chains, K = 3: 90% interval coverage {k / n:.3f} "
            f"[{ci.low:.3f}, {ci.high:.3f}] (integer horizons: above 0.9 by construction); "
            f"randomized 90% interval {kr / n:.3f} [{cr.low:.3f}, {cr.high:.3f}]; "
            f"mean abs. error model {err['median']:.2f}, "
            f"linear {err['linear']:.2f}, exponential {err['exponential']:.2f} generations")


# --- the three miniature-chain studies --------------------------------------------------------

def cfg_sweep_summary(recs: list[dict]) -> str:
    if not recs:
        return "no records"
    t = [r["observed"]["t_obs"] for r in recs]
    at1 = sum(x == 1 for x in t)
    return (f"{len(recs)} chains; observed horizon under the earlier per-digit rule (9 axes, "
            f"first digit at face value; superseded, section 4) at generation 1 in {at1}, "
            f"later in {sum(x is not None and x > 1 for x in t)}, none by the last "
            f"generation in {sum(x is None for x in t)}")


def cfg_sweep_table(recs: list[dict]) -> str:
    if not recs:
        return "(no records yet)"
    h2s = sorted({h for r in recs for h in r["zero_shot"]}, reverse=True)
    last = len(recs[0]["observed"]["var_ratio"]) - 1
    q = tomllib.loads((HERE / "cfg_sweep" / "config.toml").read_text())["criteria"]["q"]

    def pooled(r):   # first generation where the digit-mean V/V0 < q
        return next((t for t, v in enumerate(r["observed"]["var_ratio"]) if t and v < q), None)

    lines = ["| schedule | w | seeds | observed | digit-mean V/V0 < q | fitted median | lambda | "
             + " | ".join(f"zero-shot h2 = {h}" for h in h2s)
             + f" | V/V0 at {last} | drift at {last} | saturation at {last} | hf energy at "
             f"{last} | accuracy at {last} |",
             "|---|---|---|---|---|---|---|" + "---|" * len(h2s) + "---|---|---|---|---|"]
    keys = sorted({(r["schedule"], r["cfg_scale"]) for r in recs})
    for sched, w in keys:
        rs = sorted([r for r in recs if (r["schedule"], r["cfg_scale"]) == (sched, w)],
                    key=lambda r: r["seed"])
        obs = ", ".join(_h(r["observed"]["t_obs"]) for r in rs)
        obs += " | " + ", ".join(_h(pooled(r)) for r in rs)
        fit = ", ".join(_h(r["fitted"]["median"]) for r in rs)
        zs = " | ".join(", ".join(sorted({_h(r["zero_shot"][h]["t_star"]) for r in rs}))
                        for h in h2s)
        m = lambda f: np.mean([f(r) for r in rs])  # noqa: E731
        lines.append(
            f"| {sched} | {w:g} | {len(rs)} | {obs} | {fit} | "
            f"{m(lambda r: r['fitted']['lambda']):.2f} | {zs} | "
            f"{m(lambda r: r['observed']['var_ratio'][-1]):.2f} | "
            f"{m(lambda r: r['observed']['drift'][-1]):.2f} | "
            f"{m(lambda r: r['image_traits']['saturation'][-1]):.3f} | "
            f"{m(lambda r: r['image_traits']['hf_energy'][-1]):.3f} | "
            f"{m(lambda r: r['image_traits']['label_correct'][-1]):.2f} |")
    g0 = recs[0]["image_traits"]
    lines += ["", "Observed (first digit to cross), digit-mean (first generation where the "
              "variance ratio averaged over the digits is below q; 'none' = not by "
              f"generation {last}) and fitted: one value per seed. Generation 0: saturation "
              f"{g0['saturation'][0]:.3f}, hf energy {g0['hf_energy'][0]:.3f}, accuracy "
              f"{g0['label_correct'][0]:.2f} (seed {recs[0]['seed']})."]
    return "\n".join(lines)


def redifine_summary(checks: list[dict]) -> str:
    if not checks:
        return "no records"
    n = len(checks)
    yes = {no: sum(p["verdict"] == "yes" for c in checks for p in c["predictions"]
                   if p["prediction"] == no) for no in (1, 2, 3, 4)}
    return (f"{n} baseline/mitigated pairs; 'yes' verdicts per prediction (hierarchical "
            "pooling): " + ", ".join(f"{no}: {k}/{n}" for no, k in yes.items()))


def redifine_table(chains: list[dict], checks: list[dict]) -> str:
    if not chains:
        return "(no records yet)"
    last = len(chains[0]["observed"]["var_ratio"]) - 1
    lines = [f"| w | condition | seeds | V/V0 at {last} | drift at {last} | observed | "
             "fitted median |", "|---|---|---|---|---|---|---|"]
    order = ["baseline", "drop", "decay", "both"]
    for w in sorted({r["cfg_scale"] for r in chains}):
        for cond in order:
            rs = sorted([r for r in chains if r["cfg_scale"] == w and r["condition"] == cond],
                        key=lambda r: r["seed"])
            if not rs:
                continue
            lines.append(
                f"| {w:g} | {cond} | {len(rs)} | "
                f"{np.mean([r['observed']['var_ratio'][-1] for r in rs]):.3f} | "
                f"{np.mean([r['observed']['drift'][-1] for r in rs]):.2f} | "
                + ", ".join(_h(r["observed"]["t_obs"]) for r in rs) + " | "
                + ", ".join(_h(r["fitted"]["median"]) for r in rs) + " |")
    if checks:
        lines += ["", "`qtrait compare` verdicts, the effect pooled hierarchically over "
                  "cells ('yes' / 'no' pairs of all pairs; 'yes' needs P >= 0.95):", "",
                  "| mitigation | pairs | 1 probe gap smaller | 2 variance ratio closer to 1 "
                  "| 3 variance 10 generations on larger | 4 gamma closer to 0 | median rho |",
                  "|---|---|---|---|---|---|---|"]
        for cond in order[1:]:
            cs = [c for c in checks if c["condition"] == cond]
            if not cs:
                continue
            cells = []
            for no in (1, 2, 3, 4):
                ps = [p for c in cs for p in c["predictions"] if p["prediction"] == no]
                cells.append(f"{sum(p['verdict'] == 'yes' for p in ps)} / "
                             f"{sum(p['verdict'] == 'no' for p in ps)} of {len(ps)} (P "
                             f"{min(p['p_direction'] for p in ps):.2f}-"
                             f"{max(p['p_direction'] for p in ps):.2f})")
            rho = [c["rho"] for c in cs if c["rho"] is not None]
            lines.append(f"| {cond} | {len(cs)} | " + " | ".join(cells)
                         + f" | {np.median(rho) if rho else float('nan'):.3f} |")
    return "\n".join(lines)


def forecasting_rows(recs: list[dict], K: int, nontrivial: bool):
    rs = [r for r in recs if r["K"] == K and (not nontrivial or not r["trivial"])]
    if not rs:
        return None
    cov = np.mean([r["model"]["covered"] for r in rs])
    err = {m: np.array([r["abs_error"][m] for r in rs])
           for m in ("model", "linear", "exponential")}
    cens = lambda t, last: last + 1 if t is None or t > last else t  # noqa: E731
    width = np.median([cens(r["model"]["hi90"], r["last_generation"])
                       - cens(r["model"]["lo90"], r["last_generation"]) for r in rs])
    return len(rs), cov, {m: (e.mean(), np.median(e)) for m, e in err.items()}, width


def forecasting_table(real: list[dict], sim: list[dict]) -> str:
    lines = ["| chains | K | n | coverage of 90% | median width of 90% | model mean (median) "
             "abs. error | linear | exponential |", "|---|---|---|---|---|---|---|---|"]
    for label, recs in (("real", real), ("simulated", sim)):
        for subset, nontrivial in (("all", False), ("non-trivial", True)):
            for K in sorted({r["K"] for r in recs}):
                s = forecasting_rows(recs, K, nontrivial)
                if s is None:
                    lines.append(f"| {label}, {subset} | {K} | 0 | | | | | |")
                    continue
                n, cov, e, width = s
                lines.append(f"| {label}, {subset} | {K} | {n} | {cov:.2f} | {width:.0f} | "
                             + " | ".join(f"{e[m][0]:.2f} ({e[m][1]:.1f})"
                                          for m in ("model", "linear", "exponential"))
                             + " |")
    per = []
    for K in sorted({r["K"] for r in real}):
        ts = [t for r in real if r["K"] == K for t in r["traits"]
              if not (t["observed"] is not None and t["observed"] <= K - 1)]
        if ts:
            per.append(f"K = {K}: {len(ts)}, coverage {np.mean([t['covered'] for t in ts]):.2f}"
                       f", mean log score {np.mean([t['log_score'] for t in ts]):.2f}")
    if per:
        lines += ["", "Per-trait horizons of the real chains (9 axes; model only), non-trivial "
                  "forecasts: " + "; ".join(per) + "."]
    return "\n".join(lines)


def forecasting_summary(real: list[dict], sim: list[dict]) -> str:
    parts = []
    for label, recs in (("real", real), ("simulated", sim)):
        s = forecasting_rows(recs, 3, True)
        if s:
            n, cov, e, _ = s
            parts.append(f"{label}, K = 3, non-trivial: n = {n}, coverage {cov:.2f}, mean "
                         f"abs. error model {e['model'][0]:.2f} / linear {e['linear'][0]:.2f}"
                         f" / exponential {e['exponential'][0]:.2f}")
    return "; ".join(parts) or "no records"


# --- the document -----------------------------------------------------------------------------

def benchmark_text() -> str:
    """The benchmark's generated sections (analyses/benchmark/results.md), headings
    demoted to fit section 4 of docs/results.md."""
    path = HERE / "benchmark" / "results.md"
    if not path.exists():
        return "(no results yet: make benchmark-scores)"
    text = path.read_text().split("<!-- hand-written")[0]
    start = text.find("## The benchmark's chains")
    body = text[start:] if start >= 0 else text
    return body.replace("\n## ", "\n#### ").replace("## ", "#### ", 1).strip()


def benchmark_summary() -> str:
    path = HERE / "benchmark" / "backtest.jsonl"
    recs = [r for r in jsonl(path) if r["seed"] in (2, 3) and r["scores"]] \
        if path.exists() else []
    if not recs:
        return "no records"
    k3 = [r for r in recs if r["K"] == 3 and not r["scores"][0]["trivial"]
          and not r["scores"][0]["censored"]]
    if not k3:
        return f"{len(recs)} forecasts"
    model = np.mean([r["scores"][0]["rps"] for r in k3])
    base = {m: np.mean([r["baselines"][m]["rps"] for r in k3
                        if r["baselines"][m].get("available", True)])
            for m in k3[0]["baselines"]}
    best = min(base, key=base.get)
    return (f"{len({r['chain'] for r in recs})} real chains of seeds 2 and 3, K = 3, "
            f"non-trivial: n = {len(k3)}, mean RPS model {model:.2f}, best baseline "
            f"({best}) {base[best]:.2f}")


def blocks() -> dict[str, str]:
    sweep = jsonl(HERE / "cfg_sweep" / "chains.jsonl")
    red_chains = jsonl(HERE / "redifine_study" / "chains.jsonl")
    red_checks = jsonl(HERE / "redifine_study" / "checks.jsonl")
    real = jsonl(HERE / "forecasting" / "real.jsonl")
    sim = jsonl(HERE / "forecasting" / "simulated.jsonl")
    rows = [("[horizon_vs_cfg](../analyses/horizon_vs_cfg/results.md)", horizon_vs_cfg()),
            ("[toy_chain_phenomena](../analyses/toy_chain_phenomena/results.md)",
             toy_chain_phenomena()),
            ("[interval_coverage](../analyses/interval_coverage/results.md)",
             interval_coverage()),
            ("[sbc](../analyses/sbc/results.md)", "; ".join(sbc()) or "no records"),
            ("[horizon_calibration](../analyses/horizon_calibration/results.md)",
             horizon_calibration()),
            ("[cfg_sweep](../analyses/cfg_sweep/results.md)", cfg_sweep_summary(sweep)),
            ("[redifine_study](../analyses/redifine_study/results.md)",
             redifine_summary(red_checks)),
            ("[forecasting](../analyses/forecasting/results.md)",
             forecasting_summary(real, sim)),
            ("[benchmark](../analyses/benchmark/results.md)", benchmark_summary())]
    summary = "\n".join(["| study | headline |", "|---|---|"]
                        + [f"| {a} | {b} |" for a, b in rows])
    return {"summary": summary + source(["each study's record files or results.md"]),
            "cfg_sweep": cfg_sweep_table(sweep) + compute(sweep, [])
            + source(["analyses/cfg_sweep/chains.jsonl"], "analyses/cfg_sweep/run.py"),
            "redifine": redifine_table(red_chains, red_checks)
            + compute([r for r in red_chains if r["condition"] in ("drop", "both")], red_checks)
            + source(["analyses/redifine_study/chains.jsonl",
                      "analyses/redifine_study/checks.jsonl"], "analyses/redifine_study/run.py"),
            "benchmark": benchmark_text()
            + source(["analyses/benchmark/results.md"], "analyses/benchmark/run.py report"),
            "forecasting": forecasting_table(real, sim) + compute([], real + sim)
            + source(["analyses/forecasting/real.jsonl", "analyses/forecasting/simulated.jsonl"],
                     "analyses/forecasting/run.py")}


def source(files: list[str], script: str | None = None) -> str:
    made = f"; records made by `{script}`" if script else ""
    return (f"\n\n*Generated by `analyses/results_summary.py` from {', '.join(files)}"
            f"{made}.*")


def compute(chains: list[dict], other: list[dict]) -> str:
    """Wall times recorded in the records: chains (generation work) and fits."""
    parts = []
    cs = [r["chain_seconds"] for r in chains if r.get("chain_seconds")]
    if cs:
        parts.append(f"{len(cs)} chains, median {np.median(cs):.0f} s each from the "
                     f"manifest to the last generation (total {sum(cs) / 60:.0f} min)")
    fs = [r["fitted"]["seconds"] for r in chains if "fitted" in r]
    if fs:
        parts.append(f"breeder fits of these runs median {np.median(fs):.0f} s "
                     f"(total {sum(fs) / 60:.0f} min)")
    os_ = [r["seconds"] for r in other if "seconds" in r]
    if os_:
        parts.append(f"{len(os_)} fits/checks, median {np.median(os_):.0f} s (total "
                     f"{sum(os_) / 60:.0f} min)")
    if not parts:
        return ""
    return ("\n\nCompute on the shared 2-core development machine (`nice -n 15`, "
            "compilations included): " + "; ".join(parts) + ".")


def render(text: str, values: dict[str, str]) -> str:
    for name, body in values.items():
        begin = f"<!-- begin generated: {name} (analyses/results_summary.py) -->"
        end = f"<!-- end generated: {name} -->"
        if begin not in text:
            raise SystemExit(f"{DOC} has no block '{name}' ({begin})")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/results.md is stale")
    a = ap.parse_args(argv)
    old = DOC.read_text()
    new = render(old, blocks())
    if a.check:
        sys.exit(0 if new == old else 1)
    DOC.write_text(new)
    print(f"rewrote the generated blocks of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
