"""Adequacy of the default model on the shipped real runs (docs/models.md section 11).

    python analyses/adequacy/run.py            # fit and check every shipped real run
    python analyses/adequacy/run.py --with level_share   # ... with optional prior keys
    python analyses/adequacy/run.py traits     # which traits the failing mean checks see
    python analyses/adequacy/run.py report     # rewrite results.md from the records

Per run: the default model (breeder, default sampler settings) on all generations and
every trait, then :func:`qtrait.adequacy.check` (one-step-ahead PIT by exact refits on
generations 0..t, t >= 2; the per-generation posterior predictive check). Records go to
records.jsonl (one line per run; a rerun skips runs already recorded), the table to
results.md with the machine and the time each check took. Records carry the
likelihood's version (``LIKELIHOOD_VERSION``) and the model's optional terms
(:func:`model_terms`), how it samples its generation shocks, its pooled learning noises
and its first step (``BreederSpec.shock_sampling``, ``noise_sampling``,
``first_step_sampling``) and the sampler's chains, draws and tuning steps; a run is
checked again under a new likelihood, new terms, a new sampling or new sampler defaults,
and the table shows every version, newest first.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from _results import read_records, write_results  # noqa: E402

from qtrait.adequacy import ppc_failing  # noqa: E402

RECORDS = HERE / "records.jsonl"
#: the per-generation check of the default model on each shipped run with its gaps per
#: trait (step ``traits``: one fit on all generations, no refits)
TRAIT_RECORDS = HERE / "traits.jsonl"
RUNS = ("chain_042", "chain_042_redifine", "chain_w1", "chain_w3")
MODEL = "breeder"


#: records written before the likelihood had a version: the independent (mean, variance)
#: law with a per-set kurtosis floored at 0
OLD_LIKELIHOOD = "independent/per-set-kurtosis"
#: the optional terms of the default model (prior keys that add a term to its graph);
#: records written before they were recorded had none of them
TERMS = ("gen_shock_sd", "first_step", "mean_momentum", "mean_offset_sd", "log_level_mu",
         "v_mut_slab", "sigma_learn_trait", "sigma_learn_pooled", "mean_shock_sd",
         "shared_noise", "mean_push_sd", "push_first")
#: ``--with`` NAME: the breeder's optional prior keys added to the defaults
EXTRA = {"momentum": "MOMENTUM_PRIOR", "offset": "MEAN_OFFSET_PRIOR",
         "level_share": "LEVEL_SHARE_PRIOR", "spike": "V_MUT_SLAB_PRIOR",
         "trait_noise": "SIGMA_TRAIT_PRIOR", "lambda_spread": "LAMBDA_SPREAD_PRIOR",
         "mean_shock": "MEAN_SHOCK_PRIOR", "shared_noise": "SHARED_NOISE_PRIOR",
         "push": "MEAN_PUSH_PRIOR", "push_first": "PUSH_WITH_FIRST_PRIOR"}
#: how records name the LogNormal prior of log lambda's spread (a tuple on the key
#: ``log_lambda_sd``, which every model has: breeder.LAMBDA_SPREAD_PRIOR)
LOGNORMAL_SPREAD = "log_lambda_sd~lognormal"


def model_spec(extra: str | None = None):
    """The default model, with the optional priors ``extra`` (a key of EXTRA) added."""
    from dataclasses import replace

    from qtrait.models import breeder, get_spec

    spec = get_spec(MODEL)
    if extra is None:
        return spec
    return replace(spec, priors=dict(spec.priors) | getattr(breeder, EXTRA[extra]))


def model_terms(spec=None) -> str:
    """The model's name and the optional terms its priors switch on, as records name it:
    e.g. ``breeder+gen_shock_sd+first_step`` (``spec``: the default model when None)."""
    spec = spec or model_spec()
    terms = [k for k in TERMS if k in spec.priors]
    if isinstance(spec.priors.get("log_lambda_sd"), (tuple, list)):
        terms.append(LOGNORMAL_SPREAD)
    return "+".join([MODEL] + terms)


def records() -> list[dict]:
    rows = read_records(RECORDS)
    # records written before the shocks' (the pooled noises') sampling was recorded sampled
    # them non-centred
    return [r | {"likelihood": r.get("likelihood", OLD_LIKELIHOOD),
                 "terms": r.get("terms", MODEL),
                 "shocks": r.get("shocks", "non-centred" if "gen_shock_sd" in
                                 r.get("terms", "") else ""),
                 "noise": r.get("noise", "non-centred" if "sigma_learn_pooled" in
                                r.get("terms", "") else ""),
                 # and before 2026-12-07's second change sampled the first step plainly,
                 # 1,000 draws after 1,000 tuning steps
                 "first_step": r.get("first_step", "plain" if "first_step" in
                                     r.get("terms", "") else ""),
                 "sampler": r.get("sampler", {"chains": 4, "draws": 1000, "tune": 1000})}
            for r in rows]


def check_runs(extra: str | None = None) -> None:
    from qtrait.adequacy import check
    from qtrait.fit import SamplerSettings, fit
    from qtrait.models import chain_data, fit_data
    from qtrait.models.base import LIKELIHOOD_VERSION
    from qtrait.rundir import open_run

    spec = model_spec(extra)
    terms = model_terms(spec)
    settings = SamplerSettings()
    sampler = {"chains": settings.chains, "draws": settings.draws, "tune": settings.tune}
    done = {(r["run"], r["shocks"], r["noise"], r["first_step"]) for r in records()
            if r["likelihood"] == LIKELIHOOD_VERSION and r["terms"] == terms
            and r["sampler"] == sampler}
    for name in RUNS:
        run = open_run(ROOT / "data" / "runs" / name)
        cd = chain_data([fit_data(run)])
        shocks, noise = spec.shock_sampling(cd), spec.noise_sampling(cd)
        first = spec.first_step_sampling(cd)
        if (name, shocks, noise, first) in done:
            continue
        t0 = time.perf_counter()
        full = fit(run, MODEL, settings, save=False, spec=spec)
        t_fit = time.perf_counter() - t0
        adq = check(run, MODEL, settings, full=full, spec=spec)
        rec = {"run": name, "model": MODEL, "terms": terms, "shocks": shocks, "noise": noise,
               "first_step": first, "sampler": sampler,
               "likelihood": LIKELIHOOD_VERSION,
               "cells": full.data.J,
               "generations": full.data.G, "diagnostics": full.diagnostics,
               "adequacy": adq.to_dict(), "fit_seconds": round(t_fit, 1),
               "seconds": round(time.perf_counter() - t0, 1),
               "machine": f"{platform.machine()}, 2 cores", "date": time.strftime("%Y-%m-%d")}
        with RECORDS.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{name}: {adq.verdict()} ({rec['seconds']:.0f} s)", flush=True)


def trait_runs() -> None:
    """Fit the default model to every shipped run (all generations, every trait; no
    refits) and record its per-generation check with each generation's gap per trait
    (:func:`qtrait.adequacy.trait_gaps`) in traits.jsonl; a rerun skips the runs recorded
    with the same model and sampler."""
    from qtrait.adequacy import ppc_generations
    from qtrait.fit import SamplerSettings, fit
    from qtrait.rundir import open_run

    spec = model_spec()
    terms = model_terms(spec)
    settings = SamplerSettings()
    sampler = {"chains": settings.chains, "draws": settings.draws, "tune": settings.tune}
    done = {r["run"] for r in read_records(TRAIT_RECORDS)
            if r["terms"] == terms and r["sampler"] == sampler}
    for name in RUNS:
        if name in done:
            continue
        run = open_run(ROOT / "data" / "runs" / name)
        t0 = time.perf_counter()
        full = fit(run, MODEL, settings, save=False, spec=spec)
        rec = {"run": name, "model": MODEL, "terms": terms, "sampler": sampler,
               "axes": list(run.axes), "diagnostics": full.diagnostics,
               "ppc": ppc_generations(full, seed=settings.seed),
               "seconds": round(time.perf_counter() - t0, 1),
               "machine": f"{platform.machine()}, 2 cores", "date": time.strftime("%Y-%m-%d")}
        with TRAIT_RECORDS.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{name}: {len(ppc_failing(rec['ppc'], ('mean',)))} generations' mean fails "
              f"({rec['seconds']:.0f} s)", flush=True)


def trait_gaps_table() -> list[str]:
    """Per shipped run and generation whose cell-averaged mean fails its check (the
    newest record of the default model in traits.jsonl): the gap, the part of it from the
    image statistics (the traits that are not the run's axes), and the three traits that
    contribute most."""
    default = model_terms()
    recs = {r["run"]: r for r in read_records(TRAIT_RECORDS) if r["terms"] == default}
    if not recs:
        return []
    out = ["## Which traits the failing mean checks see", "",
           "The default model fitted once more to each run (all generations, every trait, "
           "default sampler; step `traits`, records in traits.jsonl). For each generation "
           "whose cell-averaged mean fails its check: the gap (observed less the mean of "
           "its replicate, generation-0 SDs), the part of it that comes from the image "
           "statistics (the traits that are not among the run's feature axes, its manifest's "
           "`traits.axes`: each trait's "
           "contribution is its share of the cells times its own gap, and the "
           "contributions add up to the gap), and the three largest contributions. "
           "Generated by `python analyses/adequacy/run.py report`.", "",
           "| run | fit passes its diagnostics | generation | gap | from image statistics | "
           "largest contributions (trait: contribution, own gap) |",
           "|---|---|---|---|---|---|"]
    for name in RUNS:
        r = recs.get(name)
        if r is None:
            continue
        rows = {g["generation"]: g for g in r["ppc"]}
        for t in ppc_failing(r["ppc"], ("mean",)):
            by = rows[t]["mean"]["by_trait"]
            gap = sum(b["contribution"] for b in by)
            img = sum(b["contribution"] for b in by if b["trait"] not in r["axes"])
            top = ", ".join(f"{b['trait']}: {b['contribution']:+.2f}, {b['gap']:+.1f}"
                            for b in by[:3])
            out.append(f"| {name} | {'yes' if r['diagnostics']['ok'] else 'no'} | {t} | "
                       f"{gap:+.2f} | {img:+.2f} | {top} |")
    dates = sorted({r["date"] for r in recs.values()})
    return out + ["", f"Machine: {next(iter(recs.values()))['machine']}, {dates[-1]}."]


def sampling_label(r: dict) -> str:
    """How a record's fit sampled its shocks, pooled noises and first step, and how long,
    e.g. " (shocks centred, noise centred, first step shifted; 4 x 1500 after 500)"."""
    parts = [f"{k.replace('_', ' ')} {r[k]}" for k in ("shocks", "noise", "first_step")
             if r[k]]
    s = r["sampler"]
    return f" ({', '.join(parts)}; {s['chains']} x {s['draws']} after {s['tune']})"


def mean_failures(rec: dict) -> list[int]:
    """The generations whose cell-averaged mean fails the per-generation check in an
    adequacy record (p below the verdict's bound: :func:`qtrait.adequacy.ppc_failing`)."""
    return ppc_failing(rec["adequacy"]["ppc"], ("mean",))


def mean_gaps_table() -> list[str]:
    """Per shipped run and generation, the observed cell-averaged mean less its one-step
    replicate's median, for the newest default record and the newest record of each
    variant sampled the same way (where the per-generation check fails)."""
    rows = records()
    default = model_terms()
    newest = [r for r in rows if r["terms"] == default]
    if not newest:
        return []
    label = sampling_label(newest[-1])
    models = list(dict.fromkeys(r["terms"] for r in rows if sampling_label(r) == label
                                and r["terms"].startswith(default)))
    pick = {(r["terms"], r["run"]): r for r in rows if sampling_label(r) == label}
    gens = sorted({g["generation"] for r in pick.values() for g in r["adequacy"]["ppc"]})
    out = ["## Where the cell-averaged mean fails", "",
           "Per generation, the observed mean over a run's cells of the guided means less the "
           "median of its one-step replicate (the per-generation check above: each "
           "generation replicated from the observed one before it), for the default and the "
           f"variants fitted the same way{label}; * marks a generation whose check fails (p "
           "below 0.01 over the number of checks). Positive: the cells' means moved further "
           "up than the model's step from their parents. Generated by "
           "`python analyses/adequacy/run.py report`.", "",
           "| run | model | " + " | ".join(f"gen {g}" for g in gens) + " |",
           "|---|---|" + "---|" * len(gens)]
    for name in RUNS:
        for terms in models:
            r = pick.get((terms, name))
            if r is None:
                continue
            ppc = {g["generation"]: g for g in r["adequacy"]["ppc"]}
            failing = mean_failures(r)
            cells = [f"{ppc[t]['mean']['observed'] - ppc[t]['mean']['replicated']:+.2f}"
                     + ("*" if t in failing else "") if t in ppc else "-" for t in gens]
            out.append(f"| {name} | {'default' if terms == default else '+' + terms[len(default) + 1:]}"
                       f" | " + " | ".join(cells) + " |")
    return out


def report() -> None:
    rows = records()
    key = lambda r: (r["likelihood"], r["terms"], sampling_label(r))  # noqa: E731
    groups = list(dict.fromkeys(map(key, rows)))[::-1]
    rows = sorted(rows, key=lambda r: groups.index(key(r)))
    out = ["# Adequacy of the default model on the shipped real runs", "",
           f"Model `{MODEL}`, default settings of their day (the model column says which: "
           "chains x draws after tuning steps), every trait; the "
           "one-step PIT from exact refits on generations 0..t (t >= 2) and the "
           "per-generation posterior predictive check (docs/models.md section 11). "
           "Generated by `python analyses/adequacy/run.py`.", "",
           "| likelihood | model | run | cells | gens | R-hat max | bulk ESS min | divergences | "
           "fit passes its diagnostics | PIT test p | one-step 90% "
           "coverage (mean / var) | smallest PPC p (of m) | PPCs below 0.01 / m (mean / "
           "log var) | verdict | worst cell | time |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, d = r["adequacy"], r["diagnostics"]
        w = a["worst_cells"][0] if a["worst_cells"] else None
        m = 2 * len(a["ppc"])
        out.append(
            f"| {r['likelihood']} | {r['terms']}"
            + sampling_label(r) + f" | {r['run']} | {r['cells']} | {r['generations']} | {d['rhat_max']:.3f} | "
            f"{d['ess_bulk_min']:.0f} | "
            f"{d['divergences']} | {'yes' if d['ok'] else 'NO'} | "
            f"{a['pit_test']['p_value']:.2g} | {a['coverage90']:.3f} "
            f"({a['by_statistic']['mean']['coverage']:.3f} / "
            f"{a['by_statistic']['var']['coverage']:.3f}) | {a['ppc_min_p']:.2g} ({m}) | "
            + " / ".join(str(len(ppc_failing(a["ppc"], (k,)))) for k in ("mean", "log_var"))
            + " | "
            f"{'adequate' if a['ok'] else 'INADEQUATE'} | "
            + (f"{w['cell']} {w['statistic']} (z {w['z']:+.1f})" if w else "-")
            + f" | {r['seconds'] / 60:.1f} min |")
    if rows:
        dates = sorted({r["date"] for r in rows})
        when = dates[0] if len(dates) == 1 else f"records of {dates[0]} to {dates[-1]}"
        out += ["", f"Machine: {rows[-1]['machine']}, {when} (the newest rows first). Time: "
                "the fit on all generations plus the refits, one process, nothing else "
                "running."]
    write_results(HERE, "\n".join(out + [""] + mean_gaps_table() + [""]
                                   + trait_gaps_table()))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", nargs="?", choices=("check", "traits", "report"),
                    default="check")
    ap.add_argument("--with", dest="extra", choices=sorted(EXTRA),
                    help="add the breeder's optional prior keys of this name")
    a = ap.parse_args()
    if a.step == "check":
        check_runs(a.extra)
    elif a.step == "traits":
        trait_runs()
    report()
