"""The report's sections, each built by one function from a run, its summary, fits and
forecast (pure: no fitting and no writing here; :mod:`qtrait.report.build` supplies the
inputs). Values are in the units the models use, generation-0 guided SD units per
(concept, trait), averaged over concepts where a figure shows one line per trait."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..models.data import likelihood_line, likelihood_summary
from ..rundir import layout
from . import figures
from .document import Figure, Section, Table, Text

#: section ids, in page order (stable: tests and links use them)
SECTION_IDS = ("design", "trajectories", "selection", "variance-decay", "horizon",
               "diagnostics", "model-comparison", "sensitivity", "redifine", "images")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
#: images larger than this are shown as thumbnails
MAX_IMAGE_BYTES = 1_500_000
IMAGES_PER_GENERATION = 3


def _gens(gens) -> str:
    return f"{gens[0]}..{gens[-1]}"


def shown_traits(run, cd, n: int = 4) -> list[str]:
    """The traits figures show: the manifest's axes first, then the others, among the
    fitted traits (a trait constant at generation 0 is not fitted)."""
    fitted = cd.runs[0].traits
    order = [t for t in run.axes if t in fitted] + [t for t in fitted if t not in run.axes]
    return order[:n]


def concept_average(values: np.ndarray, cd, trait: str) -> np.ndarray:
    """Mean over concepts of a (..., J) array for one trait (NaN-aware)."""
    idx = [j for j, (_, _, t) in enumerate(cd.cells) if t == trait]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[..., idx], axis=-1)


def predictive_replicates(result, seed: int = 0, max_draws: int = 1000):
    """One-step-ahead posterior predictive replicates of every guided set's (mean, variance):
    for each generation t >= 1, the model's own forward step from the observed guided set
    of t-1 (learning noise included) for every posterior draw, then a set of that
    generation's size and kurtosis drawn from it (the likelihood's sampling model).
    Arrays (draws, G, J); generation 0 (the real data) is NaN."""
    from ..forecast import posterior_draws
    from ..models.base import sample_guided
    from ..models.data import pooled_shape

    cd, spec = result.data, result.spec
    draws = posterior_draws(result.idata, max_draws)
    rng = np.random.default_rng(seed)
    S = next(iter(draws.values())).shape[0]
    g = cd.sets["guided"]
    zbar = np.full((S, cd.G, cd.J), np.nan)
    s2 = np.full((S, cd.G, cd.J), np.nan)
    law = pooled_shape(cd)
    for t in range(1, cd.G):
        fwd = spec.forward(draws, cd, start=t, t_end=t, rng=rng)
        n = np.where(np.isfinite(g.n[t]), g.n[t], g.n[t - 1])
        with np.errstate(all="ignore"):
            zbar[:, t], s2[:, t] = sample_guided(rng, fwd["guided_mean"][:, 0],
                                                 fwd["guided_var"][:, 0], n, law.kurt,
                                                 law.skew)
    return zbar, s2


def _q(a: np.ndarray, qs=(0.05, 0.25, 0.5, 0.75, 0.95)) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(a, qs, axis=0)


# --- design --------------------------------------------------------------------------------

def design_section(run, summary) -> Section:
    """The ``design`` section: the manifest's design fields, generations, traits, axes,
    concepts and sets present, images per generation and set, and a simulated run's truth."""
    d = run.design
    sec = Section("design", "Design")
    concepts = sorted(summary.traits["concept"].unique())
    sets = [s for s in layout.SETS if any(s in run.sets(g) for g in run.generations)]
    rows = [("run_id", run.run_id), ("path", str(run.root)),
            ("schema_version", run.schema_version),
            ("producer", run.manifest.get("producer", {}).get("name", "-"))]
    rows += [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in d.items()]
    rows += [("generations", f"{_gens(run.generations)} ({len(run.generations)} complete)"),
             ("incomplete generations", ", ".join(map(str, run.incomplete)) or "none"),
             ("traits", f"{len(run.traits)}: {', '.join(run.traits)}"),
             ("trait axes", f"{len(run.axes)}: {', '.join(run.axes)}"),
             ("concepts", f"{len(concepts)}: {', '.join(concepts)}"),
             ("sets present", ", ".join(sets))]
    truth = run.manifest.get("truth")
    if truth:
        h = truth.get("horizon") or {}
        rows += [("simulated (truth.model)", truth.get("model")),
                 ("true horizon", h.get("t_star") if h.get("t_star") is not None
                  else f"none up to {h.get('censored_at')}")]
    table = pd.DataFrame(rows, columns=["field", "value"]).astype({"value": str})
    sec.add(Text(f"Run {run.run_id}: guidance w = {d.get('cfg_scale')} "
                 f"({d.get('cfg_schedule')} schedule), condition drop p_drop = "
                 f"{d.get('p_drop')}, anchor = {d.get('anchor')}; "
                 f"{len(run.generations)} generations, sets {', '.join(sets)}."),
            Table("design", "Design fields of the manifest, and what the run holds", table))
    div = summary.diversity
    n = div.pivot(index="generation", columns="set", values="n")
    n = n[[s for s in layout.SETS if s in n.columns]].reset_index()
    sec.add(Table("images_per_set", "Images per generation and set (all concepts)",
                  n.astype({c: "Int64" for c in n.columns if c != "generation"})))
    return sec


# --- trajectories ----------------------------------------------------------------------------

@dataclass
class ZeroShot:
    """A zero-shot prediction (:func:`qtrait.theory.zeroshot.zero_shot`) over ``traits``
    (the run's trait names, the last axis of its trajectories), and what it assumed."""

    pred: object
    traits: list[str]
    text: str


def zeroshot_standardised(zs: ZeroShot, cd, trait: str, generations: int):
    """A zero-shot trajectory (raw units, (T+1, C, K) over the run's traits) in the fit's
    units for one trait, averaged over concepts: (mean, variance ratio) arrays."""
    fd = cd.runs[0]
    k_fit = fd.traits.index(trait)
    k_run = zs.traits.index(trait)
    m = zs.pred.trajectory["guided_mean"][:generations, :, k_run]
    v = zs.pred.trajectory["guided_var"][:generations, :, k_run]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ms = (m - fd.center[:, k_fit]) / fd.scale[:, k_fit]
        vs = v / fd.scale[:, k_fit] ** 2
        return np.nanmean(ms, axis=1), np.nanmean(vs, axis=1)


def trajectory_table(result, traits, zeroshot=None, seed: int = 0) -> pd.DataFrame:
    """Per generation, shown trait and statistic (mean, var): observed (mean over concepts),
    posterior predictive quantiles and the zero-shot theory."""
    cd = result.data
    g = cd.sets["guided"]
    zbar, s2 = predictive_replicates(result, seed)
    rows = []
    for trait in traits:
        zs = zeroshot_standardised(zeroshot, cd, trait, cd.G) if zeroshot is not None \
            else (np.full(cd.G, np.nan), np.full(cd.G, np.nan))
        for stat, obs, rep, z in (("mean", g.mean, zbar, zs[0]), ("var", g.var, s2, zs[1])):
            o = concept_average(obs, cd, trait)
            qs = _q(concept_average(rep, cd, trait))
            for t in range(cd.G):
                rows.append({"generation": cd.generations[t], "trait": trait, "stat": stat,
                             "observed": o[t], "pp_q05": qs[0, t], "pp_q25": qs[1, t],
                             "pp_median": qs[2, t], "pp_q75": qs[3, t], "pp_q95": qs[4, t],
                             "zeroshot": z[t] if t < len(z) else np.nan})
    return pd.DataFrame(rows)


def trajectories_section(result, traits, zeroshot: ZeroShot | None, zeroshot_text: str,
                         seed: int = 0) -> Section:
    """The ``trajectories`` section: guided means and variances of ``traits`` per generation,
    observed, with the fitted model's one-step posterior predictive bands and the zero-shot
    theory (``zeroshot``, or ``zeroshot_text`` saying why there is none)."""
    sec = Section("trajectories", "Trajectories")
    table = trajectory_table(result, traits, zeroshot, seed)
    fd = result.data.runs[0]
    sec.add(Text(f"Guided trait means and variances per generation for {len(traits)} "
                 f"trait(s) (the manifest's axes first), in generation-0 SD units per "
                 f"concept and averaged over the {len(fd.concepts)} concept(s). Bands: the "
                 f"{result.model} model's one-step posterior predictive (50% and 90%): each "
                 "generation predicted from the observed one before it, with sampling and "
                 "learning noise. Generation 0 is the real data and is not modelled."))
    if zeroshot_text:
        sec.add(Text(zeroshot_text, "p" if zeroshot is not None else "note"))
    constant = [t for t in fd.excluded if t not in fd.near_constant]
    if constant:
        sec.add(Text(f"Not fitted (constant within a concept at generation 0): "
                     f"{', '.join(constant)}.", "note"))
    sec.add(Text(likelihood_line(likelihood_summary(result.data)).capitalize() + ".", "note"))
    sec.add(Figure("trajectories", "Observed guided means and variances (points), "
                   f"{result.model} posterior predictive bands, zero-shot theory (dashed)",
                   figures.trajectories(table, traits, result.model)),
            Table("trajectories", "Trajectories: observed, posterior predictive quantiles "
                  "and zero-shot theory per generation, trait and statistic", table,
                  max_rows=2 * len(traits) * result.data.G))
    return sec


# --- selection and inheritance ----------------------------------------------------------------

def selection_section(run, summary, traits) -> Section:
    """The ``selection`` section: selection differentials, variance ratios and realized
    heritability from the probes, as ``qtrait summarize`` computes them (a note when the run
    has no probes)."""
    sec = Section("selection", "Selection and inheritance")
    sel, her = summary.selection, summary.heritability
    if sel.empty and her.empty:
        sec.add(Text(f"Run {run.run_id} has no probe sets (probe_w1): the selection "
                     "differential and realized heritability need the w = 1 probe of each "
                     "generation, so this section is empty.", "note"))
        for note in summary.notes:
            sec.add(Text(note, "note"))
        return sec
    sec.add(Text("From the probes, as qtrait summarize computes them: the selection "
                 "differential S = mean(guided) - mean(w=1 probe) and the variance ratio "
                 "guided / w=1 probe per generation (>= 1), and realized heritability, "
                 f"{_h2_method(summary)}. Tables show the median over concepts for the shown "
                 "traits; the CSV files hold every generation, concept and trait "
                 f"({int(summary.ci * 100)}% intervals)."))
    shown = sel[sel["trait"].isin(traits)]
    med = shown.groupby(["generation", "trait"], sort=False)[["S", "var_ratio"]].median()
    wide = med.unstack("trait")
    wide.columns = [f"{stat} {trait}" for stat, trait in wide.columns]
    order = [f"{s} {t}" for t in traits for s in ("S", "var_ratio") if f"{s} {t}" in wide]
    sec.add(Figure("selection", "Selection differential and variance ratio per generation, "
                   "realized h2 per trait", figures.selection(sel, her, traits)),
            Table("selection", "Selection differential S and variance ratio (median over "
                  "concepts; CSV: every row of qtrait summarize)", sel,
                  shown=wide[order].reset_index()))
    if not her.empty:
        h = her.groupby("trait", sort=False).agg(
            h2_median=("h2", "median"), h2_min=("h2", "min"), h2_max=("h2", "max"),
            n_pairs=("n_pairs", "median"), method=("method", "first"))
        h = h.reindex([t for t in run.traits if t in h.index]).reset_index()
        sec.add(Table("heritability", "Realized heritability per trait (median and range "
                      "over concepts; CSV: per concept with intervals)", her, shown=h))
    for note in summary.notes:
        sec.add(Text(note, "note"))
    return sec


def _h2_method(summary) -> str:
    if summary.anchor == "base":
        return ("by regression from the base model's mean (anchor = base: every finetune "
                "restarts from the base model, so R/S would tend to 0 whatever h2 is)")
    return "as response over selection R/S (anchor = previous)"


# --- variance decay -------------------------------------------------------------------------

def total_ratio(var: np.ndarray, var0: np.ndarray) -> np.ndarray:
    """Total variance over the cells relative to generation 0's, for (..., J) arrays."""
    return np.nansum(var, axis=-1) / np.nansum(var0)


def variance_table(fits: dict, fc, cd, seed: int = 0) -> pd.DataFrame:
    """Observed total variance ratio V_t/V_0 per generation beside each fit's one-step
    posterior predictive quantiles and the forecast's (``fc``) trajectories."""
    g = cd.sets["guided"]
    out = pd.DataFrame({"generation": cd.generations, "observed": total_ratio(g.var, g.var[0])})
    for name, res in fits.items():
        _, s2 = predictive_replicates(res, seed)
        with np.errstate(all="ignore"):
            tot = total_ratio(s2, g.var[0])
        tot[:, 0] = np.nan
        qs = _q(tot)
        for i, lab in enumerate(("q05", "q25", "median", "q75", "q95")):
            out[f"{name}_{lab}"] = qs[i]
    if fc is not None:
        from .sensitivity import horizon_trajectories

        tot = total_ratio(horizon_trajectories(fc)[1][:, :cd.G], g.var[0])
        qs = _q(tot, (0.05, 0.5, 0.95))
        n = qs.shape[1]
        for i, lab in enumerate(("q05", "median", "q95")):
            col = np.full(cd.G, np.nan)
            col[:n] = qs[i]
            out[f"forecast_{lab}"] = col
    return out


def variance_section(fits: dict, fc, cd, baselines: dict, seed: int = 0) -> Section:
    """The ``variance-decay`` section: :func:`variance_table` as a figure and a table, with
    the collapse threshold q and the horizons of the naive ``baselines``."""
    sec = Section("variance-decay", "Variance decay")
    k, q = fc.from_generations, fc.criteria.q
    table = variance_table(fits, fc, cd, seed)
    sec.add(Text("The observed total variance ratio V_t / V_0 (summed over every fitted "
                 "concept and trait in generation-0 units, the statistic of the forecast's "
                 "baselines) against each fitted model's one-step posterior predictive, and "
                 f"the forecast from generations 0..{k - 1} run forward (the moments its "
                 "horizons are read from). "
                 f"Variance collapse is V_t / V_0 < q = {q}."),
            Figure("variance_decay", "Total variance ratio: observed, posterior predictive "
                   "bands, forecast and naive baselines",
                   figures.variance_decay(table, list(fits), q, k, baselines)),
            Table("variance_decay", "Total variance ratio per generation", table))
    b = pd.DataFrame([{"baseline": name, "horizon": t, "fitted_on": f"generations 0..{k - 1}"}
                      for name, t in baselines.items()]).astype({"horizon": "Int64"})
    sec.add(Table("baselines", "Baselines (qtrait.baselines): the median of each baseline's "
                  "forecast of the run's horizon from the first "
                  f"{k} generations, with the same target and detection rule as the model "
                  "(none: no crossing within T_max, or not available)", b))
    return sec


# --- horizon --------------------------------------------------------------------------------

def horizon_table(fc, traits) -> pd.DataFrame:
    """P(collapse by generation t), t = 0..T_max, for the run and the shown traits."""
    run = fc.run.to_dict()["p_collapse_by"]
    out = pd.DataFrame({"generation": np.arange(len(run)), "run": run})
    for t in traits:
        if t in fc.traits:
            out[t] = fc.traits[t].to_dict()["p_collapse_by"]
    return out


def horizon_section(fc, k_fit, bt: dict | None, traits, zeroshot_horizon: str | None,
                    last_generation: int) -> Section:
    """The ``horizon`` section: P(collapse by generation t) of the forecast ``fc`` (fitted on
    generations 0..K-1 by ``k_fit``), the horizons' medians and 90% intervals, the observed
    crossing, the backtest scores ``bt`` when the run goes on after K, and the zero-shot
    horizon."""
    sec = Section("horizon", "Collapse horizon forecast")
    crit = fc.criteria
    k = fc.from_generations
    d = fc.run.to_dict()
    observed = None
    if bt is not None:
        observed = bt["scores"][0]["observed"]
    elif d["observed"]:
        observed = d["median"]
    p_by = horizon_table(fc, traits)
    sec.add(Text(f"The {k_fit.model} model fitted on generations 0..{k - 1} (as qtrait "
                 f"predict -k {k}) and run forward to T_max = {crit.t_max}: P(collapse by "
                 f"generation t) is the fraction of posterior draws whose horizon t* is at "
                 f"most t. The run's horizon (theory.md 3.1) is the first generation where "
                 f"the concept-pooled variance ratio of the trait axes falls below "
                 f"{crit.q} or their pooled Mahalanobis drift exceeds the chi-square "
                 f"quantile at P(|Z| < {crit.d}), detected beyond sampling noise at "
                 f"familywise level {crit.alpha} in a chain of this run's size. Its last "
                 "entry is 1 - P(no collapse within T_max)."))
    if d["observed"]:
        sec.add(Text(f"The collapse is already observed within the fitted generations, at "
                     f"generation {d['median']}: the forecast is that generation.", "note"))
    t_show = crit.t_max if d["hi90"] is None else min(crit.t_max,
                                                       max(last_generation, d["hi90"]) + 3)
    rows = [{"horizon": "run", **{c: d[c] for c in ("median", "lo90", "hi90",
                                                    "p_no_collapse", "observed")}}]
    for name, h in fc.traits.items():
        hd = h.to_dict()
        rows.append({"horizon": name, **{c: hd[c] for c in ("median", "lo90", "hi90",
                                                           "p_no_collapse", "observed")}})
    summary = pd.DataFrame(rows).astype({"median": "Int64", "lo90": "Int64", "hi90": "Int64"})
    obs_text = (f"observed crossing at generation {observed}" if observed is not None else
                f"no observed crossing up to generation {last_generation}")
    sec.add(Figure("horizon", f"P(collapse by generation t) from generations 0..{k - 1}; "
                   f"{obs_text}", figures.horizon(p_by, observed, k, t_show)),
            Table("horizon", "P(collapse by generation t) for the run and the shown traits",
                  p_by, max_rows=t_show + 1),
            Table("horizon_summary", "Forecast horizons: median, central 90% interval "
                  "(none: beyond T_max), P(no collapse within T_max), and whether the "
                  "crossing is already in the fitted generations", summary,
                  max_rows=12))
    if bt is not None:
        scores = pd.DataFrame(bt["scores"]).astype({"observed": "Int64", "median": "Int64",
                                                    "lo90": "Int64", "hi90": "Int64",
                                                    "abs_error": "Int64"})
        sec.add(Text(f"Against the whole run (as qtrait backtest -k {k}): the observed "
                     f"horizon is the first crossing of the observed guided moments, censored "
                     f"at generation {bt['last_generation']}; coverage of the 90% intervals "
                     f"{bt['coverage']:.2f}, mean log score {bt['mean_log_score']:.2f}."),
                Table("backtest", "Forecast scored against the observed horizons", scores,
                      max_rows=12))
    if zeroshot_horizon:
        sec.add(Text(zeroshot_horizon))
    return sec


# --- diagnostics ------------------------------------------------------------------------------

def diagnostics_table(fits: list[tuple[str, object]]) -> pd.DataFrame:
    """One row per fit and check (R-hat, bulk and tail ESS, divergences, E-BFMI) with its
    value, the threshold of ``qtrait fit`` and pass or fail; ``fits`` are (label, result)."""
    from ..fit import EBFMI_MIN, ESS_MIN, RHAT_MAX

    rows = []
    for label, res in fits:
        d = res.diagnostics
        for check, value, rule, ok in (
                ("max R-hat", d["rhat_max"], f"<= {RHAT_MAX}", d["rhat_max"] <= RHAT_MAX),
                ("min ESS bulk", d["ess_bulk_min"], f">= {ESS_MIN}",
                 d["ess_bulk_min"] >= ESS_MIN),
                ("min ESS tail", d["ess_tail_min"], f">= {ESS_MIN}",
                 d["ess_tail_min"] >= ESS_MIN),
                ("divergences", d["divergences"], "0", d["divergences"] == 0),
                ("min E-BFMI", d["ebfmi_min"], f">= {EBFMI_MIN}", d["ebfmi_min"] >= EBFMI_MIN)):
            rows.append({"fit": label, "check": check, "value": value, "threshold": rule,
                         "status": "pass" if ok else "fail"})
    return pd.DataFrame(rows)


def adequacy_table(adq) -> pd.DataFrame:
    """The adequacy verdict of a fit (:class:`qtrait.adequacy.Adequacy`) as check, value,
    threshold and pass/fail rows, then its worst cells and, for each generation whose
    cell-averaged mean fails its check, the traits its gap comes from."""
    from ..adequacy import BINS, COVERAGE, P_MIN, TEST_NAME

    p_min, m = adq.ppc_min
    rows = [{"check": TEST_NAME, "value": f"p = {adq.test.p_value:.3g}",
             "threshold": f">= {P_MIN}", "status": "pass" if adq.test.p_value >= P_MIN
             else "fail"} if adq.judged else
            {"check": TEST_NAME, "value": f"{len(adq.pit)} PIT values",
             "threshold": f">= {2 * BINS} values", "status": "not judged"},
            {"check": f"one-step 90% interval coverage ({len(adq.pit)} observations)",
             "value": f"{adq.coverage:.3f}", "threshold": f"in [{COVERAGE[0]}, {COVERAGE[1]}]",
             "status": "pass" if COVERAGE[0] <= adq.coverage <= COVERAGE[1] else "fail"},
            {"check": f"smallest per-generation predictive p (of {m})",
             "value": f"{p_min:.3g}", "threshold": f">= {P_MIN}/{m}",
             "status": "pass" if adq.ppc_ok else "fail"}]
    rows += [{"check": f"worst cell: {w['cell']} ({w['statistic']})",
              "value": f"z = {w['z']:+.1f} over {w['n']} generations",
              "threshold": "-", "status": "-"} for w in adq.worst[:5]]
    rows += [{"check": f"generation {f['generation']}: cell-averaged mean off its replicate",
              "value": f"{f['gap']:+.2f}, most from " + ", ".join(
                  f"{r['trait']} ({r['contribution']:+.2f})" for r in f["traits"]),
              "threshold": "-", "status": "-"} for f in adq.mean_failures()]
    return pd.DataFrame(rows)


def diagnostics_section(fits: list[tuple[str, object]], notes: list[str],
                        adequacy=None) -> Section:
    """The ``diagnostics`` section: :func:`diagnostics_table`, each fit's warnings and where
    it is saved, ``notes``, and the adequacy verdict of the main model when checked."""
    sec = Section("diagnostics", "Sampling diagnostics and adequacy")
    table = diagnostics_table(fits)
    failed = table[table["status"] == "fail"]
    sec.add(Text("Every fit the report uses, checked as qtrait fit checks it (over every "
                 "free variable): R-hat, bulk and tail effective sample size, divergent "
                 "transitions and E-BFMI. A failed check does not stop the report; treat the "
                 "numbers of that fit as provisional until it passes."),
            Table("diagnostics", "Diagnostics per fit (pass/fail)", table, status="status",
                  max_rows=len(table)))
    if failed.empty:
        sec.add(Text("Every check passes."))
    for label, res in fits:
        for w in res.warnings:
            sec.add(Text(f"{label}: {w}", "warn"))
        where = f"saved in {res.path}" if res.path else "not saved"
        sec.add(Text(f"{label}: {where}."))
    for note in notes:
        sec.add(Text(note, "note"))
    if adequacy is not None:
        verdict = {True: "describes this run.",
                   False: "does NOT describe this run: read its parameters and forecasts "
                          "as those of a misfitting model.",
                   None: "was not judged: the run gives too few one-step PIT values for "
                         "the uniformity test."}[adequacy.ok]
        sec.add(Text(f"Adequacy of {adequacy.model} (docs/models.md section 11): one-step-"
                     f"ahead PITs of every cell's guided mean and variance from {adequacy.refits}"
                     f" exact refits, and a per-generation posterior predictive check. The "
                     f"model {verdict}", "warn" if adequacy.ok is False else "note"),
                Table("adequacy", "Adequacy of the main model (pass/fail)",
                      adequacy_table(adequacy), status="status"))
    return sec


# --- model comparison ----------------------------------------------------------------------------

def comparison_section(fits: dict, skipped: list[str]) -> Section:
    """The ``model-comparison`` section: PSIS-LOO on the guided observations per fitted model
    (``fits``: model name to fit), as ``qtrait fit --compare``; ``skipped`` become notes on
    the models left out."""
    from ..compare import loo_guided

    sec = Section("model-comparison", "Model comparison")
    rows = []
    for name, res in fits.items():
        rows.append({"model": name, **loo_guided(res)})
    df = pd.DataFrame(rows)
    df["d_loo"] = df["elpd_loo"] - df["elpd_loo"].max()
    df = df.sort_values("elpd_loo", ascending=False)[
        ["model", "elpd_loo", "se", "d_loo", "p_loo", "pareto_k_max"]]
    df["reliable"] = np.where(df["pareto_k_max"] <= 0.7, "pass", "fail")
    sec.add(Text("PSIS-LOO on the guided observations (the sets every model predicts), as "
                 "qtrait fit --compare computes it: higher elpd is better, d_loo is the "
                 "difference to the best. A largest Pareto k above 0.7 makes that model's "
                 "estimate unreliable. Leave-future-out needs a refit per generation and is "
                 "left to qtrait fit RUN --compare."),
            Table("model_comparison", "PSIS-LOO per model", df, status="reliable"))
    if (df["pareto_k_max"] > 0.7).any():
        sec.add(Text("Pareto k > 0.7: PSIS-LOO is unreliable for that model; trust "
                     "leave-future-out (qtrait fit RUN --compare, exact refits) instead.",
                     "warn"))
    for s in skipped:
        sec.add(Text(s, "note"))
    return sec


# --- sensitivity --------------------------------------------------------------------------------

def sensitivity_section(result, psens: pd.DataFrame | None, psens_error: str | None,
                        crit_table: pd.DataFrame, curves: dict, t_show: int) -> Section:
    """The ``sensitivity`` section: power-scaling sensitivity of ``result``'s posterior to its
    priors and likelihood (``psens``, or ``psens_error`` saying why it failed), and the
    run-level horizon with the collapse criteria moved one step (``crit_table``, ``curves``)."""
    from .sensitivity import THRESHOLD

    sec = Section("sensitivity", "Prior sensitivity")
    sec.add(Text(f"(a) Of the {result.model} posterior (all generations) to its priors, by "
                 "power-scaling (Kallioinen et al. 2023): the chosen priors (not the "
                 "non-centred offsets) and the likelihood are raised to a power near 1 and "
                 "the draws reweighted by Pareto-smoothed importance sampling, no refit. "
                 f"Sensitivities of {THRESHOLD} or more are flagged: with both high, the prior "
                 "and the data conflict; with only the prior high, the data say little and "
                 "the prior decides. Per-cell parameters show their most sensitive cell."))
    if psens is not None:
        sec.add(Table("prior_sensitivity", "Power-scaling sensitivity (prior, likelihood)",
                      psens, status="status"))
        if (psens["status"] == "fail").any():
            sec.add(Text("Flagged parameters: compare their posterior with the prior "
                         "(docs/models.md section 5) and consider wider priors, or more "
                         "generations, before reading them.", "warn"))
    else:
        sec.add(Text(f"Power-scaling sensitivity was not computed: {psens_error}", "note"))
    sec.add(Text("(b) Of the horizon to the collapse criteria: the forecast's posterior "
                 "trajectories reread with each criterion moved one step (q and r by 0.1, "
                 "d by 0.5), the others at their values."),
            Figure("criteria_sensitivity", "P(collapse by generation t) under neighbouring "
                   "criteria", figures.criteria_sensitivity(curves, t_show)),
            Table("criteria_sensitivity", "Run-level horizon under neighbouring criteria",
                  crit_table))
    return sec


# --- ReDiFine ----------------------------------------------------------------------------------

def redifine_section(out: dict) -> Section:
    """The ``redifine`` section: the four predictions of the ReDiFine check (``out``, as
    :func:`qtrait.redifine.redifine_check` returns it), with the per-trait rows."""
    sec = Section("redifine", "ReDiFine check")
    rows = pd.DataFrame([{k: v for k, v in r.items() if k not in ("per_trait",
                                                                    "generation_bound")}
                         for r in out["predictions"]])
    per = pd.DataFrame([{"prediction": r["prediction"], **c} for r in out["predictions"]
                        for c in r["per_trait"]])
    rho = out["rho"]
    rho_text = "n/a (no probes)" if rho is None else f"{rho:.3g} ({out.get('rho_source')})"
    sec.add(Text(f"The four predictions of docs/theory.md section 4.5, as qtrait compare "
                 f"{out['baseline']} {out['mitigated']} checks them: baseline "
                 f"{out['baseline']}, mitigated {out['mitigated']}; rho = {rho_text}; "
                 f"zero-shot theory column: {out.get('theory') or 'none (no probes)'}. Each "
                 "effect is mitigated minus baseline, pooled hierarchically over traits and "
                 "concepts (the typical trait's effect); P(direction) is the probability "
                 "that it has the sign the theory expects; 'yes' needs "
                 f"{out['yes_threshold']}."),
            Table("redifine", "The four predictions", rows),
            Figure("redifine", "Measured effect and the zero-shot theory's, per prediction",
                   figures.redifine(rows)),
            Table("redifine_per_trait", "Per trait (shrunk toward the typical effect; no "
                  "multiplicity correction needed)", per, max_rows=40))
    return sec


# --- finetuning -----------------------------------------------------------------------------

#: the chain's per-generation finetuning record (chain_runner: the SD backend writes it)
TRAINING_FILE = "training.json"


def find_training(run) -> dict[int, dict]:
    """Each generation's finetuning record, artifacts/training.json, where there is one
    (a record that does not parse is left out and named by :func:`training_section`)."""
    out = {}
    for g in run.generations:
        path = layout.artifacts_dir(run.root, g) / TRAINING_FILE
        if path.is_file():
            try:
                out[g] = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                out[g] = None
    return out


def training_section(run) -> Section | None:
    """The ``finetuning`` section: per generation the finetune's steps, last losses,
    learning rate and time, with the loss curves; None for a run without records (the
    miniature chain and imported runs keep none)."""
    found = find_training(run)
    if not found:
        return None
    sec = Section("finetuning", "Finetuning per generation")
    sec.add(Text("From each generation's artifacts/training.json, written by the chain "
                 "runner: the LoRA finetune on the previous generation's guided set. "
                 "'final loss': the mean over the last 10% of the optimizer steps."))
    rows, curves, bad = [], {}, []
    for g, rec in found.items():
        loss = np.asarray((rec or {}).get("loss") or [], dtype=float)
        if rec is None or loss.size == 0:
            bad.append(g)
            continue
        tail = loss[-max(1, loss.size // 10):]
        lr = rec.get("learning_rate") or [np.nan]
        rows.append({"generation": g, "steps": rec.get("steps"), "batch": rec.get(
            "batch_size"), "first loss": float(loss[0]), "final loss": float(tail.mean()),
            "peak learning rate": float(np.nanmax(lr)), "LoRA rank": rec.get("lora_rank"),
            "LoRA alpha": rec.get("lora_alpha"), "precision": rec.get("mixed_precision"),
            "seconds": rec.get("seconds")})
        curves[g] = loss.tolist()
    if rows:
        sec.add(Table("finetuning", "Finetuning per generation", pd.DataFrame(rows)))
        sec.add(Figure("finetuning-losses", "Finetuning loss per optimizer step",
                       figures.training_losses(curves),
                       alt="finetuning loss per optimizer step, one line per generation"))
    if bad:
        sec.add(Text(f"Unreadable or empty training records (generations "
                     f"{', '.join(map(str, bad))}): left out.", "note"))
    return sec


# --- images ---------------------------------------------------------------------------------

def find_images(run) -> dict[int, list]:
    """Image files under each generation's artifacts/ (any depth, hidden names skipped)."""
    out = {}
    for g in run.generations:
        folder = layout.artifacts_dir(run.root, g)
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file()
                       and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in
                                   p.relative_to(folder).parts))
        if files:
            out[g] = sorted(files, key=lambda p: ("grid" not in p.name.lower(), str(p)))
    return out


def _image_bytes(path) -> tuple[bytes, str]:
    data = path.read_bytes()
    suffix = path.suffix.lower().lstrip(".")
    if len(data) <= MAX_IMAGE_BYTES:
        return data, suffix
    import io

    from PIL import Image          # a dependency of matplotlib

    with Image.open(path) as im:
        im.thumbnail((640, 640))
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue(), "png"


def images_section(run) -> Section:
    """The ``images`` section: the image files under each generation's ``artifacts/`` (grids
    first), or a note that the run has none."""
    sec = Section("images", "Images per generation")
    found = find_images(run)
    if not found:
        sec.add(Text(f"Run {run.run_id} has no images: no image files under "
                     "generations/gen_NNNN/artifacts/ (the miniature chain writes a grid "
                     "there; runs imported from tables have none).", "note"))
        return sec
    sec.add(Text(f"Image files from each generation's artifacts/ folder (grids first; at "
                 f"most {IMAGES_PER_GENERATION} per generation)."))
    rows = []
    for g, files in found.items():
        for p in files[:IMAGES_PER_GENERATION]:
            data, suffix = _image_bytes(p)
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", p.relative_to(
                layout.artifacts_dir(run.root, g)).with_suffix("").as_posix())
            sec.add(Figure(f"images-gen_{g:04d}-{stem}", f"generation {g}: {p.name}", data,
                           suffix, alt=f"generation {g} {p.name}"))
        rows.append({"generation": g, "images": len(files),
                     "shown": min(len(files), IMAGES_PER_GENERATION),
                     "files": ", ".join(p.relative_to(run.root).as_posix()
                                        for p in files[:IMAGES_PER_GENERATION])})
    missing = [g for g in run.generations if g not in found]
    sec.add(Table("images", "Image files per generation", pd.DataFrame(rows)))
    if missing:
        sec.add(Text(f"Generations without images: {', '.join(map(str, missing))}.", "note"))
    return sec
