"""Calibrating the zero-shot theory on the miniature chain, and judging it on the shipped runs.

The zero-shot theory (`qtrait theory horizon --run`) predicts each generation's
within-concept variance from generation 0 alone. On the CPU miniature chain its selection
is far too strong (docs/theory.md section 4.2). `qtrait.theory.calibration` scales every
sampling step's w - 1 by one factor kappa. This script

1. fits the calibration on the forecasting benchmark's 16 seed-1 chains (data/benchmark,
   packed): the least-squares fit, over chains and generations 1..5, of the log of the
   median over cells of the predicted variance ratio V_t / V_0 to the log of the observed
   one, for kappa alone (bounded search over log kappa in [1e-3, 1]), for kappa with
   the heritability h2 (Nelder-Mead on log kappa and logit h2), and for kappa, h2 and the
   variance retention r of finetuning (Nelder-Mead on log kappa, logit h2, logit r). The
   rule, declared before the judged runs were looked at: the fit with the lowest training
   error is the calibration. (A mutation variance V_m = m V_0 as a third parameter was
   tried earlier and went to 0, m < 1e-5; the retention term answers the residual the
   two-parameter fit left: at w <= 2 the training chains lose 36-46% of their variance at
   generation 1, where that fit loses 18-21%, docs/theory.md 4.6);
2. judges the result on the shipped real runs chain_042 (w = 7.5), chain_w3 and chain_w1,
   which the fit never sees: for each of generations 1..5 the median ratio within a
   factor of 2 of the observed, and no divergence in 15 generations (every cell's
   predicted ratio stays below 10), calibrated and uncalibrated side by side.

    python analyses/zeroshot_calibration/run.py

Writes results.md beside this file. The fitted kappa is copied by hand into
qtrait/theory/calibration.py (MINIATURE), and test_zeroshot_calibration checks that the two
agree.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from scipy import optimize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT / "data" / "benchmark"))
import pack  # noqa: E402  (data/benchmark/pack.py)
from _results import write_results  # noqa: E402

from qtrait.models.data import design_schedule  # noqa: E402
from qtrait.rundir import open_run  # noqa: E402
from qtrait.stats.generation0 import gen0_from_run  # noqa: E402
from qtrait.theory.calibration import MINIATURE, NONE, Calibration  # noqa: E402
from qtrait.theory.generation import MapParams  # noqa: E402
from qtrait.theory.horizon import Criteria  # noqa: E402
from qtrait.theory.zeroshot import zero_shot  # noqa: E402

GENERATIONS = 5          # judged: generations 1..GENERATIONS
HORIZON = 15             # no divergence within this many generations
DIVERGED = 10.0          # a cell's predicted V_t / V_0 above this counts as divergence
FACTOR = 2.0             # the bar: within this factor of the observed median
SHIPPED = ("chain_042", "chain_w3", "chain_w1")
OPENED = ROOT / "runs" / "benchmark_packed"
FIGURE = "docs/figures/zeroshot_calibration.png"
CHOSEN = "calibrated (kappa, h2, retention)"


def observed(run) -> np.ndarray:
    """Median over cells of the within-concept guided variance ratio V_t / V_0,
    generations 0..GENERATIONS."""
    var = [run.table(t, "guided").groupby("concept")[run.traits].var(ddof=1).to_numpy()
           for t in run.generations[:GENERATIONS + 1]]
    with np.errstate(all="ignore"):
        r = np.array([(v / var[0]).ravel() for v in var])
    return np.nanmedian(np.where(np.isfinite(r), r, np.nan), axis=1)


#: generation 0 per run (read and inverted through the sampler once, not per evaluation
#: of the fit's loss)
_GEN0: dict = {}


def predicted(run, cal: Calibration, horizon: int = HORIZON) -> tuple[np.ndarray, float]:
    """(median over cells of the zero-shot V_t / V_0 for t = 0..GENERATIONS, the largest
    cell ratio within ``horizon`` generations) under ``cal`` (its kappa and h2), no
    mutation: `qtrait theory horizon --run` with that calibration."""
    guidance, sampler = design_schedule(run.design)
    params = cal.apply(MapParams(model="exact", h2=cal.h2, guidance=guidance,
                                 sampler=sampler, rho=0.0, v_mut=0.0,
                                 anchor=run.design.get("anchor", "base")))
    key = str(run.root)
    if key not in _GEN0:      # depends on the run and its sampler only, not on cal
        _GEN0[key] = gen0_from_run(run, params)
    g0, _, _, axes, _, corr = _GEN0[key]
    pred = zero_shot(g0, params, Criteria(t_max=horizon), axes=axes, correlation=corr)
    v = np.asarray(pred.trajectory["guided_var"], float)
    r = (v / v[0]).reshape(v.shape[0], -1)
    with np.errstate(all="ignore"):
        med = np.nanmedian(r[:GENERATIONS + 1], axis=1)
        worst = float(np.nanmax(r[:horizon + 1]))
    return med, worst


def judge(med: np.ndarray, worst: float, obs: np.ndarray) -> tuple[int, bool]:
    """(generations 1..GENERATIONS whose predicted median is within FACTOR of the
    observed, whether the run passes the bar: all of them and no divergence)."""
    ratio = med[1:] / obs[1:]
    inside = int(np.sum((ratio <= FACTOR) & (ratio >= 1 / FACTOR)))
    return inside, bool(inside == GENERATIONS and worst < DIVERGED)


def loss(runs: dict, obs: dict, kappa: float, h2: float = 1.0,
         retention: float = 1.0) -> float:
    cal = Calibration("fit", kappa, "", h2=h2, retention=retention)
    err = []
    for name, run in runs.items():
        med, _ = predicted(run, cal, horizon=GENERATIONS)
        with np.errstate(all="ignore"):
            e = np.log(med[1:]) - np.log(obs[name][1:])
        err.append(np.where(np.isfinite(e), e, 10.0))   # a vanished variance: a big miss
    return float(np.mean(np.concatenate(err) ** 2))


def figure(record: dict) -> None:
    """Observed, uncalibrated and calibrated median variance ratio per shipped run, with
    the factor-2 band around the observed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SHIPPED), figsize=(11, 3.4), sharey=True)
    t = np.arange(1, GENERATIONS + 1)
    for ax, name in zip(axes, SHIPPED):
        runs = record["runs"][name]
        obs = np.array(runs["uncalibrated"]["observed"])
        ax.fill_between(t, obs / FACTOR, obs * FACTOR, color="0.9", label="observed x/÷ 2")
        ax.plot(t, obs, "k-o", label="observed")
        for label, style in (("uncalibrated", "r--"), ("kappa only", "b:"),
                             ("kappa and h2", "c-."), (CHOSEN, "g-s")):
            ax.plot(t, np.maximum(runs[label]["median_ratio"], 1e-8), style, label=label)
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 2)
        ax.set_title(name)
        ax.set_xlabel("generation")
    axes[0].set_ylabel("median V_t / V_0 over cells")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(ROOT / FIGURE, dpi=100)
    plt.close(fig)


def main() -> None:
    t0 = time.perf_counter()
    names = [n for n in pack.chain_names() if n.endswith("seed=1")]
    train = {n: pack.open_chain(n, OPENED / n) for n in names}
    obs = {n: observed(r) for n, r in train.items()}
    one = optimize.minimize_scalar(lambda lk: loss(train, obs, float(np.exp(lk))),
                                   bounds=(np.log(1e-3), 0.0), method="bounded",
                                   options={"xatol": 0.01})
    k1 = float(np.exp(one.x))
    two = optimize.minimize(lambda x: loss(train, obs, float(np.exp(x[0])),
                                           float(1 / (1 + np.exp(-x[1])))),
                            x0=[one.x, 2.0], method="Nelder-Mead",
                            options={"xatol": 0.01, "fatol": 1e-4, "maxfev": 150})
    k2, h2 = float(np.exp(two.x[0])), float(1 / (1 + np.exp(-two.x[1])))

    def logit_inv(x):
        return float(1 / (1 + np.exp(-x)))
    three = optimize.minimize(lambda x: loss(train, obs, float(np.exp(x[0])), logit_inv(x[1]),
                                             logit_inv(x[2])),
                              x0=[two.x[0], two.x[1], 1.5], method="Nelder-Mead",
                              options={"xatol": 0.01, "fatol": 1e-4, "maxfev": 300})
    k3, h3, r3 = float(np.exp(three.x[0])), logit_inv(three.x[1]), logit_inv(three.x[2])
    kappa_only = Calibration("kappa only", round(k1, 3), "this run")
    kappa_h2 = Calibration("kappa and h2", round(k2, 3), "this run", h2=round(h2, 2))
    fits = {"kappa only": (kappa_only, one.fun), "kappa and h2": (kappa_h2, two.fun),
            CHOSEN: (Calibration(CHOSEN, round(k3, 3), "this run", h2=round(h3, 2),
                                 retention=round(r3, 2)), three.fun)}
    best = min(fits, key=lambda k: fits[k][1])
    if best != CHOSEN:
        raise SystemExit(f"the rule picks {best!r}, not {CHOSEN!r}: update CHOSEN, the "
                         "figure and the MINIATURE profile")
    fitted = fits[CHOSEN][0]
    lines = ["# Zero-shot calibration on the miniature chain (generated by run.py; do not "
             "edit)", "",
             f"Fitted on the {len(train)} seed-1 chains of the forecasting benchmark "
             f"(w_eff - 1 = kappa (w - 1)); mean squared log error of the median variance "
             f"ratio over generations 1..{GENERATIONS}:", "",
             "| calibration | kappa | h2 | retention | error |", "|---|---|---|---|---|",
             f"| none | 1 | 1 | 1 | {loss(train, obs, 1.0):.3f} |",
             f"| kappa only | {k1:.4f} | 1 | 1 | {one.fun:.3f} |",
             f"| kappa and h2 | {k2:.4f} | {h2:.3f} | 1 | {two.fun:.3f} |",
             f"| kappa, h2 and retention (chosen: lowest error) | {k3:.4f} | {h3:.3f} | "
             f"{r3:.3f} | {three.fun:.3f} |",
             "",
             f"The package's MINIATURE profile: kappa {MINIATURE.kappa}, h2 {MINIATURE.h2}, "
             f"retention {MINIATURE.retention} (the chosen fit, rounded).", "",
             "## Training chains (seed 1): median over cells of V_t / V_0", "",
             "| chain | | " + " | ".join(f"gen {t}" for t in range(1, GENERATIONS + 1)) + " |",
             "|---|---|" + "---|" * GENERATIONS]
    for n, run in train.items():
        med, _ = predicted(run, fitted, horizon=GENERATIONS)
        lines.append(f"| {n} | observed | " + " | ".join(f"{x:.3f}" for x in obs[n][1:]) + " |")
        lines.append("| | calibrated | " + " | ".join(f"{x:.3f}" for x in med[1:]) + " |")
    lines += ["", "## Judged: the shipped runs (never seen by the fit)", "",
              f"Bar: each of generations 1..{GENERATIONS} within a factor {FACTOR:g} of the "
              f"observed median, and every cell's predicted ratio below {DIVERGED:g} over "
              f"{HORIZON} generations (no divergence). No mutation; uncalibrated: h2 = 1, "
              "retention 1.",
              "",
              "| run | w | | " + " | ".join(f"gen {t}" for t in range(1, GENERATIONS + 1))
              + f" | largest cell ratio in {HORIZON} | within {FACTOR:g}x | verdict |",
              "|---|---|---|" + "---|" * GENERATIONS + "---|---|---|"]
    record = {"kappa_only": {"kappa": k1, "loss": one.fun},
              "kappa_h2": {"kappa": k2, "h2": h2, "loss": two.fun},
              "kappa_h2_retention": {"kappa": k3, "h2": h3, "retention": r3,
                                     "loss": three.fun},
              "chosen": "kappa_h2_retention", "runs": {}}
    for name in SHIPPED:
        run = open_run(ROOT / "data" / "runs" / name)
        o = observed(run)
        w = run.design.get("cfg_scale")
        lines.append(f"| {name} | {w:g} | observed | " + " | ".join(f"{x:.3f}" for x in o[1:])
                     + " | | | |")
        for label, cal in (("uncalibrated", NONE), ("kappa only", kappa_only),
                           ("kappa and h2", kappa_h2), (CHOSEN, fitted)):
            med, worst = predicted(run, cal)
            inside, ok = judge(med, worst, o)
            lines.append(f"| | | {label} | " + " | ".join(f"{x:.3g}" for x in med[1:])
                         + f" | {worst:.3g} | {inside}/{GENERATIONS} | "
                         f"{'pass' if ok else 'fail'} |")
            record["runs"].setdefault(name, {})[label] = {
                "median_ratio": med[1:].tolist(), "observed": o[1:].tolist(),
                "worst": worst, "within": inside, "pass": ok}
    # held out: the benchmark's seeds 2 and 3 (the same 16 designs, other seeds), which
    # the fit never saw either; more chains than the three shipped runs
    held = {n: pack.open_chain(n, OPENED / n) for n in pack.chain_names()
            if not n.endswith("seed=1")}
    held_obs = {n: observed(r) for n, r in held.items()}
    lines += ["", f"## Held out: the benchmark's seeds 2 and 3 ({len(held)} chains)", "",
              "Mean squared log error over generations 1..5 (as in training) and the chains "
              "that pass the bar above.", "",
              "| calibration | error | chains passing |", "|---|---|---|"]
    record["held_out"] = {}
    for label, cal in (("uncalibrated", NONE), ("kappa only", kappa_only),
                       ("kappa and h2", kappa_h2), (CHOSEN, fitted)):
        err = loss(held, held_obs, cal.kappa, cal.h2, cal.retention)
        passing = sum(judge(*predicted(r, cal), held_obs[n])[1] for n, r in held.items())
        lines.append(f"| {label} | {err:.3f} | {passing}/{len(held)} |")
        record["held_out"][label] = {"loss": err, "passing": passing, "chains": len(held)}
    figure(record)
    lines += ["", f"![Observed and predicted median variance ratio](../../{FIGURE})", "",
              f"Machine: {platform.machine()}, {platform.python_version()}, "
              f"{date.today().isoformat()}; {time.perf_counter() - t0:.0f} s.", ""]
    (HERE / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    write_results(HERE, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
