"""The real-chain forecasting benchmark (docs/results.md section 4).

Steps, each resumable (records in ``*.jsonl`` beside this file):

    python analyses/benchmark/run.py pilot       # horizons of every pilot chain (runs/)
    python analyses/benchmark/run.py nochange    # simulated chains with no change
    python analyses/benchmark/run.py statespace  # the state-space baseline, seed-1 chains
    python analyses/benchmark/run.py backtest --seeds 2,3 --k 2,3,4,5
    python analyses/benchmark/run.py k1 --seeds 2,3  # K = 1: baselines from generation 0
    python analyses/benchmark/run.py zeroshot    # rescore the zero-shot baseline in place
    python analyses/benchmark/run.py priors      # the forecast with prior scales x0.5, x2
    python analyses/benchmark/run.py adequacy --seeds 2,3   # does the model describe them
    python analyses/benchmark/run.py shock       # the generation shock's size, seed 1
    python analyses/benchmark/run.py offset      # the mean offset's size, seed 1
    python analyses/benchmark/run.py momentum    # the mean map's momentum, seed 1
    python analyses/benchmark/run.py levelshare  # lambda and V_m as level and share, seed 1
    python analyses/benchmark/run.py spread      # log lambda's spread over cells, seed 1
    python analyses/benchmark/run.py mean_shock  # the mean shock's size, seed 1
    python analyses/benchmark/run.py shared_noise  # the learning noise's shared share, seed 1
    python analyses/benchmark/run.py push        # the push per trait's size, seed 1
    python analyses/benchmark/run.py report      # results.md, figures, docs tables

* ``pilot``: the run horizon (docs/theory.md 3.1) of every seed-1 pilot chain in
  runs/benchmark (``data/benchmark/pilot.toml``), to choose the designs of
  ``data/benchmark/sweep.toml``;
* ``nochange``: chains with no change at all (per-image draws of the benchmark's shape),
  the share with a detected crossing by generation 15;
* ``statespace``: the local-linear-trend baseline's variances, fitted on the seed-1
  chains' whole trajectories (written to qtrait/data/statespace_params.json);
* ``backtest``: per chain and K, the default model's forecast and every baseline's,
  scored against the chain's later generations (:func:`qtrait.scoring.backtest`);
* ``zeroshot``: the zero-shot baseline of every backtest record scored again with the
  package's current zero-shot theory and calibration (no model is refitted: the
  baseline does not depend on the fit), after a change of the calibration;
* ``shock``: the breeder on all 16 generations of every seed-1 chain (its trait axes),
  with wide priors on the generation shock's SD and on the first step's log factor
  (breeder.py): their posteriors per chain, from which the default priors are set
  (``shock.jsonl``; ``shock_nofirst.jsonl``: the same fits before the first step);
* ``offset``: the default breeder (those two priors fixed) on the same chains with a wide
  prior on the SD of the cells' mean offsets (breeder.py, "Mean equilibrium"), from
  which its prior is set (``offset.jsonl``; the offset is not a default);
* ``momentum``: the same with a wide prior on the mean map's momentum (breeder.py,
  "Momentum"), from which its prior is set (``momentum.jsonl``; not a default);
* ``levelshare``: the same with lambda and V_m sampled as level and share (breeder.py,
  "Level and share") under wide priors, from which their priors are set
  (``levelshare.jsonl``; not a default);
* ``spread``: the default breeder on the same chains with a wide LogNormal prior on the
  spread of log lambda over the cells, from which its prior is set (``spread.jsonl``);
* ``mean_shock``: the default breeder on the same chains with the mean shock (breeder.py,
  "Mean shock") under a wide prior on its SD, from which its prior is set
  (``mean_shock.jsonl``; not a default);
* ``shared_noise``: the default breeder on the same chains with the shared learning noise
  (breeder.py, "Shared learning noise") under a wide prior on its share, from which its
  prior is set (``shared_noise.jsonl``; not a default);
* ``push``: the default breeder on the same chains with the push per trait (breeder.py,
  "Push per trait") under a wide prior on its scale, from which its prior is set
  (``push.jsonl``; not a default);
* ``report``: the tables of results.md (scores over seeds 2 and 3 by K and method, all and
  non-trivial chains, converged and all fits, paired differences bootstrapped by design).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "data" / "benchmark"))
sys.path.insert(0, str(HERE.parent))
import pack  # noqa: E402  (data/benchmark/pack.py)
from _results import write_results  # noqa: E402

PILOT = HERE / "pilot.jsonl"
NOCHANGE = HERE / "nochange.jsonl"
BACKTEST = HERE / "backtest.jsonl"
#: the backtest of the breeder before the generation shock (2026-12-05), kept to compare
NOSHOCK = HERE / "backtest_noshock.jsonl"
#: the backtest with the shock, before the first step's own factor (2026-12-06)
NOFIRST = HERE / "backtest_nofirst.jsonl"
#: the default model's backtest with its generation shocks sampled centred, as they are on
#: runs of breeder.SHOCK_CENTRED_CELLS cells or more since 2026-12-07 (the same model; backtest.jsonl's records,
#: of 2026-12-06, sampled them non-centred)
WITH_CENTRED = HERE / "backtest_centred.jsonl"
#: the default model with the momentum switched on (2026-12-06; not kept), and a variant
#: whose momentum starts at generation 3 (its prior from the seed-1 fits of that variant,
#: momentum_from3.jsonl; not kept either)
WITH_MOMENTUM = HERE / "backtest_momentum.jsonl"
WITH_MOMENTUM_FROM3 = HERE / "backtest_momentum_from3.jsonl"
MOMENTUM_FROM3 = HERE / "momentum_from3.jsonl"
#: the default model with the mean offset switched on (K = 3; 2026-12-06; not kept)
WITH_OFFSET = HERE / "backtest_offset.jsonl"
#: the default model's backtest until 2026-12-07, one learning noise for every trait; the
#: variants measured before then (their change tables) were run on it
ONE_NOISE = HERE / "backtest_one_noise.jsonl"
ONE_NOISE_NOTE = ("(Measured against the default of its time, one learning noise for every "
                  "trait, backtest_one_noise.jsonl; since 2026-12-07 the default has a noise "
                  "per trait pooled like V_m, section \"The learning noise per trait, pooled "
                  "like V_m\".)")
TIMING = HERE / "timing.jsonl"       # wall time of whole steps
OPENED = ROOT / "runs" / "benchmark_packed"     # packed chains as run directories (ignored)


def config() -> dict:
    import tomllib

    return tomllib.loads((HERE / "config.toml").read_text())


def criteria():
    from qtrait.theory.horizon import Criteria

    return Criteria(**config()["criteria"])


def _append(path: Path, rec: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def _records(path: Path, by_chain: bool = False) -> list[dict]:
    """The records of ``path`` (none when it does not exist), in file order or sorted by
    chain."""
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []
    return sorted(recs, key=lambda r: r["chain"]) if by_chain else recs


def design_of(name: str) -> tuple[str, int]:
    """(design, seed) of a chain named bench-<design>-seed=<seed>."""
    head, seed = name.rsplit("-seed=", 1)
    return head.split("-", 1)[1], int(seed)


# --- pilot -----------------------------------------------------------------------------------

def horizon_record(run) -> dict:
    """The run's horizon under the benchmark's criteria and under q = 0.5 (the package
    default), with the pooled statistics."""
    from dataclasses import replace

    from qtrait.stats.collapse import run_collapse

    crit = criteria()
    cs = run_collapse(run)
    t, reason = cs.detected(crit)
    tc, _ = cs.crossed(crit)
    t5, _ = cs.detected(replace(crit, q=0.5))
    return {"horizon": t, "reason": reason, "face_value": tc, "horizon_q05": t5,
            "criteria": crit.to_dict(),
            "var_ratio": cs.R.round(4).tolist(), "drift2": cs.D2.round(3).tolist(),
            "se_log_var_ratio": cs.se_log_r.round(4).tolist(),
            "drift_threshold": round(crit.drift_threshold(cs.k), 3)}


def pilot(runs_dir: Path) -> None:
    from qtrait.errors import QtraitError
    from qtrait.rundir import open_run

    done = {r["chain"] for r in _records(PILOT)}
    for path in sorted(p for p in runs_dir.iterdir() if p.is_dir() and "seed=1" in p.name):
        if path.name in done:
            continue
        try:
            run = open_run(path)
        except QtraitError:
            continue
        if len(run.generations) < 16:
            continue
        design, seed = design_of(path.name)
        _append(PILOT, {"chain": path.name, "design": design, "seed": seed,
                        "cfg": run.design, **horizon_record(run)})
        print(path.name, "done")


# --- no-change chains ------------------------------------------------------------------------

def nochange(n_chains: int = 200, seed: int = 3) -> None:
    """Chains whose every generation is drawn from generation 0's distribution: 10
    concepts x 90 images x 9 traits, the traits' correlation and skewness taken from a
    real chain's generation 0 (resampled images), 16 generations."""
    from qtrait.stats.collapse import collapse_statistics

    name = pack.chain_names()[0]
    run = pack.open_chain(name, OPENED / name)
    g0 = run.table(0, "guided")
    concepts = sorted(g0["concept"].unique())
    pools = [g0.loc[g0["concept"] == c, run.axes].to_numpy(float) for c in concepts]
    rng = np.random.default_rng(seed)
    hits, first = 0, []
    t0 = time.perf_counter()
    for _ in range(n_chains):
        # a bootstrap draw of each concept's images: the real traits' shape, no change
        data = [[p[rng.integers(len(p), size=len(p))] for p in pools] for _ in range(16)]
        cs = collapse_statistics(data, list(run.axes), concepts, list(range(16)))
        t, _ = cs.detected(criteria())
        hits += t is not None
        first.append(t)
    _append(NOCHANGE, {"chains": n_chains, "generations": 16, "source": name,
                       "crossed_by_15": hits, "share": hits / n_chains,
                       "horizons": [t for t in first if t is not None],
                       "seconds": round(time.perf_counter() - t0, 1)})
    print(f"no-change chains with a detected crossing by generation 15: {hits}/{n_chains}")


# --- state-space baseline --------------------------------------------------------------------

def statespace() -> None:
    from qtrait.baselines import STATESPACE_FILE, fit_statespace
    from qtrait.stats.collapse import run_collapse

    names = [n for n in pack.chain_names() if design_of(n)[1] == 1]
    stats = [run_collapse(pack.open_chain(n, OPENED / n)) for n in names]
    params = fit_statespace(stats, source=f"benchmark seed 1 ({len(names)} chains), "
                                          "analyses/benchmark/run.py statespace")
    STATESPACE_FILE.parent.mkdir(exist_ok=True)
    STATESPACE_FILE.write_text(json.dumps(params.to_dict(), indent=1) + "\n")
    print(params)


# --- backtest --------------------------------------------------------------------------------

def baselines_only(seeds: list[int], k: int = 1) -> None:
    """K = 1 (generation 0 and its probes only): the baselines that can forecast from it
    (the zero-shot theory, Gaussian refitting, persistence); no model fit is possible."""
    from qtrait.forecast import DEFINITION, observed_collapse
    from qtrait.scoring import baseline_scores

    crit = criteria()
    done = {(r["chain"], r["K"]) for r in _records(BACKTEST)}
    for name in [n for n in pack.chain_names() if design_of(n)[1] in seeds]:
        if (name, k) in done:
            continue
        run = pack.open_chain(name, OPENED / name)
        run = run.select(traits=run.axes)
        t0 = time.perf_counter()
        full = observed_collapse(run, list(run.axes))["run"]
        obs_k = observed_collapse(run, list(run.axes), upto=k)["run"]
        seen, reason = full.detected(crit)
        base = baseline_scores(obs_k, full, run, crit, np.random.default_rng(7919),
                               ("persistence", "refit", "zeroshot"))
        design, seed = design_of(name)
        _append(BACKTEST, {"chain": name, "design": design, "seed": seed, "K": k,
                           "model": None, "seconds": round(time.perf_counter() - t0, 1),
                           "diagnostics": {}, "from_generations": k,
                           "last_generation": len(full.generations) - 1,
                           "criteria": crit.to_dict(), "definition": DEFINITION,
                           "observed_horizon": seen, "observed_reason": reason,
                           "scores": [], "baselines": base})
        print(f"{name} K={k}: baselines only", flush=True)


def rescore_zeroshot() -> None:
    """Score the zero-shot baseline of every record of backtest.jsonl again (the theory
    and the run's calibration as the package has them now; the other baselines and the
    model's scores are kept) and rewrite the file in one step."""
    from qtrait.forecast import observed_collapse
    from qtrait.scoring import baseline_scores
    from qtrait.theory.calibration import for_run

    crit = criteria()
    recs = _records(BACKTEST)
    runs: dict = {}
    t0 = time.perf_counter()
    for i, r in enumerate(recs):
        name = r["chain"]
        if name not in runs:
            run = pack.open_chain(name, OPENED / name)
            run = run.select(traits=run.axes)
            runs = {name: (run, observed_collapse(run, list(run.axes))["run"])}
        run, full = runs[name]
        obs_k = observed_collapse(run, list(run.axes), upto=r["K"])["run"]
        zs = baseline_scores(obs_k, full, run, crit, np.random.default_rng(7919 + r["K"]),
                             ("zeroshot",))["zeroshot"]
        zs["calibration"] = for_run(run.manifest)[0].name
        r["baselines"]["zeroshot"] = zs
        if i % 20 == 0:
            print(f"{i}/{len(recs)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    tmp = BACKTEST.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
    tmp.replace(BACKTEST)


def variant_path(extra: str | None) -> Path:
    """Where the backtest of the default model with the optional priors ``extra`` (a
    ``--with`` name of analyses/adequacy/run.py) keeps its records: backtest.jsonl for
    the default, backtest_<extra>.jsonl for a variant."""
    return BACKTEST if extra is None else HERE / f"backtest_{extra}.jsonl"


def backtest(seeds: list[int], ks: list[int], jobs: int = 2, extra: str | None = None) -> None:
    """Every (chain, K) of ``seeds`` and ``ks`` not yet in its records
    (:func:`variant_path`), in ``jobs`` local processes
    (:func:`qtrait.scoring.backtest_runs`); the wall time of the whole step goes to
    timing.jsonl. ``extra``: the default model with those optional priors instead
    (analyses/adequacy/run.py's ``--with`` names)."""
    import platform

    from adequacy.run import model_spec    # analyses/adequacy/run.py: one list of variants

    from qtrait.fit import SamplerSettings
    from qtrait.scoring import backtest_runs

    crit = criteria()
    f = config()["fit"]
    model = f["model"]
    spec = None if extra is None else model_spec(extra)
    out_path = variant_path(extra)
    settings = SamplerSettings(chains=f["chains"], draws=f["draws"], tune=f["tune"])
    done = {(r["chain"], r["K"]) for r in _records(out_path)}
    names = [n for n in pack.chain_names() if design_of(n)[1] in seeds]
    tasks, index = [], []
    for name in names:
        path = OPENED / name
        run = pack.open_chain(name, path)        # written once as a run directory
        for k in ks:
            if (name, k) not in done:
                tasks.append((path, k))
                index.append(name)
    if not tasks:
        return
    traits = list(run.axes)
    t0 = time.perf_counter()

    def record(i, out):
        design, seed = design_of(index[i])
        for key in ("run", "posterior", "warnings"):
            out.pop(key, None)
        _append(out_path, {"chain": index[i], "design": design, "seed": seed,
                           "K": out["from_generations"], **out})
        print(f"{index[i]} K={out['from_generations']}: observed {out['observed_horizon']}, "
              f"forecast median {out['scores'][0]['median']}, "
              f"ok={out['diagnostics']['ok']} ({out['seconds']:.0f} s; "
              f"{(time.perf_counter() - t0) / 60:.1f} min in)", flush=True)

    backtest_runs(tasks, model, crit, settings, jobs=jobs, on_record=record, traits=traits,
                  save=False, extra=with_sensitivity, spec=spec)
    _append(TIMING, {"step": "backtest" if extra is None else f"backtest --with {extra}",
                     "seeds": seeds, "K": ks, "backtests": len(tasks),
                     "jobs": jobs, "wall_seconds": round(time.perf_counter() - t0, 1),
                     "cpus": os.cpu_count(), "machine": platform.processor() or
                     platform.machine(), "date": time.strftime("%Y-%m-%d")})


def sensitivity(fc, run, crit) -> dict:
    """The model's scores under other criteria (q 0.2, 0.4 and the package default 0.5;
    d +- 0.5; alpha 0.01 and 0.1): the same forecast reread, the chain's horizon under the
    same criteria."""
    from dataclasses import replace

    from qtrait.forecast import observed_collapse
    from qtrait.scoring import score_horizon

    actual = observed_collapse(run, list(fc.horizon_traits))["run"]
    last = len(actual.generations) - 1
    rng = np.random.default_rng(17)
    out = {}
    for key, values in (("q", (0.2, 0.4, 0.5)), ("d", (1.5, 2.5)), ("alpha", (0.01, 0.1))):
        for v in values:
            c = replace(crit, **{key: v})
            seen, _ = actual.detected(c)
            sc = score_horizon(fc.reread(c), seen, last, rng)
            out[f"{key}={v}"] = {k: sc[k] for k in ("observed", "median", "rps", "abs_error",
                                                    "covered_random", "trivial")}
    return out


def with_sensitivity(fc, run, crit) -> dict:
    return {"sensitivity": sensitivity(fc, run, crit)}


PRIORS = HERE / "priors.jsonl"


def scaled(priors: dict, factor: float) -> dict:
    """Every prior's scale (the SD of a Normal, the scale of a half-Normal) times
    ``factor``; locations unchanged."""
    out = {}
    for k, v in priors.items():
        out[k] = (v[0], v[1] * factor) if isinstance(v, tuple) else v * factor
    return out


ADEQUACY = HERE / "adequacy.jsonl"
#: the adequacy records of the model with one learning noise for every trait (the default
#: until 2026-12-07)
ADEQUACY_ONE_NOISE = HERE / "adequacy_one_noise.jsonl"
#: the adequacy records of the model before the generation shock (2026-12-05)
ADEQUACY_NOSHOCK = HERE / "adequacy_noshock.jsonl"


def adequacy_one(name: str) -> dict:
    """The default model on all of one chain's generations (its trait axes) and its
    adequacy check (:func:`qtrait.adequacy.check`); a process of :func:`adequacy`."""
    from qtrait.adequacy import check
    from qtrait.fit import NUMBA_FASTMATH, fit

    f = config()["fit"]
    run, settings = chain_fit_setup(name)
    t0 = time.perf_counter()
    full = fit(run, f["model"], settings, save=False)
    adq = check(run, f["model"], settings, full=full)
    design, seed = design_of(name)
    a = adq.to_dict()
    a.pop("ppc")
    return {"chain": name, "design": design, "seed": seed, "model": f["model"],
            "sampler": {"chains": settings.chains, "draws": settings.draws,
                        "tune": settings.tune},
            "first_step": full.spec.first_step_sampling(full.data),
            # records without the key were sampled with the flags on (before 2026-12-08)
            "numba_fastmath": NUMBA_FASTMATH,
            "diagnostics": full.diagnostics, "adequacy": a,
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d")}


def per_chain(one, names: list[str], path: Path, jobs: int, show) -> None:
    """``one(name)`` for each chain in ``jobs`` spawned processes (each chain opened as a
    run directory first), each record appended to ``path`` as it comes and shown by
    ``show(record, minutes_in)``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    for n in names:
        pack.open_chain(n, OPENED / n)
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(one, n): n for n in names}
        for fut in as_completed(futures):
            rec = fut.result()
            _append(path, rec)
            print(show(rec, (time.perf_counter() - t0) / 60), flush=True)


def adequacy(seeds: list[int], jobs: int = 2) -> None:
    """Adequacy of the default model on every chain of ``seeds`` (all generations, the
    trait axes), ``jobs`` chains at a time; records in adequacy.jsonl."""
    done = {r["chain"] for r in _records(ADEQUACY)}
    names = [n for n in pack.chain_names() if design_of(n)[1] in seeds and n not in done]

    def show(rec, minutes):
        a = rec["adequacy"]
        return (f"{rec['chain']}: ok={a['ok']} PIT p={a['pit_test']['p_value']:.2g} "
                f"coverage {a['coverage90']:.2f} ppc_ok={a['ppc_ok']} "
                f"({rec['seconds']:.0f} s; {minutes:.1f} min in)")

    per_chain(adequacy_one, names, ADEQUACY, jobs, show)


def adequacy_table(seeds=(2, 3), path: Path = ADEQUACY, which: str = "",
                   before: tuple[Path, str] | None = None) -> list[str]:
    """How many benchmark chains the default model describes (adequacy.jsonl; ``which``
    says which model when it is not today's); ``before``: the records and the name of an
    earlier default to compare chain by chain (:func:`adequacy_pairs`)."""
    recs = [r for r in _records(path) if r["seed"] in seeds]
    if not recs:
        return []
    seeds = sorted({r["seed"] for r in recs})
    ok = [r for r in recs if r["adequacy"]["ok"]]
    pit = [r for r in recs if r["adequacy"]["pit_test"]["p_value"] >= 0.01]
    cov = np.array([r["adequacy"]["coverage90"] for r in recs])
    conv = sum(bool(r["diagnostics"]["ok"]) for r in recs)
    return ["## Does the default model describe the benchmark's chains?" + which, "",
            f"The default model{which} on all 16 generations of each chain of seeds "
            f"{' and '.join(map(str, seeds))} (the trait axes), checked as `qtrait fit` "
            "checks it (docs/models.md section 11: one-step PITs from exact refits, "
            "Rao-Scott F test clustered by generation; one-step 90% coverage; "
            "per-generation posterior predictive check). "
            + sampler_sentence(recs) + fastmath_sentence(recs)
            + (f"All {len(recs)} chains are checked." if len(recs) == 16 * len(seeds) else
               f"The step resumes: {len(recs)} of {16 * len(seeds)} chains of "
               f"{'that seed' if len(seeds) == 1 else 'those seeds'} are checked so far."),
            "",
            "| chains | adequate | PIT test p >= 0.01 | one-step 90% coverage in [0.85, 0.95]"
            " | coverage: median [min, max] | every PPC p above its Bonferroni bound | fits "
            "passing their diagnostics |", "|---|---|---|---|---|---|---|",
            f"| {len(recs)} | {len(ok)} | {len(pit)} | "
            f"{int(np.sum((cov >= 0.85) & (cov <= 0.95)))} | {np.median(cov):.3f} "
            f"[{cov.min():.3f}, {cov.max():.3f}] | "
            f"{sum(bool(r['adequacy']['ppc_ok']) for r in recs)} | {conv} |"] + \
        (adequacy_pairs(recs, *before) if before else [])


def fastmath_sentence(recs: list[dict]) -> str:
    """How many of the records' fits compiled their log density with numba's fast-math
    flags on (records without ``numba_fastmath``: before 2026-12-08); "" when none."""
    on = sum(bool(r.get("numba_fastmath", True)) for r in recs)
    if not on:
        return ""
    return (f"{on} of these {len(recs)} fits compiled their log density with numba's "
            "fast-math flags on, as every fit did before 2026-12-08 (their draws are as "
            "valid, but a rerun draws otherwise: docs/models.md 7, \"Reproducibility\"). ")


def sampler_sentence(recs: list[dict]) -> str:
    """How the records' fits sampled, when they all say so alike (records from 2026-12-07
    on); "" otherwise."""
    from qtrait import sampler_defaults as d

    said = {json.dumps([r.get("sampler"), r.get("first_step")]) for r in recs}
    if len(said) != 1 or "sampler" not in recs[0]:
        return ""
    s, first = recs[0]["sampler"], recs[0]["first_step"]
    return (f"Sampled as the backtest samples: {s['chains']} chains x {s['draws']} draws "
            f"after {s['tune']} tuning steps (`qtrait fit`'s defaults: {d.CHAINS} x "
            f"{d.DRAWS} after {d.TUNE}), the first step {first or 'absent'}. ")


def adequacy_pairs(recs: list[dict], path: Path, name: str) -> list[str]:
    """Per chain of ``recs`` that the earlier model ``name`` (records ``path``) was also
    checked on: the PIT test's p and the one-step coverage of both, and where the later
    model's one-step coverage falls short (the mean or the variance)."""
    before = {r["chain"]: r["adequacy"] for r in _records(path)}
    rows = [r for r in recs if r["chain"] in before]
    if not rows:
        return []
    out = ["", f"The same chains, this model against the one {name} ({path.name}), and "
           "the one-step 90% coverage of the cells' means and variances apart:", "",
           "| chain | PIT p | before | coverage | before | coverage of means | of variances "
           "| PPC passes | before |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda x: x["chain"]):
        a, b = r["adequacy"], before[r["chain"]]
        by = a["by_statistic"]
        out.append(f"| {r['chain']} | {a['pit_test']['p_value']:.4f} | "
                   f"{b['pit_test']['p_value']:.4f} | {a['coverage90']:.3f} | "
                   f"{b['coverage90']:.3f} | {by['mean']['coverage']:.3f} | "
                   f"{by['var']['coverage']:.3f} | {'yes' if a['ppc_ok'] else 'no'} | "
                   f"{'yes' if b['ppc_ok'] else 'no'} |")
    return out


SHOCK = HERE / "shock.jsonl"
#: the prior the seed-1 fits of ``shock`` use: LogNormal(log 0.1, 1.5), 90% of its mass
#: between 0.009 and 1.2 (a shock of 1% to a factor of 3 in every cell's variance)
SHOCK_WIDE_PRIOR = (float(np.log(0.1)), 1.5)
#: and for the first step's log factor: Normal(0, 1), a factor of 0.19 to 5.2 (90%)
FIRST_WIDE_PRIOR = (0.0, 1.0)


def q90(x) -> dict:
    """The 5%, 50% and 95% quantiles of draws ``x``, as records keep them."""
    return dict(zip(("q05", "q50", "q95"), np.quantile(x, [0.05, 0.5, 0.95]).round(4).tolist()))


def chain_fit_setup(name: str):
    """(run, settings) of a one-process fit of chain ``name`` on all its generations: the
    chain's run directory on its trait axes, and the backtest's sampler settings on one
    core (the fits of a step run in parallel processes)."""
    from qtrait.fit import SamplerSettings
    from qtrait.rundir import open_run

    f = config()["fit"]
    settings = SamplerSettings(chains=f["chains"], draws=f["draws"], tune=f["tune"], cores=1)
    run = open_run(OPENED / name)
    return run.select(traits=run.axes), settings


def seed1_fit(name: str, extra: dict):
    """The default breeder with the prior keys ``extra`` added (or replaced), on all of
    one seed-1 chain's generations (trait axes), sampled as the backtest samples;
    (result, design, seed, seconds)."""
    from dataclasses import replace

    from qtrait.fit import fit
    from qtrait.models import get_spec

    run, settings = chain_fit_setup(name)
    spec = get_spec("breeder")
    spec = replace(spec, priors=dict(spec.priors) | extra)
    t0 = time.perf_counter()
    res = fit(run, "breeder", settings, save=False, spec=spec)
    return (res, *design_of(name), round(time.perf_counter() - t0, 1))


def shock_one(name: str) -> dict:
    """The breeder with the wide priors of the shock's SD and of the first step on all of
    one chain's generations (trait axes): the posterior of the generation shock's SD, of
    each generation's shock and of the first step's log factor."""
    res, design, seed, seconds = seed1_fit(name, {"gen_shock_sd": SHOCK_WIDE_PRIOR,
                                                  "first_step": FIRST_WIDE_PRIOR})
    post = res.idata.posterior
    sd = post["gen_shock_sd"].values.ravel()
    e = post["gen_shock"].median(("chain", "draw")).values
    d1 = post["first_step"].values.ravel()
    return {"chain": name, "design": design, "seed": seed, "prior": list(SHOCK_WIDE_PRIOR),
            "first_prior": list(FIRST_WIDE_PRIOR), "first_quantiles": q90(d1),
            "first_mean": round(float(d1.mean()), 4), "first_sd": round(float(d1.std()), 4),
            "lambda_median": float(np.median(post["lambda"].values)),
            "v_mut_median": float(np.median(post["v_mut"].values)),
            "sd_quantiles": q90(sd),
            "log_sd_mean": round(float(np.log(sd).mean()), 4),
            "log_sd_sd": round(float(np.log(sd).std()), 4),
            "shock_median": e.round(4).tolist(), "diagnostics": res.diagnostics,
            "seconds": seconds}


def seed1_step(one, path: Path, jobs: int, show) -> None:
    """``one(name)`` (a seed-1 fit) for every seed-1 chain not yet in ``path``."""
    done = {r["chain"] for r in _records(path)}
    names = [n for n in pack.chain_names() if design_of(n)[1] == 1 and n not in done]
    per_chain(one, names, path, jobs, show)


def quantile_show(label: str, key: str, fmt: str):
    """A progress line for a seed-1 fit's record: the median and 90% interval in
    ``rec[key]``, whether the fit passed its diagnostics, its time."""
    def show(rec, minutes):
        q = rec[key]
        return (f"{rec['chain']}: {label} {q['q50']:{fmt}} [{q['q05']:{fmt}}, "
                f"{q['q95']:{fmt}}] ok={rec['diagnostics']['ok']} ({rec['seconds']:.0f} s)")
    return show


def learned_prior(path: Path, mean_key: str, sd_key: str) -> tuple[float, float]:
    """A default prior from the seed-1 fits in ``path``: the mean over chains of each
    chain's posterior mean (``mean_key``), and an SD that holds both the spread between
    the chains and each chain's own posterior SD (``sd_key``): the root of the
    between-chain variance plus the mean posterior variance."""
    recs = _records(path)
    means = np.array([r[mean_key] for r in recs])
    within = np.array([r[sd_key] for r in recs])
    return float(means.mean()), float(np.sqrt(means.var() + (within ** 2).mean()))


def shock(jobs: int = 2) -> None:
    """:func:`shock_one` for every seed-1 chain not yet in shock.jsonl."""
    seed1_step(shock_one, SHOCK, jobs, quantile_show("shock SD", "sd_quantiles", ".3f"))


def shock_prior() -> tuple[float, float]:
    """The default LogNormal prior of the shock's SD from the seed-1 fits of ``shock``: of the
    chains' posterior log SD (:func:`learned_prior`)."""
    return learned_prior(SHOCK, "log_sd_mean", "log_sd_sd")


def first_prior() -> tuple[float, float]:
    """The default Normal prior of the first step's log factor from the same fits
    (:func:`learned_prior`)."""
    return learned_prior(SHOCK, "first_mean", "first_sd")


OFFSET = HERE / "offset.jsonl"
#: the prior of the mean offset's SD in the seed-1 fits of ``offset``: LogNormal(log 0.05,
#: 1.5), 90% of its mass between 0.004 and 0.59 (trait SDs of generation 0 a generation)
OFFSET_WIDE_PRIOR = (float(np.log(0.05)), 1.5)


def offset_one(name: str) -> dict:
    """The breeder with its default priors and the wide prior of the mean offset's SD
    (breeder docstring, "Mean equilibrium") on all of one chain's generations (trait
    axes): the posterior of that SD and of the cells' offsets."""
    res, design, seed, seconds = seed1_fit(name, {"mean_offset_sd": OFFSET_WIDE_PRIOR})
    post = res.idata.posterior
    sd = post["mean_offset_sd"].values.ravel()
    delta = post["mean_offset"].median(("chain", "draw")).values
    return {"chain": name, "design": design, "seed": seed, "prior": list(OFFSET_WIDE_PRIOR),
            "sd_quantiles": q90(sd),
            "log_sd_mean": round(float(np.log(sd).mean()), 4),
            "log_sd_sd": round(float(np.log(sd).std()), 4),
            "offset_median": delta.round(4).tolist(), "diagnostics": res.diagnostics,
            "seconds": seconds}


MOMENTUM = HERE / "momentum.jsonl"
#: the prior of the mean map's momentum in the seed-1 fits of ``momentum``: Normal(0, 1)
MOMENTUM_WIDE_PRIOR = (0.0, 1.0)


def momentum_one(name: str) -> dict:
    """The breeder with its default priors and a wide prior on the mean map's momentum rho
    (breeder docstring, "Momentum") on all of one chain's generations: its posterior."""
    res, design, seed, seconds = seed1_fit(name, {"mean_momentum": MOMENTUM_WIDE_PRIOR})
    rho = res.idata.posterior["mean_momentum"].values.ravel()
    return {"chain": name, "design": design, "seed": seed,
            "prior": list(MOMENTUM_WIDE_PRIOR),
            "quantiles": q90(rho),
            "mean": round(float(rho.mean()), 4), "sd": round(float(rho.std()), 4),
            "diagnostics": res.diagnostics, "seconds": seconds}


def momentum(jobs: int = 2) -> None:
    """:func:`momentum_one` for every seed-1 chain not yet in momentum.jsonl."""
    seed1_step(momentum_one, MOMENTUM, jobs, quantile_show("momentum", "quantiles", "+.3f"))


def momentum_prior() -> tuple[float, float]:
    """The Normal prior of the momentum from the seed-1 fits of ``momentum``
    (:func:`learned_prior`)."""
    return learned_prior(MOMENTUM, "mean", "sd")


def offset(jobs: int = 2) -> None:
    """:func:`offset_one` for every seed-1 chain not yet in offset.jsonl."""
    seed1_step(offset_one, OFFSET, jobs, quantile_show("offset SD", "sd_quantiles", ".3f"))


def offset_prior() -> tuple[float, float]:
    """The LogNormal prior of the mean offset's SD from the seed-1 fits of ``offset``
    (:func:`learned_prior`)."""
    return learned_prior(OFFSET, "log_sd_mean", "log_sd_sd")


LAMBDA_SPREAD = HERE / "spread.jsonl"
#: the prior of log lambda's spread over cells in the seed-1 fits of ``spread``:
#: LogNormal(log 0.1, 1.5), 90% of its mass between 0.0085 and 1.2 (the default until
#: 2026-12-07 was HalfNormal(0.3), whose mass reaches 0 where the per-cell lambdas funnel)
LAMBDA_SPREAD_WIDE_PRIOR = (float(np.log(0.1)), 1.5)


def sd_fit(name: str, key: str, wide: tuple[float, float]) -> tuple[dict, object]:
    """A seed-1 fit (:func:`seed1_fit`) with the LogNormal prior ``wide`` on the SD
    ``key``: (the record of that SD's posterior, the posterior), the record's fields as
    :func:`learned_prior` reads them."""
    res, design, seed, seconds = seed1_fit(name, {key: wide})
    post = res.idata.posterior
    sd = post[key].values.ravel()
    return ({"chain": name, "design": design, "seed": seed, "prior": list(wide),
             "sd_quantiles": q90(sd), "log_sd_mean": round(float(np.log(sd).mean()), 4),
             "log_sd_sd": round(float(np.log(sd).std()), 4),
             "diagnostics": res.diagnostics, "seconds": seconds}, post)


def spread_one(name: str) -> dict:
    """The default breeder with a wide LogNormal prior on the spread of log lambda over
    the cells (``log_lambda_sd``) on all of one chain's generations (trait axes): its
    posterior, and lambda's and V_m's medians."""
    rec, post = sd_fit(name, "log_lambda_sd", LAMBDA_SPREAD_WIDE_PRIOR)
    return rec | {"lambda_median": round(float(np.median(post["lambda"].values)), 4),
                  "v_mut_median": round(float(np.median(post["v_mut"].values)), 4)}


def spread(jobs: int = 2) -> None:
    """:func:`spread_one` for every seed-1 chain not yet in spread.jsonl."""
    seed1_step(spread_one, LAMBDA_SPREAD, jobs, quantile_show("log lambda spread", "sd_quantiles",
                                                       ".3f"))


def spread_prior() -> tuple[float, float]:
    """The LogNormal prior of log lambda's spread over cells from the seed-1 fits of
    ``spread`` (:func:`learned_prior`)."""
    return learned_prior(LAMBDA_SPREAD, "log_sd_mean", "log_sd_sd")


MEAN_SHOCK = HERE / "mean_shock.jsonl"
#: the prior of the mean shock's SD in the seed-1 fits of ``mean_shock``: LogNormal(log
#: 0.1, 1.5), 90% of its mass between 0.0085 and 1.2 generation-0 SDs
MEAN_SHOCK_WIDE_PRIOR = (float(np.log(0.1)), 1.5)


def mean_shock_one(name: str) -> dict:
    """The default breeder with the mean shock (breeder docstring, "Mean shock") under a
    wide prior on its SD, on all of one chain's generations (trait axes): the SD's
    posterior, and the learning noises' median beside it."""
    rec, post = sd_fit(name, "mean_shock_sd", MEAN_SHOCK_WIDE_PRIOR)
    return rec | {"sigma_learn_median": round(float(np.median(post["sigma_learn"].values)),
                                              4)}


def mean_shock(jobs: int = 2) -> None:
    """:func:`mean_shock_one` for every seed-1 chain not yet in mean_shock.jsonl."""
    seed1_step(mean_shock_one, MEAN_SHOCK, jobs, quantile_show("mean shock SD",
                                                               "sd_quantiles", ".3f"))


def mean_shock_prior() -> tuple[float, float]:
    """The LogNormal prior of the mean shock's SD from the seed-1 fits of ``mean_shock``
    (:func:`learned_prior`)."""
    return learned_prior(MEAN_SHOCK, "log_sd_mean", "log_sd_sd")


SHARED_NOISE = HERE / "shared_noise.jsonl"
#: the prior of logit psi, the learning noise's shared share, in the seed-1 fits of
#: ``shared_noise``: Normal(0, 1.5), psi's 90% between 0.08 and 0.92
SHARED_NOISE_WIDE_PRIOR = (0.0, 1.5)


def shared_noise_one(name: str) -> dict:
    """The default breeder with the shared learning noise (breeder docstring, "Shared
    learning noise") under a wide prior on logit psi, on all of one chain's generations
    (trait axes): psi's posterior, logit psi's mean and SD (what :func:`learned_prior`
    reads), and the learning noises' median beside it."""
    res, design, seed, seconds = seed1_fit(name, {"shared_noise": SHARED_NOISE_WIDE_PRIOR})
    post = res.idata.posterior
    psi = post["shared_noise_share"].values.ravel()
    logit = np.log(psi) - np.log1p(-psi)
    return {"chain": name, "design": design, "seed": seed,
            "prior": list(SHARED_NOISE_WIDE_PRIOR), "psi_quantiles": q90(psi),
            "logit_mean": round(float(logit.mean()), 4),
            "logit_sd": round(float(logit.std()), 4),
            "sigma_learn_median": round(float(np.median(post["sigma_learn"].values)), 4),
            "diagnostics": res.diagnostics, "seconds": seconds}


def shared_noise(jobs: int = 2) -> None:
    """:func:`shared_noise_one` for every seed-1 chain not yet in shared_noise.jsonl."""
    seed1_step(shared_noise_one, SHARED_NOISE, jobs,
               quantile_show("shared share", "psi_quantiles", ".3f"))


def shared_noise_prior() -> tuple[float, float]:
    """The Normal prior of logit psi from the seed-1 fits of ``shared_noise``
    (:func:`learned_prior`)."""
    return learned_prior(SHARED_NOISE, "logit_mean", "logit_sd")


PUSH = HERE / "push.jsonl"


def push_one(name: str) -> dict:
    """The default breeder with the push per trait (breeder docstring, "Push per trait")
    under its wide prior (breeder.MEAN_PUSH_PRIOR before it is learned), on all of one
    chain's generations (trait axes): the posterior of its scale s_pi, and each trait's
    push (median) beside it."""
    from qtrait.models.breeder import MEAN_PUSH_WIDE_PRIOR

    rec, post = sd_fit(name, "mean_push_sd", MEAN_PUSH_WIDE_PRIOR)
    return rec | {"push_median": dict(zip(
        post["mean_push"].coords["trait"].values.tolist(),
        post["mean_push"].median(("chain", "draw")).values.round(4).tolist()))}


def push(jobs: int = 2) -> None:
    """:func:`push_one` for every seed-1 chain not yet in push.jsonl."""
    seed1_step(push_one, PUSH, jobs, quantile_show("push scale", "sd_quantiles", ".3f"))


PUSH_FIRST = HERE / "push_first.jsonl"


def push_first_one(name: str) -> dict:
    """The default breeder with the push per trait (its learned prior) and its factor f at
    generation 1 under the wide prior breeder.PUSH_FIRST_WIDE_PRIOR, on all of one chain's
    generations (trait axes): log f's posterior (what :func:`learned_prior` reads)."""
    from qtrait.models.breeder import MEAN_PUSH_PRIOR, PUSH_FIRST_WIDE_PRIOR

    res, design, seed, seconds = seed1_fit(
        name, MEAN_PUSH_PRIOR | {"push_first": PUSH_FIRST_WIDE_PRIOR})
    log_f = res.idata.posterior["push_first"].values.ravel()
    return {"chain": name, "design": design, "seed": seed,
            "prior": list(PUSH_FIRST_WIDE_PRIOR), "f_quantiles": q90(np.exp(log_f)),
            "log_f_mean": round(float(log_f.mean()), 4),
            "log_f_sd": round(float(log_f.std()), 4),
            "diagnostics": res.diagnostics, "seconds": seconds}


def push_first(jobs: int = 2) -> None:
    """:func:`push_first_one` for every seed-1 chain not yet in push_first.jsonl."""
    seed1_step(push_first_one, PUSH_FIRST, jobs,
               quantile_show("push's first factor", "f_quantiles", ".3f"))


def push_first_prior() -> tuple[float, float]:
    """The Normal prior of log f from the seed-1 fits of ``push_first``."""
    return learned_prior(PUSH_FIRST, "log_f_mean", "log_f_sd")


def push_prior() -> tuple[float, float]:
    """The LogNormal prior of the push's scale s_pi from the seed-1 fits of ``push``
    (:func:`learned_prior`)."""
    return learned_prior(PUSH, "log_sd_mean", "log_sd_sd")


LEVELSHARE = HERE / "levelshare.jsonl"
#: the priors of the level's and the share's locations in the seed-1 fits of
#: ``levelshare``: Normal(0, 1) on log L (90% of L between 0.19 and 5.2) and Normal(2, 2)
#: on logit r (90% of r between 0.21 and 0.998); their spreads over cells HalfNormal(0.3)
#: (log L, as log lambda's default) and HalfNormal(1) (logit r)
LEVEL_WIDE_PRIOR = (0.0, 1.0)
SHARE_WIDE_PRIOR = (2.0, 2.0)
SPREAD_WIDE_PRIOR = {"log_level_sd": 0.3, "logit_share_sd": 1.0}
#: the default model with the level-and-share parameterization (breeder.LEVEL_SHARE_PRIOR,
#: K = 3; 2026-12-06; not kept)
WITH_LEVELSHARE = HERE / "backtest_levelshare.jsonl"
#: the default model with the spike at V_m = 0 and a uniform prior on the share of cells
#: with V_m > 0 (K = 3; 2026-12-06; not kept)
WITH_SPIKE = HERE / "backtest_spike.jsonl"


def levelshare_one(name: str) -> dict:
    """The breeder with wide priors on the locations of the cells' log level and logit
    share (breeder docstring, "Level and share") on all of one chain's generations: their
    posteriors."""
    res, design, seed, seconds = seed1_fit(name, {"log_level_mu": LEVEL_WIDE_PRIOR,
                                                  "logit_share_mu": SHARE_WIDE_PRIOR,
                                                  **SPREAD_WIDE_PRIOR})
    post = res.idata.posterior
    rec = {"chain": name, "design": design, "seed": seed,
           "prior": {"log_level_mu": list(LEVEL_WIDE_PRIOR),
                     "logit_share_mu": list(SHARE_WIDE_PRIOR), **SPREAD_WIDE_PRIOR}}
    for key in ("log_level_mu", "logit_share_mu", "log_level_sd", "logit_share_sd"):
        x = post[key].values.ravel()
        rec |= {key: q90(x), f"{key}_mean": round(float(x.mean()), 4),
                f"{key}_sd": round(float(x.std()), 4)}
    for key in ("lambda", "v_mut", "share"):
        rec[f"{key}_median"] = round(float(np.median(post[key].values)), 4)
    return rec | {"diagnostics": res.diagnostics, "seconds": seconds}


def levelshare(jobs: int = 2) -> None:
    """:func:`levelshare_one` for every seed-1 chain not yet in levelshare.jsonl."""
    seed1_step(levelshare_one, LEVELSHARE, jobs,
               quantile_show("logit share location", "logit_share_mu", "+.2f"))


def levelshare_prior() -> dict:
    """The Normal priors of the level's and the share's locations from the seed-1 fits of
    ``levelshare`` (:func:`learned_prior`)."""
    return {key: learned_prior(LEVELSHARE, f"{key}_mean", f"{key}_sd")
            for key in ("log_level_mu", "logit_share_mu")}


def levelshare_spread_prior() -> dict:
    """The HalfNormal scales of the level's and the share's spreads over cells from the
    same fits: the root mean square of the spread over the chains' posteriors (a
    HalfNormal(sigma) has E x^2 = sigma^2), mean^2 + SD^2 per chain."""
    recs = _records(LEVELSHARE)
    out = {}
    for key in ("log_level_sd", "logit_share_sd"):
        m = np.array([r[f"{key}_mean"] for r in recs])
        sd = np.array([r[f"{key}_sd"] for r in recs])
        out[key] = float(np.sqrt(np.mean(m ** 2 + sd ** 2)))
    return out


TRAIT_NOISE = HERE / "trait_noise.jsonl"
#: the prior of each trait's learning noise in the seed-1 fits of ``trait_noise`` (breeder
#: docstring, "Learning noise per trait"): LogNormal(log 0.05, 1.5), 90% of its mass
#: between 0.004 and 0.59 generation-0 SDs
TRAIT_NOISE_WIDE_PRIOR = (float(np.log(0.05)), 1.5)


def trait_noise_one(name: str) -> dict:
    """The breeder with one learning noise per trait, each with the wide prior
    :data:`TRAIT_NOISE_WIDE_PRIOR`, on all of one chain's generations (trait axes): the
    posterior mean and SD of each trait's log noise, and its median."""
    res, design, seed, seconds = seed1_fit(name, {"sigma_learn_trait": TRAIT_NOISE_WIDE_PRIOR})
    post = res.idata.posterior
    log_sig = np.log(post["sigma_learn"].stack(s=("chain", "draw")).values)   # (trait, s)
    traits = list(map(str, post["trait"].values))
    return {"chain": name, "design": design, "seed": seed,
            "prior": list(TRAIT_NOISE_WIDE_PRIOR),
            "log_sigma_mean": dict(zip(traits, log_sig.mean(axis=1).round(4).tolist())),
            "log_sigma_sd": dict(zip(traits, log_sig.std(axis=1).round(4).tolist())),
            "sigma_median": dict(zip(traits, np.exp(np.median(log_sig, axis=1))
                                     .round(4).tolist())),
            "diagnostics": res.diagnostics, "seconds": seconds}


def trait_noise(jobs: int = 2) -> None:
    """:func:`trait_noise_one` for every seed-1 chain not yet in trait_noise.jsonl."""
    def show(rec, minutes):
        sig = rec["sigma_median"]
        return (f"{rec['chain']}: trait noises {min(sig.values()):.3f} to "
                f"{max(sig.values()):.3f} ok={rec['diagnostics']['ok']} "
                f"({rec['seconds']:.0f} s)")
    seed1_step(trait_noise_one, TRAIT_NOISE, jobs, show)


def trait_noise_prior() -> tuple[float, float]:
    """The LogNormal prior of each trait's learning noise from the seed-1 fits of
    ``trait_noise``, computed as :func:`learned_prior` over every (chain, trait): the mean
    of the log noise's posterior means, and the root of their variance plus the mean
    posterior variance."""
    recs = _records(TRAIT_NOISE)
    means = np.array([v for r in recs for v in r["log_sigma_mean"].values()])
    within = np.array([v for r in recs for v in r["log_sigma_sd"].values()])
    return float(means.mean()), float(np.sqrt(means.var() + (within ** 2).mean()))


def trait_noise_pooled_prior() -> float:
    """The scale of the pooled learning noise's shared S (breeder.SIGMA_POOLED_PRIOR) from
    the same seed-1 fits: the root mean square of the per-trait noises' posterior medians
    over every (chain, trait). Under sigma_k = S h_k with S ~ HalfNormal(s) and h_k ~
    HalfNormal(1), E sigma_k^2 = s^2, so the prior's noises have the fits' RMS."""
    med = np.array([v for r in _records(TRAIT_NOISE) for v in r["sigma_median"].values()])
    return float(np.sqrt(np.mean(med ** 2)))


def prior_sensitivity(seeds=(2, 3), k: int = 3, factors=(0.5, 2.0), most: int = 8) -> None:
    """The default model's forecast from K generations with every prior scale halved and
    doubled, on up to ``most`` chains whose horizon comes at or after K (not censored)."""
    from dataclasses import replace

    from qtrait.fit import SamplerSettings, fit
    from qtrait.forecast import forecast
    from qtrait.models import get_spec
    from qtrait.scoring import backtest as score

    crit = criteria()
    f = config()["fit"]
    settings = SamplerSettings(chains=f["chains"], draws=f["draws"], tune=f["tune"])
    base = {r["chain"]: r for r in _records(BACKTEST) if r["K"] == k and r["scores"]
            and r["seed"] in seeds and not r["scores"][0]["trivial"]
            and not r["scores"][0]["censored"]}
    done = {(r["chain"], r["factor"]) for r in _records(PRIORS)}
    spec0 = get_spec(f["model"])
    for name in sorted(base)[:most]:
        run = pack.open_chain(name, OPENED / name)
        run = run.select(traits=run.axes)
        for factor in factors:
            if (name, factor) in done:
                continue
            spec = replace(spec0, priors=scaled(spec0.priors, factor))
            res = fit(run, spec.name, settings, slice(0, k), save=False, spec=spec)
            fc = forecast(res, run, crit, seed=settings.seed)
            row = score(fc, run, crit, (), seed=settings.seed)["scores"][0]
            b = base[name]["scores"][0]
            _append(PRIORS, {"chain": name, "K": k, "factor": factor,
                             "diagnostics": res.diagnostics,
                             "median": row["median"], "rps": row["rps"],
                             "abs_error": row["abs_error"],
                             "default_median": b["median"], "default_rps": b["rps"]})
            print(f"{name} priors x{factor}: median {row['median']} (default {b['median']})",
                  flush=True)


def priors_table() -> list[str]:
    recs = _records(PRIORS)
    if not recs:
        return []
    out = ["## Sensitivity to the priors", "",
           f"The default model's forecast from K = {recs[0]['K']} with every prior scale "
           "halved or doubled, on non-trivial chains of seeds 2 and 3:", "",
           "| prior scales | forecasts | median unchanged | mean RPS | mean RPS, default "
           "priors | converged |", "|---|---|---|---|---|---|"]
    for factor in sorted({r["factor"] for r in recs}):
        rs = [r for r in recs if r["factor"] == factor]
        same = sum(r["median"] == r["default_median"] for r in rs)
        out.append(f"| x{factor:g} | {len(rs)} | {same} | "
                   f"{np.mean([r['rps'] for r in rs]):.2f} | "
                   f"{np.mean([r['default_rps'] for r in rs]):.2f} | "
                   f"{sum(bool(r['diagnostics'].get('ok')) for r in rs)} |")
    return out


def q_d_table(seeds=(2, 3)) -> list[str]:
    """The model's scores under other criteria (the sensitivity records)."""
    recs = [r for r in _records(BACKTEST) if r["seed"] in seeds and r.get("sensitivity")]
    if not recs:
        return []
    ks = sorted({r["K"] for r in recs})
    keys = list(recs[0]["sensitivity"])
    out = ["## Sensitivity to q, d and alpha", "",
           "The model's forecasts reread under other criteria (the same simulated "
           "statistics; the chain's horizon recomputed under the same criteria): mean RPS "
           "(share of trivial forecasts) over the chains of seeds 2 and 3.", "",
           "| criteria | " + " | ".join(f"K = {k}" for k in ks) + " |",
           "|---|" + "---|" * len(ks)]
    base = {k: [r for r in recs if r["K"] == k] for k in ks}
    out.append("| benchmark (" + _crit_text() + ") | " + " | ".join(
        f"{np.mean([r['scores'][0]['rps'] for r in base[k]]):.2f} "
        f"({np.mean([r['scores'][0]['trivial'] for r in base[k]]):.2f})" for k in ks) + " |")
    for key in keys:
        out.append(f"| {key} | " + " | ".join(
            f"{np.mean([r['sensitivity'][key]['rps'] for r in base[k]]):.2f} "
            f"({np.mean([r['sensitivity'][key]['trivial'] for r in base[k]]):.2f})"
            for k in ks) + " |")
    return out


# --- report ----------------------------------------------------------------------------------

def report() -> None:
    lines = ["# The real-chain forecasting benchmark", "",
             "Generated by `python analyses/benchmark/run.py report`; do not edit above the "
             "marker.", ""]
    sections = [benchmark_table(), benchmark_checks(), nochange_table(), scores_table(),
                k_table(), q_d_table(), shock_fits_table(), shock_table(),
                first_step_table(), centred_table(), momentum_fits_table(), momentum_table(),
                offset_fits_table(), offset_table(), trait_noise_fits_table(),
                trait_noise_table(), pooled_noise_table(), spread_fits_table(),
                mean_shock_fits_table(), shared_noise_fits_table(), push_fits_table(),
                push_table(), push_first_fits_table(),
                levelshare_fits_table(),
                levelshare_table(), spike_table(), priors_table(),
                adequacy_table(before=(ADEQUACY_ONE_NOISE, "with one learning noise")),
                adequacy_table(path=ADEQUACY_ONE_NOISE,
                               which=" (one learning noise for every trait, the default until "
                               "2026-12-07)",
                               before=(ADEQUACY_NOSHOCK, "before the generation shock")),
                adequacy_table(path=ADEQUACY_NOSHOCK,
                               which=" (before the generation shock, 2026-12-05)"),
                full_timing()]
    for section in sections:
        lines += section + [""]
    lines.pop()   # no blank line after the last section
    write_results(HERE, "\n".join(lines))
    k_figure(ROOT / "docs" / "figures" / "benchmark_k.png")


def chain_configs() -> dict:
    """Chain configs by name, from the pilot's and the benchmark's sweep files."""
    from chain_runner.sweep import load_sweep

    out = {}
    for f in ("pilot.toml", "sweep.toml"):
        path = ROOT / "data" / "benchmark" / f
        if path.exists():
            out.update({c.name: c for c in load_sweep(path).chains})
    return out


def _design_cells(cfg) -> str:
    d, f = cfg.design, cfg.finetune
    return (f"{d.cfg_scale:g} | {d.cfg_schedule} | {d.p_drop:g} | {d.anchor} | {f.steps} | "
            f"{f.learning_rate:g} | {f.lora_rank}")


def _crit_text() -> str:
    c = criteria()
    return f"q = {c.q}, d = {c.d}, alpha = {c.alpha}"


def _h(t) -> str:
    return "none" if t is None else str(t)


def benchmark_table() -> list[str]:
    cfgs = chain_configs()
    recs = _records(PILOT)
    chosen = set()
    sweep = ROOT / "data" / "benchmark" / "sweep.toml"
    if sweep.exists():
        from chain_runner.sweep import load_sweep

        chosen = {design_of(c.name)[0] for c in load_sweep(sweep).chains}
    out = ["## Pilot: the seed-1 chain of every candidate design", "",
           "Horizon: the run's detected horizon (docs/theory.md 3.1) under the benchmark's "
           f"criteria (config.toml: {_crit_text()}); at q = 0.5: the same with the "
           "package's default q; face value: the first generation where the observed "
           "statistics cross (benchmark criteria), no allowance for noise. R_t: pooled "
           "variance ratio; D2_15: pooled drift at generation 15 (threshold "
           f"{recs[0]['drift_threshold'] if recs else '-'}).", "",
           "| design | w | schedule | p_drop | anchor | steps | lr | rank | horizon | reason "
           "| at q = 0.5 | face value | R_1 | R_5 | R_15 | D2_15 | in benchmark |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(recs, key=lambda r: (r["horizon"] or 99, r["design"])):
        cells = _design_cells(cfgs[r["chain"]]) if r["chain"] in cfgs else "- | - | - | - | - | - | -"
        out.append(f"| {r['design']} | {cells} | {_h(r['horizon'])} | {r['reason'] or '-'} | "
                   f"{_h(r['horizon_q05'])} | {_h(r['face_value'])} | {r['var_ratio'][1]:.2f} | {r['var_ratio'][5]:.2f} "
                   f"| {r['var_ratio'][-1]:.2f} | {r['drift2'][-1]:.1f} | "
                   f"{'yes' if r['design'] in chosen else 'no'} |")
    return out


def benchmark_checks() -> list[str]:
    """The issue's bars on the benchmark's chains: their horizons, spread and stability."""
    from collections import defaultdict

    from qtrait.stats.collapse import run_collapse

    names = pack.chain_names() if pack.CHAINS.exists() else []
    if not names:
        return []
    crit = criteria()
    by_design = defaultdict(dict)
    for n in names:
        t, _ = run_collapse(pack.open_chain(n, OPENED / n)).detected(crit)
        d, seed = design_of(n)
        by_design[d][seed] = t
    flat = [t for seeds in by_design.values() for t in seeds.values()]
    late = sum(t is None or t >= 6 for t in flat)

    def span(ts):
        vals = [16 if t is None else t for t in ts]   # censored at 15: beyond it
        return max(vals) - min(vals)

    full = {d: s for d, s in by_design.items() if len(s) == 3}
    stable = sum(span(s.values()) <= 2 for s in full.values())
    rows = ["## The benchmark's chains", "",
            f"{len(names)} chains of 16 generations (0..15), {len(by_design)} designs; "
            f"criteria q = {crit.q}, d = {crit.d}, alpha = {crit.alpha}.", "",
            f"- distinct horizon values: {len(set(flat))} "
            f"({', '.join(_h(t) for t in sorted(set(flat), key=lambda t: 99 if t is None else t))});",
            f"- chains collapsing at generation 6 or later or not by 15: {late} of {len(flat)} "
            f"({100 * late / len(flat):.0f}%);",
            f"- designs whose seeds' horizons span at most 2 generations ('none' counting as "
            f"16): {stable} of {len(full)} with all three seeds "
            f"({100 * stable / max(len(full), 1):.0f}%).", "",
            "| design | seed 1 | seed 2 | seed 3 |", "|---|---|---|---|"]
    for d in sorted(by_design, key=lambda d: min(99 if t is None else t
                                                 for t in by_design[d].values())):
        s = by_design[d]
        rows.append(f"| {d} | " + " | ".join(_h(s.get(k)) if k in s else "-" for k in (1, 2, 3))
                    + " |")
    return rows


def nochange_table() -> list[str]:
    recs = _records(NOCHANGE)
    if not recs:
        return []
    r = recs[-1]
    return ["## Chains with no change", "",
            f"{r['chains']} chains of {r['generations']} generations resampled from "
            f"generation 0 of {r['source']} (no change at all): a crossing detected by "
            f"generation 15 in {r['crossed_by_15']} ({100 * r['share']:.1f}%)."]


METHODS = ("model", "persistence", "linear", "exponential", "statespace", "refit", "zeroshot")


def rows_of(recs: list[dict]) -> list[dict]:
    """One row per (record, method) with the run-level scores."""
    out = []
    for r in recs:
        first = r["scores"][0] if r["scores"] else next(
            b for b in r["baselines"].values() if b.get("available", True))
        base = {"chain": r["chain"], "design": r["design"], "seed": r["seed"], "K": r["K"],
                "ok": bool(r["diagnostics"].get("ok", True)),
                "divergences": int(r["diagnostics"].get("divergences", 0)),
                "observed": r["observed_horizon"], "trivial": first["trivial"],
                "censored": first["censored"]}
        if r["scores"]:
            out.append({**base, "method": "model", **r["scores"][0]})
        for m, b in r["baselines"].items():
            if b.get("available", True):
                out.append({**base, "method": m, **b})
    return out


def design_interval(diff) -> tuple[str, str]:
    """("mean", "[lo, hi]") of paired differences (a Series indexed by chain, or by
    (chain, K)): their mean over chains and its 90% interval from resampling designs
    (:func:`_bootstrap_by_design`); no interval ("[-]") from fewer than two designs."""
    by: dict = {}
    for key, v in diff.items():
        chain = key[0] if isinstance(key, tuple) else key
        by.setdefault(design_of(chain)[0], []).append(v)
    if len(by) < 2:
        return f"{diff.mean():+.2f}", "[-]"
    lo, hi = _bootstrap_by_design({d: np.array(v) for d, v in by.items()})
    return f"{diff.mean():+.2f}", f"[{lo:+.2f}, {hi:+.2f}]"


def _bootstrap_by_design(diff: dict, n_boot: int = 2000, seed: int = 5):
    """90% interval of the mean over chains of paired differences, resampling designs."""
    designs = sorted(diff)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        pick = rng.integers(len(designs), size=len(designs))
        vals = np.concatenate([diff[designs[i]] for i in pick])
        means.append(vals.mean())
    return np.quantile(means, [0.05, 0.95])


def scores_table(seeds=(2, 3)) -> list[str]:
    import pandas as pd

    recs = [r for r in _records(BACKTEST) if r["seed"] in seeds]
    if not recs:
        return ["## Scores", "", f"No backtest records of seeds {seeds} yet."]
    df = pd.DataFrame(rows_of(recs))
    out = ["## Scores on seeds " + " and ".join(map(str, seeds)), "",
           "Per K and method: n forecasts, mean RPS (generations), mean and median absolute "
           "error of the median, randomized 90% coverage (PIT in [0.05, 0.95]), integer "
           "90% coverage, median over forecasts of the leave-future-out log density per "
           "generation (the median: a baseline whose simulated statistics miss by many "
           "orders of magnitude gets densities of -1e14, which would swamp a mean). "
           "Non-trivial: "
           "the chain's horizon at or after generation K and not censored. Converged: fits "
           "with diagnostics.ok.", ""]
    header = ("| K | chains | fits | method | n | RPS | mean abs err | median abs err | "
              "rand. cov. 90% | int. cov. 90% | median LFO elpd |")
    out += [header, "|" + "---|" * 11]
    for k in sorted(df["K"].unique()):
        for subset in ("all", "non-trivial"):
            for fits in ("all", "converged"):
                d = df[df["K"] == k]
                if subset == "non-trivial":
                    d = d[~d["trivial"] & ~d["censored"]]
                if fits == "converged":
                    d = d[d["ok"]]
                for m in METHODS:
                    e = d[d["method"] == m]
                    if not len(e):
                        continue
                    lfo = e["lfo_elpd"].dropna()
                    out.append(f"| {k} | {subset} | {fits} | {m} | {len(e)} | "
                               f"{e['rps'].mean():.2f} | {e['abs_error'].mean():.2f} | "
                               f"{e['abs_error'].median():.1f} | "
                               f"{e['covered_random'].mean():.2f} | {e['covered'].mean():.2f} "
                               f"| {(f'{lfo.median():.3g}' if len(lfo) else '-')} |")
    out += ["", "Paired differences of RPS (baseline minus model; positive: the model is "
            "better), mean over chains with a 90% interval from 2000 bootstrap resamples of "
            "the designs (a design's chains stay together):", "",
            "| K | chains | baseline | n | mean difference | 90% interval |",
            "|---|---|---|---|---|---|"]
    for k in sorted(df["K"].unique()):
        for subset in ("all", "non-trivial"):
            d = df[df["K"] == k]
            if subset == "non-trivial":
                d = d[~d["trivial"] & ~d["censored"]]
            model = d[d["method"] == "model"].set_index("chain")["rps"]
            for m in METHODS[1:]:
                b = d[d["method"] == m].set_index("chain")["rps"]
                common = model.index.intersection(b.index)
                if not len(common):
                    continue
                mean, interval = design_interval(b[common] - model[common])
                out.append(f"| {k} | {subset} | {m} | {len(common)} | {mean} | {interval} |")
    fitted = [r for r in recs if r["scores"]]
    conv = ", ".join(f"K = {k}: {sum(bool(r['diagnostics'].get('ok')) for r in fitted if r['K'] == k)}"
                     f" of {sum(r['K'] == k for r in fitted)}"
                     for k in sorted({r["K"] for r in fitted}))
    out += ["", f"Fits that pass their diagnostics (R-hat <= 1.01, bulk and tail ESS >= "
            f"400, no divergence, E-BFMI >= 0.3): {conv}."]
    return out


def median_interval(q: dict) -> str:
    """Table cells "median | [5%, 95%]" of a record's :func:`q90` quantiles."""
    return f"{q['q50']:.3f} | [{q['q05']:.3f}, {q['q95']:.3f}]"


def chain_rows(recs: list[dict], cells) -> list[str]:
    """One table row per seed-1 fit: the chain, ``cells(record)`` (the middle columns) and
    whether the fit passes its diagnostics."""
    return [f"| {r['chain']} | {cells(r)} | {'yes' if r['diagnostics']['ok'] else 'no'} |"
            for r in recs]


def fits_verdict(recs: list[dict]) -> str:
    """How many of the seed-1 fits ``recs`` fail their diagnostics, and how badly."""
    diags = [r["diagnostics"] for r in recs]
    return (f"{sum(not d['ok'] for d in diags)} of {len(recs)} of these fits fail their "
            f"diagnostics (max R-hat {max(d['rhat_max'] for d in diags):.3f}, min ESS "
            f"{min(min(d['ess_bulk_min'], d['ess_tail_min']) for d in diags):.0f}, "
            f"{sum(d['divergences'] for d in diags)} divergences)")


def shock_fits_table() -> list[str]:
    """The seed-1 fits that set the shock's prior (shock.jsonl)."""
    recs = _records(SHOCK, by_chain=True)
    if not recs:
        return []
    m, sd = shock_prior()
    fm, fsd = first_prior()
    diags = [r["diagnostics"] for r in recs]
    out = ["## The generation shock and the first step on the seed-1 chains", "",
           "The breeder with wide priors on the generation shock's SD (LogNormal("
           f"{SHOCK_WIDE_PRIOR[0]:.2f}, {SHOCK_WIDE_PRIOR[1]})) and on the first step's "
           f"log factor (Normal({FIRST_WIDE_PRIOR[0]:.0f}, {FIRST_WIDE_PRIOR[1]:.0f})), "
           "step `shock`, on all 16 generations of each seed-1 chain (trait axes): the "
           "SD's posterior median and 90% interval, the first step's, the generation-1 "
           "shock and the lag-1 correlation of the shocks of generations 2-15 (posterior "
           "medians; a persistent shock is a trend the map lacks). Default priors from "
           f"these: the shock's SD LogNormal({m:.2f}, {sd:.2f}), median {np.exp(m):.3f}; "
           f"the first step Normal({fm:.2f}, {fsd:.2f}), a factor of {np.exp(fm):.2f} on "
           f"generation 1's variance. {fits_verdict(recs)}: the "
           "prior rests on posteriors that are not converged to the bar"
           + (", though none diverges." if not sum(d["divergences"] for d in diags)
              else "."), "",
           "| chain | SD median | 90% interval | first step median | 90% interval | shock "
           "at generation 1 | lag-1 correlation, generations 2-15 | fit passes its "
           "diagnostics |", "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        q, e, f = r["sd_quantiles"], np.array(r["shock_median"]), r["first_quantiles"]
        lag = np.corrcoef(e[1:-1], e[2:])[0, 1]
        out.append(f"| {r['chain']} | {median_interval(q)} | "
                   f"{f['q50']:+.2f} | [{f['q05']:+.2f}, {f['q95']:+.2f}] | "
                   f"{e[0]:+.2f} | {lag:.2f} | {'yes' if r['diagnostics']['ok'] else 'no'} |")
    return out


def change_table(new_path: Path, old_path: Path, intro: list[str],
                 seeds=(2, 3)) -> list[str]:
    """The default model (records ``new_path``) against an earlier version of it
    (``old_path``) on the same chains and K of ``seeds``, per subset (non-trivial
    uncensored, censored at the last generation, all); paired differences bootstrapped by
    design. ``intro``: the section's title and what changed."""
    import pandas as pd

    def model_rows(path):
        recs = [r for r in _records(path) if r["seed"] in seeds and r["scores"]]
        d = pd.DataFrame([x for x in rows_of(recs) if x["method"] == "model"])
        return d.set_index(["chain", "K"]) if len(d) else d

    new, old = model_rows(new_path), model_rows(old_path)
    if not len(new) or not len(old):
        return []
    out = intro + [
           f"Both forecast the same chains of seeds {' and '.join(map(str, seeds))} from "
           "the same generations. Chains: non-trivial (the horizon at or after K, not "
           "censored), censored (no crossing by generation 15), all. RPS: lower is better; "
           "LFO elpd: the leave-future-out log density of the held-out generations' "
           "statistics per generation, higher is better. Differences: without minus with "
           "for RPS, with minus without for the elpd (positive: the change helps), mean "
           "over chains with a 90% interval from 2000 bootstrap resamples of the designs. "
           "The rows *non-trivial, converged* keep the non-trivial chains whose fits pass "
           "their diagnostics in both versions (the other rows average over every fit; "
           "*converged* counts the fits that pass, *divergences* sums the divergent "
           "transitions, with the number of fits that have any).",
           "",
           "| K | chains | n | RPS without | RPS with | RPS difference [90%] | rand. cov. 90% "
           "without | with | median abs err without | with | LFO elpd difference [90%] | "
           "converged without | with | divergences without (fits) | with (fits) |",
           "|" + "---|" * 15]
    def nontrivial(d):
        return ~d["trivial"] & ~d["censored"]

    subsets = {"non-trivial": nontrivial,
               "non-trivial, converged": lambda d: nontrivial(d) & d["ok"]
               & new.loc[d.index, "ok"],
               "censored": lambda d: d["censored"], "all": lambda d: d["censored"] | True}
    for k in sorted({i[1] for i in new.index}):
        both = [i for i in new.index if i[1] == k and i in old.index]
        for name, pick in subsets.items():
            a = old.loc[both]
            a = a[pick(a)]
            if not len(a):
                continue
            b = new.loc[a.index]
            rps, elpd = (" ".join(design_interval(d)) for d in
                         (a["rps"] - b["rps"], b["lfo_elpd"] - a["lfo_elpd"]))
            div_a, div_b = (f"{int(x['divergences'].sum())} "
                            f"({int((x['divergences'] > 0).sum())})" for x in (a, b))
            out.append(f"| {k} | {name} | {len(a)} | {a['rps'].mean():.2f} | "
                       f"{b['rps'].mean():.2f} | {rps} | "
                       f"{a['covered_random'].mean():.2f} | {b['covered_random'].mean():.2f}"
                       f" | {a['abs_error'].median():.1f} | {b['abs_error'].median():.1f} | "
                       f"{elpd} | {int(a['ok'].sum())} | {int(b['ok'].sum())} | {div_a} | "
                       f"{div_b} |")
    return out


def shock_table() -> list[str]:
    """The breeder with the generation shock against the same breeder without it (both
    before the first step's factor)."""
    return change_table(NOFIRST, NOSHOCK, [
        "## The generation shock: kept only if the held-out generations prefer it", "",
        "The model with its generation shock (docs/models.md 4.1; its prior set on the "
        "seed-1 chains, step `shock`; records of 2026-12-06 in backtest_nofirst.jsonl) "
        "against the same model without it (records of 2026-12-05 in "
        "backtest_noshock.jsonl); neither has the first step's factor."])


def first_step_table() -> list[str]:
    """The default breeder (shock and first step) against the one with the shock only."""
    return change_table(ONE_NOISE, NOFIRST, [
        "## The first step's factor: kept only if the held-out generations prefer it", "",
        "The default model, whose generation 1 has its own variance factor (docs/models.md "
        "4.1; its prior and the shock's set on the seed-1 chains, step `shock`), against "
        "the model with the generation shock only (backtest_nofirst.jsonl).", ONE_NOISE_NOTE])


def centred_table() -> list[str]:
    """The default breeder with its generation shocks sampled centred against the default's
    records, sampled non-centred: the same posterior, so what may differ is convergence."""
    from qtrait.models import breeder

    return change_table(WITH_CENTRED, ONE_NOISE, [
        "## The shocks sampled centred: the same model, sampled another way", "",
        "The default model with its generation shocks sampled centred, as it samples them "
        f"on runs of {breeder.SHOCK_CENTRED_CELLS} cells or more (every benchmark chain) "
        "since 2026-12-07 "
        "(docs/models.md 4.1, \"How the shocks are sampled\"; records of 2026-12-07 in "
        "backtest_centred.jsonl), against the default's records above, of 2026-12-06, "
        "which sampled them non-centred. The prior and the posterior are the same, so the "
        "scores may differ by Monte Carlo error alone, which the bootstrap over designs "
        "leaves out: its intervals can exclude 0 for the same model. The converged "
        "columns are what the change is for. The other tables' records of the default and "
        "its variants were sampled non-centred.", ONE_NOISE_NOTE])


def offset_table() -> list[str]:
    """The default breeder with the mean offset switched on against the default."""
    return change_table(WITH_OFFSET, ONE_NOISE, [
        "## The mean offset: kept only if the held-out generations prefer it (they do not)",
        "", "The default model with the mean offset switched on (its mean map may settle "
        "away from the unconditional probe's mean; docs/models.md 4.1; the offset SD's "
        "prior set on the seed-1 chains, step `offset`; records in "
        "backtest_offset.jsonl, K = 3 only), against the default model. Here *without* "
        "is the default and *with* the variant.", ONE_NOISE_NOTE])


def push_table() -> list[str]:
    """The default breeder with the push per trait switched on against the default."""
    return change_table(variant_path("push"), BACKTEST, [
        "## The push per trait: kept only if the held-out generations prefer it", "",
        "The default model with the push per trait switched on (a constant step per trait "
        "in every concept's mean map; docs/models.md 4.1; its scale's prior set on the "
        "seed-1 chains, step `push`; records in backtest_push.jsonl, K = 3 only), against "
        "the default model (backtest.jsonl). Here *without* is the default and *with* "
        "the variant."])


def mean_step_correlation() -> tuple[float, int]:
    """The median over every cell of every benchmark chain (trait axes) of the lag-1
    correlation of the cell's successive guided-mean steps from generation 2 on, and the
    number of cells. A random walk observed with noise gives negatively correlated steps;
    persistent steps are momentum (or a runaway from c, gamma > 0).

    Read from the packed tables, not the opened runs (which every fit reads in
    generation-0 SD units): a correlation of steps is the same in any affine units of the
    cell, and opening 48 chains took most of a report's time."""
    import pandas as pd

    meta = json.loads(pack.CHAINS.read_text())
    r = []
    for name in pack.chain_names():
        axes = meta[name]["axes"]
        df = pd.read_parquet(pack.FOLDER / f"{name}.parquet",
                             columns=["generation", "set", "concept", *axes])
        means = (df[df["set"] == "guided"].groupby(["generation", "concept"], observed=True)
                 [axes].mean().unstack("concept").to_numpy(float))
        steps = np.diff(means, axis=0)[1:]
        r += [np.corrcoef(x[:-1], x[1:])[0, 1] for x in steps.T]
    return float(np.median(r)), len(r)


def momentum_fits_table() -> list[str]:
    """The seed-1 fits that set the momentum's prior (momentum.jsonl)."""
    recs = _records(MOMENTUM, by_chain=True)
    if not recs:
        return []
    m, sd = momentum_prior()
    corr, cells = mean_step_correlation()
    out = ["## The momentum on the seed-1 chains", "",
           "Do the means keep moving? Over the "
           f"{cells} cells of all {len(pack.chain_names())} benchmark chains (trait axes), "
           "the median lag-1 correlation of a cell's successive guided-mean steps from "
           f"generation 2 on is {corr:+.2f} (a random walk observed with noise gives "
           "negatively correlated steps; the breeder's map without momentum gives positively "
           "correlated ones only by running away from c, gamma > 0, with growing steps). The "
           "default breeder with a wide "
           f"prior on the mean map's momentum rho (Normal({MOMENTUM_WIDE_PRIOR[0]:.0f}, "
           f"{MOMENTUM_WIDE_PRIOR[1]:.0f})), step `momentum`, on all 16 generations of each "
           "seed-1 chain (trait axes): rho's posterior median and 90% interval (medians "
           f"from {min(r['quantiles']['q50'] for r in recs):+.2f} to "
           f"{max(r['quantiles']['q50'] for r in recs):+.2f}; the interval above 0 in "
           f"{sum(r['quantiles']['q05'] > 0 for r in recs)} of {len(recs)}). The "
           f"prior from these (breeder.MOMENTUM_PRIOR; not a default): Normal({m:.2f}, "
           f"{sd:.2f}). {fits_verdict(recs)}.", "",
           "| chain | rho median | 90% interval | fit passes its diagnostics |",
           "|---|---|---|---|"]
    for r in recs:
        q = r["quantiles"]
        out.append(f"| {r['chain']} | {q['q50']:+.3f} | [{q['q05']:+.3f}, {q['q95']:+.3f}] | "
                   f"{'yes' if r['diagnostics']['ok'] else 'no'} |")
    return out


def momentum_table() -> list[str]:
    """The default breeder with the momentum switched on (from generation 2, and the
    variant from generation 3) against the default."""
    return change_table(WITH_MOMENTUM, ONE_NOISE, [
        "## The momentum: kept only if the held-out generations prefer it (they do not)", "",
        "The default model with the momentum switched on (its mean map carries on a share "
        "of the parents' last step; docs/models.md 4.1; its prior set on the seed-1 "
        "chains, step `momentum`; records in backtest_momentum.jsonl), against the "
        "default model. Here *without* is the default and *with* the variant.", ONE_NOISE_NOTE]) + [""] + \
        change_table(WITH_MOMENTUM_FROM3, ONE_NOISE, [
            "### The momentum from generation 3", "",
            "The same with the momentum starting at generation 3 (generation 1's step, the "
            "first finetuning's, not carried on; its prior Normal({:.2f}, {:.2f}) from "
            "seed-1 fits of this variant, momentum_from3.jsonl; records in "
            "backtest_momentum_from3.jsonl), against the default model."
            .format(*learned_prior(MOMENTUM_FROM3, "mean", "sd")), ONE_NOISE_NOTE])


def levelshare_fits_table() -> list[str]:
    """The seed-1 fits that set the level-and-share priors (levelshare.jsonl)."""
    recs = _records(LEVELSHARE, by_chain=True)
    if not recs:
        return []
    loc, spread = levelshare_prior(), levelshare_spread_prior()
    out = ["## Level and share on the seed-1 chains", "",
           "The default breeder with each cell's lambda and V_m sampled as its level L = "
           "lambda + V_m and inherited share r = lambda / L (docs/models.md 4.1), with wide "
           f"priors on their locations (log L Normal({LEVEL_WIDE_PRIOR[0]:.0f}, "
           f"{LEVEL_WIDE_PRIOR[1]:.0f}), logit r Normal({SHARE_WIDE_PRIOR[0]:.0f}, "
           f"{SHARE_WIDE_PRIOR[1]:.0f})) and spreads (HalfNormal("
           f"{SPREAD_WIDE_PRIOR['log_level_sd']}) and HalfNormal("
           f"{SPREAD_WIDE_PRIOR['logit_share_sd']:.0f})), step `levelshare`, on all 16 "
           "generations of each seed-1 chain (trait axes): the posterior medians and 90% "
           "intervals of the two locations and the medians of the two spreads, of lambda "
           "and of V_m over the cells. The priors from these (breeder.LEVEL_SHARE_PRIOR; "
           "not a default): log L's location Normal({:.2f}, {:.2f}), logit r's Normal("
           "{:.2f}, {:.2f}); spreads HalfNormal({:.2f}) and HalfNormal({:.2f}) (the root "
           "mean square of each spread's posterior over the chains). {}.".format(
               *loc["log_level_mu"], *loc["logit_share_mu"], spread["log_level_sd"],
               spread["logit_share_sd"], fits_verdict(recs)), "",
           "| chain | log L location | 90% interval | logit r location | 90% interval | "
           "log L spread | logit r spread | lambda | V_m | fit passes its diagnostics |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        a, b = r["log_level_mu"], r["logit_share_mu"]
        out.append(f"| {r['chain']} | {a['q50']:+.2f} | [{a['q05']:+.2f}, {a['q95']:+.2f}] | "
                   f"{b['q50']:+.2f} | [{b['q05']:+.2f}, {b['q95']:+.2f}] | "
                   f"{r['log_level_sd']['q50']:.3f} | {r['logit_share_sd']['q50']:.2f} | "
                   f"{r['lambda_median']:.2f} | {r['v_mut_median']:.3f} | "
                   f"{'yes' if r['diagnostics']['ok'] else 'no'} |")
    return out


def shipped_diagnostics(rows: list[dict], terms: str, shocks: str) -> dict[str, dict]:
    """Run -> the convergence diagnostics of the last fit on all generations of that
    shipped run among the adequacy records ``rows`` (analyses/adequacy/run.py's
    ``records``) with the model ``terms`` and its generation shocks sampled as
    ``shocks``."""
    return {r["run"]: r["diagnostics"] for r in rows
            if r["terms"] == terms and r["shocks"] == shocks}


def shipped_sentence(term: str) -> str:
    """What the default model of its time (one learning noise: the variants with a
    sentence were measured on it) with the optional ``term`` (a prior key, as the
    adequacy records name models) does on the shipped runs against that default sampled
    the same way (the shocks centred or not): divergences and fits passing the
    convergence rule (analyses/adequacy/records.jsonl); "" without records."""
    from dataclasses import replace

    from adequacy.run import model_spec, model_terms, records    # analyses/adequacy/run.py

    from qtrait.models.breeder import one_noise_priors

    spec = model_spec()
    one_noise = replace(spec, priors=one_noise_priors(spec.priors))
    default, rows = model_terms(one_noise), records()   # as the records name it
    mine = [r for r in rows if r["terms"] == f"{default}+{term}"]
    if not mine:
        return ""
    new, old = (shipped_diagnostics(rows, t, mine[-1]["shocks"])
                for t in (f"{default}+{term}", default))
    runs = [r for r in new if r in old]
    if not runs:
        return ""
    return (f"On the {len(runs)} shipped runs (all generations; analyses/adequacy/results.md,"
            f" model `...+{term}`) it has {sum(new[r]['divergences'] for r in runs)} "
            f"divergences (the default: {sum(old[r]['divergences'] for r in runs)}) and "
            f"passes the convergence rule on {sum(new[r]['ok'] for r in runs)} (the default: "
            f"{sum(old[r]['ok'] for r in runs)}).")


def levelshare_table() -> list[str]:
    """The default breeder with the level-and-share parameterization against the
    default."""
    return change_table(WITH_LEVELSHARE, ONE_NOISE, [
        "## Level and share: not kept (worse forecasts, fewer converged fits)",
        "", "The default model with lambda and V_m sampled through the level and the share "
        "(breeder.LEVEL_SHARE_PRIOR, set on the seed-1 chains, step `levelshare`; records "
        "in backtest_levelshare.jsonl, made with those priors in place of the defaults), "
        "against the default model. Here *without* is the default and *with* the variant. "
        "The held-out generations' density prefers it slightly over all chains, but its "
        "forecasts of the horizon score worse and fewer of its fits converge. "
        + shipped_sentence("log_level_mu"), ONE_NOISE_NOTE])


def spike_table() -> list[str]:
    """The default breeder with the spike at V_m = 0 against the default."""
    return change_table(WITH_SPIKE, ONE_NOISE, [
        "## The spike at V_m = 0: not a default", "",
        "The default model with each cell's V_m either its value or exactly 0, the choice "
        "marginalised in the likelihood, against the default model. Here *without* is the "
        "default and *with* the spike. The share of cells with V_m > 0 has a uniform prior "
        "here (records in backtest_spike.jsonl, made with the key added to the defaults); "
        "with it the spike meets the textbook Replace chains' coverage and width bars, from "
        "fits that do not pass the convergence rule (analyses/textbook/results.md). "
        + shipped_sentence("v_mut_slab"), ONE_NOISE_NOTE])


def offset_fits_table() -> list[str]:
    """The seed-1 fits that set the mean offset's prior (offset.jsonl)."""
    recs = _records(OFFSET, by_chain=True)
    if not recs:
        return []
    m, sd = offset_prior()
    out = ["## The mean offset on the seed-1 chains", "",
           "The default breeder plus the mean offset, with a wide prior on the SD s of the "
           "cells' offsets "
           f"(LogNormal({OFFSET_WIDE_PRIOR[0]:.2f}, {OFFSET_WIDE_PRIOR[1]})), step "
           "`offset`, on all 16 generations of each seed-1 chain (trait axes): s's "
           "posterior median and 90% interval, and the largest |offset| among the cells "
           "(posterior medians, generation-0 SDs a generation). The offset's prior from "
           f"these (breeder.MEAN_OFFSET_PRIOR; not a default): LogNormal({m:.2f}, "
           f"{sd:.2f}), median {np.exp(m):.3f}. {fits_verdict(recs)}.", "",
           "| chain | s median | 90% interval | largest abs. offset | fit passes its "
           "diagnostics |", "|---|---|---|---|---|"]
    return out + chain_rows(recs, lambda r: f"{median_interval(r['sd_quantiles'])} | "
                            f"{np.max(np.abs(r['offset_median'])):.3f}")


def lognormal_text(m: float, sd: float, low: str) -> str:
    """"LogNormal(m, sd), median .., 90% between .. and .." (the lower bound in format
    ``low``)."""
    lo, hi = np.exp(m - 1.645 * sd), np.exp(m + 1.645 * sd)
    return (f"LogNormal({m:.2f}, {sd:.2f}), median {np.exp(m):.3f}, 90% between "
            f"{lo:{low}} and {hi:.2f}")


def spread_fits_table() -> list[str]:
    """The seed-1 fits that set the LogNormal prior of log lambda's spread (spread.jsonl),
    and what that prior does on the shipped runs (analyses/adequacy/records.jsonl)."""
    from adequacy.run import LOGNORMAL_SPREAD

    recs = _records(LAMBDA_SPREAD, by_chain=True)
    if not recs:
        return []
    out = ["## The spread of log lambda on the seed-1 chains", "",
           "The default breeder with a wide LogNormal prior on the spread of log lambda over "
           f"the cells (LogNormal({LAMBDA_SPREAD_WIDE_PRIOR[0]:.2f}, "
           f"{LAMBDA_SPREAD_WIDE_PRIOR[1]}); the default is HalfNormal(0.3)), step `spread`, "
           "on all 16 generations of each seed-1 chain (trait axes): the spread's posterior "
           "median and 90% interval, and lambda's and V_m's medians over the cells. The "
           "prior from these (breeder.LAMBDA_SPREAD_PRIOR; not a default): "
           f"{lognormal_text(*spread_prior(), '.4f')}. {fits_verdict(recs)}.", ""]
    out += shipped_variant_lines(LOGNORMAL_SPREAD, "the LogNormal spread") + [
        "| chain | spread median | 90% interval | lambda median | V_m median | fit passes "
        "its diagnostics |", "|---|---|---|---|---|---|"]
    return out + chain_rows(recs, lambda r: f"{median_interval(r['sd_quantiles'])} | "
                            f"{r['lambda_median']:.2f} | {r['v_mut_median']:.2f}")


def mean_shock_fits_table() -> list[str]:
    """The seed-1 fits that set the mean shock's prior (mean_shock.jsonl), and what it
    does on the shipped runs (analyses/adequacy/records.jsonl)."""
    recs = _records(MEAN_SHOCK, by_chain=True)
    if not recs:
        return []
    return seed1_section(
        "## The mean shock on the seed-1 chains",
        "The default breeder with one shock a generation and trait on the means of the "
        "trait's cells in every concept (docs/models.md 4.1, \"Mean shock\"), under a "
        f"wide prior on its SD (LogNormal({MEAN_SHOCK_WIDE_PRIOR[0]:.2f}, "
        f"{MEAN_SHOCK_WIDE_PRIOR[1]})), step `mean_shock`, on all 16 generations of each "
        "seed-1 chain (trait axes): the SD's posterior median and 90% interval, and the "
        "learning noises' median beside it (generation-0 SDs). The prior from these "
        "(breeder.MEAN_SHOCK_PRIOR; not a default): "
        f"{lognormal_text(*mean_shock_prior(), '.3f')}.", recs, "mean_shock_sd",
        "the mean shock", ["SD median", "90% interval", "learning noise median"],
        lambda r: f"{median_interval(r['sd_quantiles'])} | {r['sigma_learn_median']:.3f}")


def seed1_section(title: str, text: str, recs: list[dict], term: str, name: str,
                  columns: list[str], cells) -> list[str]:
    """A section on the seed-1 fits ``recs`` that set an optional term's prior: ``title``,
    ``text`` and how many fits fail their diagnostics, the shipped runs with the term
    (:func:`shipped_variant_lines` of ``term`` and ``name``), then a row per fit with the
    middle ``columns`` from ``cells(record)``."""
    header = ["chain", *columns, "fit passes its diagnostics"]
    return ([title, "", f"{text} {fits_verdict(recs)}.", ""]
            + shipped_variant_lines(term, name)
            + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + chain_rows(recs, cells))


def shared_noise_fits_table() -> list[str]:
    """The seed-1 fits that set the shared learning noise's prior (shared_noise.jsonl),
    and what it does on the shipped runs (analyses/adequacy/records.jsonl)."""
    recs = _records(SHARED_NOISE, by_chain=True)
    if not recs:
        return []
    m, sd = shared_noise_prior()
    lo, mid, hi = (1 / (1 + np.exp(-(m + z * sd))) for z in (-1.645, 0.0, 1.645))
    return seed1_section(
        "## The shared learning noise on the seed-1 chains",
        "The default breeder with a share psi of each trait's learning-noise variance "
        "shared by the trait's cells in a generation (docs/models.md 4.1, \"Shared "
        "learning noise\"), under a wide prior on logit psi (Normal("
        f"{SHARED_NOISE_WIDE_PRIOR[0]:.1f}, {SHARED_NOISE_WIDE_PRIOR[1]})), step "
        "`shared_noise`, on all 16 generations of each seed-1 chain (trait axes): psi's "
        "posterior median and 90% interval, and the learning noises' median beside it "
        "(generation-0 SDs). The prior from these (breeder.SHARED_NOISE_PRIOR; not a "
        f"default): logit psi ~ Normal({m:.2f}, {sd:.2f}), psi's median {mid:.3f}, 90% "
        f"between {lo:.3f} and {hi:.2f}.", recs, "shared_noise", "the shared learning noise",
        ["psi median", "90% interval", "learning noise median"],
        lambda r: f"{median_interval(r['psi_quantiles'])} | {r['sigma_learn_median']:.3f}")


def push_fits_table() -> list[str]:
    """The seed-1 fits that set the push's prior (push.jsonl), and what it does on the
    shipped runs (analyses/adequacy/records.jsonl)."""
    from qtrait.models.breeder import MEAN_PUSH_WIDE_PRIOR

    recs = _records(PUSH, by_chain=True)
    if not recs:
        return []
    return seed1_section(
        "## The push per trait on the seed-1 chains",
        "The default breeder with a push pi_k in the mean map of every cell of trait k "
        "(docs/models.md 4.1, \"Push per trait\"; pi_k ~ Normal(0, s_pi sigma_k), sigma_k "
        "the trait's learning noise), under a wide prior on s_pi ("
        f"{lognormal_text(*MEAN_PUSH_WIDE_PRIOR, '.2f')}), step `push`, on all 16 "
        "generations of each seed-1 chain (trait axes): s_pi's posterior median and 90% "
        "interval, and the largest push among the traits (posterior medians, "
        "generation-0 SDs a generation). The prior from these (breeder.MEAN_PUSH_PRIOR; "
        f"not a default): {lognormal_text(*push_prior(), '.3f')}.", recs, "mean_push_sd",
        "the push per trait", ["s_pi median", "90% interval", "largest abs. push"],
        lambda r: f"{median_interval(r['sd_quantiles'])} | "
                  f"{max(map(abs, r['push_median'].values())):.3f}")


def push_first_fits_table() -> list[str]:
    """The seed-1 fits that set the prior of the push's factor at generation 1
    (push_first.jsonl), and what the push with it does on the shipped runs."""
    from qtrait.models.breeder import PUSH_FIRST_WIDE_PRIOR

    recs = _records(PUSH_FIRST, by_chain=True)
    if not recs:
        return []
    m, sd = push_first_prior()
    return seed1_section(
        "## The push's factor at generation 1 on the seed-1 chains",
        "The default breeder with the push per trait (its prior as learned above) and "
        "a factor f on generation 1's push (docs/models.md 4.1), under a wide prior "
        f"on log f (Normal({PUSH_FIRST_WIDE_PRIOR[0]:.1f}, {PUSH_FIRST_WIDE_PRIOR[1]:.1f}"
        ")), step `push_first`, on all 16 generations of each seed-1 chain (trait axes): "
        "f's posterior median and 90% interval. The prior from these "
        f"(breeder.PUSH_FIRST_PRIOR; not a default): log f ~ Normal({m:.2f}, {sd:.2f}), "
        f"f's median {np.exp(m):.2f}, 90% between {np.exp(m - 1.645 * sd):.2f} and "
        f"{np.exp(m + 1.645 * sd):.0f}.", recs, "mean_push_sd+push_first",
        "the push with its factor at generation 1", ["f median", "90% interval"],
        lambda r: median_interval(r["f_quantiles"]))


def shipped_variant_lines(term: str, name: str) -> list[str]:
    """The shipped runs fitted with the default plus the optional ``term`` (as the
    adequacy records name it; ``name`` says what it is) against the default fitted the
    same way (analyses/adequacy/records.jsonl, the newest record of each): a table of
    their diagnostics and adequacy, or nothing without records."""
    from adequacy.run import mean_failures, model_terms, records, sampling_label

    default = model_terms()
    rows = records()
    variant = [r for r in rows if r["terms"] == f"{default}+{term}"]
    if not variant:
        return []
    label = sampling_label(variant[-1])
    base = {r["run"]: r for r in rows if r["terms"] == default and sampling_label(r) == label}
    new = {r["run"]: r for r in variant if sampling_label(r) == label}
    runs = [r for r in new if r in base]
    out = [f"On the shipped runs (all generations, seed 0; analyses/adequacy/results.md, model "
           f"`...+{term}`), {name} against the default sampled the same way{label}: "
           "diagnostics, the one-step PIT test's p, the one-step 90% coverage and how many "
           "generations' cell-averaged mean fails its posterior predictive check (p below "
           "0.01 over the number of checks).", "",
           "| run | R-hat max | bulk ESS min | divergences | PIT p | coverage | mean PPC "
           "failures | default: R-hat max | bulk ESS min | divergences | PIT p | coverage | "
           "mean PPC failures |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        cells = []
        for rec in (new[run], base[run]):
            d, a = rec["diagnostics"], rec["adequacy"]
            cells += [f"{d['rhat_max']:.3f}", f"{d['ess_bulk_min']:.0f}",
                      str(d["divergences"]), f"{a['pit_test']['p_value']:.2g}",
                      f"{a['coverage90']:.3f}", str(len(mean_failures(rec)))]
        out.append(f"| {run} | " + " | ".join(cells) + " |")
    return out + [""]


def trait_noise_fits_table() -> list[str]:
    """The seed-1 fits that set the per-trait learning noise's prior (trait_noise.jsonl)."""
    recs = _records(TRAIT_NOISE, by_chain=True)
    if not recs:
        return []
    m, sd = trait_noise_prior()
    out = ["## The learning noise per trait on the seed-1 chains", "",
           "The default breeder with one learning noise on the mean per trait, each with a "
           f"wide prior (LogNormal({TRAIT_NOISE_WIDE_PRIOR[0]:.2f}, "
           f"{TRAIT_NOISE_WIDE_PRIOR[1]}); docs/models.md 4.1), step `trait_noise`, on all "
           "16 generations of each seed-1 chain (trait axes): the smallest, median and "
           "largest trait's noise (posterior medians, generation-0 SDs). The prior of each "
           "trait's noise from these (breeder.SIGMA_TRAIT_PRIOR; not a default): "
           f"LogNormal({m:.2f}, {sd:.2f}), median {np.exp(m):.2f}; the scale of the pooled "
           "version's shared S (breeder.SIGMA_POOLED_PRIOR), their root mean square: "
           f"{trait_noise_pooled_prior():.2f}. {fits_verdict(recs)}.",
           "", "| chain | smallest noise | median | largest noise | fit passes its "
           "diagnostics |", "|---|---|---|---|---|"]
    for r in recs:
        sig = r["sigma_median"]
        lo, hi = min(sig, key=sig.get), max(sig, key=sig.get)
        out.append(f"| {r['chain']} | {sig[lo]:.3f} ({lo}) | {np.median(list(sig.values())):.3f}"
                   f" | {sig[hi]:.3f} ({hi}) | {'yes' if r['diagnostics']['ok'] else 'no'} |")
    return out


def trait_noise_table() -> list[str]:
    """The default breeder with the learning noise per trait against the default."""
    return change_table(variant_path("trait_noise"), ONE_NOISE, [
        "## The learning noise per trait: not a default (yet)",
        "", "The default model with one learning noise on the mean per trait "
        "(breeder.SIGMA_TRAIT_PRIOR, its prior set on the seed-1 chains, step "
        "`trait_noise`; docs/models.md 4.1; records in backtest_trait_noise.jsonl: K = 3 "
        "first, K = 2, 4 and 5 after), against the default model. Here *without* is the "
        "default and *with* the variant. Why it is not a default: docs/models.md 4.1 and "
        "analyses/textbook/results.md.", ONE_NOISE_NOTE])


def pooled_noise_table() -> list[str]:
    """Today's default, with a learning noise per trait pooled like V_m, against the
    default before it, with one noise for every trait."""
    return change_table(BACKTEST, ONE_NOISE, [
        "## The learning noise per trait, pooled like V_m: the default since 2026-12-07",
        "", "The default model, with one learning noise on the mean per trait, a shared "
        "scale times a trait's factor (breeder.SIGMA_POOLED_PRIOR, its scale set on the "
        "seed-1 chains, step `trait_noise`; docs/models.md 4.1), against the default before "
        "it, one noise for every trait (backtest_one_noise.jsonl). Here *without* is one "
        "noise and *with* the noise per trait pooled. It was measured as a variant first, "
        "at K = 3, then at K = 2, 4 and 5, before it was made the default."])


def full_timing() -> list[str]:
    """The cost of the whole benchmark backtest (K = 2, 3, 5, seeds 1-3) in one run (the
    last ``backtest`` step of timing.jsonl that covered it, before the generation shock),
    and of the latest backtest step after it."""
    steps = [t for t in _records(TIMING) if t["step"] == "backtest"]
    runs = [t for t in steps if t["backtests"] >= 144]
    recs = [r for r in _records(NOSHOCK) if r["scores"] and r["K"] in (2, 3, 5)]
    if not runs or not recs:
        return []
    t = runs[-1]
    n_ok = sum(bool(r["diagnostics"].get("ok")) for r in recs)
    out = ["## The cost of the full backtest", "",
           f"The whole benchmark backtest (seeds {', '.join(map(str, t['seeds']))}; K = "
           f"{', '.join(map(str, t['K']))}: {t['backtests']} forecasts, each with its six "
           f"baselines and scores) ran as one step in {t['jobs']} local processes "
           f"(`python analyses/benchmark/run.py backtest --seeds 1,2,3 --jobs "
           f"{t['jobs']}`) on the {t['cpus']}-core development machine ({t['machine']}, "
           f"{t['date']}), with the model before the generation shock: "
           f"{t['wall_seconds'] / 60:.1f} min wall, median "
           f"{np.median([r['seconds'] for r in recs]):.0f} s a forecast inside its "
           f"process; {n_ok} of {len(recs)} fits pass their diagnostics. Every score "
           "equals the one-process run's (each fit and forecast has its own seed). Seed 1 "
           "chose the settings, so its scores are not in the tables above."]
    new = [r for r in _records(BACKTEST) if r["scores"]]
    # the latest steps that together made the current records (a step resumes the last)
    made, n = [], 0
    for step in reversed(steps):
        if step is t or n >= len(new):
            break
        made.insert(0, step)
        n += step["backtests"]
    if made and new:
        ok = sum(bool(r["diagnostics"].get("ok")) for r in new)
        parts = "; ".join(f"K = {', '.join(map(str, m['K']))}: {m['wall_seconds'] / 60:.1f}"
                          " min" for m in made)
        out += ["", f"With the current default model ({len(new)} forecasts of seeds "
                f"{', '.join(map(str, made[-1]['seeds']))}, {made[-1]['jobs']} processes, "
                f"{made[-1]['date']}): "
                f"{sum(m['wall_seconds'] for m in made) / 60:.1f} min wall in "
                f"{len(made)} step{'s' if len(made) > 1 else ''} ({parts}), median "
                f"{np.median([r['seconds'] for r in new]):.0f} s a forecast; {ok} of "
                f"{len(new)} fits pass their diagnostics."]
    return out


def k_table(seeds=(2, 3)) -> list[str]:
    """Mean RPS and absolute error against K, per method, all chains of the seeds."""
    import pandas as pd

    recs = [r for r in _records(BACKTEST) if r["seed"] in seeds]
    if not recs:
        return []
    df = pd.DataFrame(rows_of(recs))
    ks = sorted(df["K"].unique())
    out = ["## How many generations to pay for", "",
           "Mean RPS (mean absolute error) over the chains of seeds " +
           " and ".join(map(str, seeds)) + ", by K (K = 1: generation 0 and its probes "
           "only; no model fit is possible there). '-': not run.", "",
           "| method | " + " | ".join(f"K = {k}" for k in ks) + " |",
           "|---|" + "---|" * len(ks)]
    for m in METHODS:
        cells = []
        for k in ks:
            e = df[(df["K"] == k) & (df["method"] == m)]
            cells.append(f"{e['rps'].mean():.2f} ({e['abs_error'].mean():.2f})" if len(e)
                         else "-")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out + [""] + stopping_rule(df)


def stopping_rule(df, width: int = 3) -> list[str]:
    """Stop paying for generations at the first K whose model forecast is observed or has
    a 90% interval at most ``width`` generations wide (beyond T_max counts as T_max + 1)."""
    crit = criteria()
    model = df[df["method"] == "model"]
    if not len(model):
        return []
    ks = [int(k) for k in sorted(model["K"].unique())]
    stops, errs, at_last = [], [], 0
    for _, g in model.groupby("chain"):
        g = g.set_index("K")
        chosen = None
        for k in ks:
            if k not in g.index:
                continue
            r = g.loc[k]
            lo = r["lo90"] if r["lo90"] is not None and not np.isnan(r["lo90"]) else crit.t_max + 1
            hi = r["hi90"] if r["hi90"] is not None and not np.isnan(r["hi90"]) else crit.t_max + 1
            if r["trivial"] or hi - lo <= width:
                chosen = k
                break
        if chosen is None:
            chosen, at_last = ks[-1], at_last + 1
        stops.append(chosen)
        errs.append(g.loc[chosen, "abs_error"])
    return [f"Stopping rule (stop at the first K in {ks} where the crossing is already "
            f"detected or the model's 90% interval is at most {width} generations wide): "
            f"over {len(stops)} chains it stops at K = "
            + ", ".join(f"{k}: {stops.count(k)}" for k in ks)
            + f" ({at_last} never met the rule and stop at K = {ks[-1]}); mean absolute "
            f"error at the stop {np.mean(errs):.2f} generations."]


def k_figure(path: Path, seeds=(2, 3)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    recs = [r for r in _records(BACKTEST) if r["seed"] in seeds]
    if not recs:
        return
    df = pd.DataFrame(rows_of(recs))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, subset in zip(axes, ("all", "non-trivial")):
        d = df if subset == "all" else df[~df["trivial"] & ~df["censored"]]
        for m in METHODS:
            e = d[d["method"] == m].groupby("K")["rps"].mean()
            if len(e):
                ax.plot(e.index, e.values, marker="o", lw=2.5 if m == "model" else 1.2,
                        label=m, color="k" if m == "model" else None)
        ax.set_title(f"{subset} chains (seeds {', '.join(map(str, seeds))})")
        ax.set_xlabel("K: generations paid for (0..K-1)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean RPS (generations; lower is better)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def show_lognormal(what: str, prior: tuple[float, float]) -> None:
    """Print a LogNormal prior learned from seed 1 (a step's last line)."""
    m, sd = prior
    print(f"prior of {what} from seed 1: LogNormal(mu = {m:.3f} (median {np.exp(m):.3f}), "
          f"sigma = {sd:.3f})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("pilot", "nochange", "statespace", "backtest", "k1",
                                     "zeroshot", "priors", "adequacy", "shock", "offset",
                                     "momentum", "levelshare", "trait_noise", "spread",
                                     "mean_shock", "shared_noise", "push", "push_first",
                                     "report"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "benchmark"))
    ap.add_argument("--seeds", default="2,3")
    ap.add_argument("--k", default="2,3,5")
    ap.add_argument("--jobs", type=int, default=2, help="backtests at once (processes)")
    ap.add_argument("--with", dest="extra", default=None,
                    help="backtest: the default model with these optional priors (a --with "
                         "name of analyses/adequacy/run.py), records in backtest_NAME.jsonl")
    a = ap.parse_args(argv)
    if a.step == "pilot":
        pilot(Path(a.runs))
    elif a.step == "nochange":
        nochange()
    elif a.step == "statespace":
        statespace()
    elif a.step == "backtest":
        backtest([int(s) for s in a.seeds.split(",")], [int(k) for k in a.k.split(",")],
                 a.jobs, a.extra)
    elif a.step == "k1":
        baselines_only([int(s) for s in a.seeds.split(",")])
    elif a.step == "zeroshot":
        rescore_zeroshot()
    elif a.step == "priors":
        prior_sensitivity()
    elif a.step == "adequacy":
        adequacy([int(x) for x in a.seeds.split(",")], a.jobs)
    elif a.step == "shock":
        shock(a.jobs)
        show_lognormal("the shock's SD", shock_prior())
        print("prior of the first step's log factor from seed 1: Normal({:.3f}, {:.3f})"
              .format(*first_prior()))
    elif a.step == "offset":
        offset(a.jobs)
        show_lognormal("the mean offset's SD", offset_prior())
    elif a.step == "momentum":
        momentum(a.jobs)
        print("prior of the mean map's momentum from seed 1: Normal({:.3f}, {:.3f})"
              .format(*momentum_prior()))
    elif a.step == "levelshare":
        levelshare(a.jobs)
        for key, (m, sd) in levelshare_prior().items():
            print(f"prior of {key} from seed 1: Normal({m:.3f}, {sd:.3f})")
        for key, scale in levelshare_spread_prior().items():
            print(f"prior of {key} from seed 1: HalfNormal({scale:.3f})")
    elif a.step == "spread":
        spread(a.jobs)
        show_lognormal("log lambda's spread over cells", spread_prior())
    elif a.step == "mean_shock":
        mean_shock(a.jobs)
        show_lognormal("the mean shock's SD", mean_shock_prior())
    elif a.step == "shared_noise":
        shared_noise(a.jobs)
        print("prior of logit psi, the learning noise's shared share, from seed 1: "
              "Normal({:.3f}, {:.3f})".format(*shared_noise_prior()))
    elif a.step == "push":
        push(a.jobs)
        show_lognormal("the push's scale", push_prior())
    elif a.step == "push_first":
        push_first(a.jobs)
        print("prior of log f, the push's factor at generation 1, from seed 1: "
              "Normal({:.3f}, {:.3f})".format(*push_first_prior()))
    elif a.step == "trait_noise":
        trait_noise(a.jobs)
        print("prior of each trait's learning noise from seed 1: LogNormal({:.3f}, {:.3f})"
              .format(*trait_noise_prior()))
        print(f"scale of the pooled noise's shared S from seed 1: HalfNormal("
              f"{trait_noise_pooled_prior():.3f})")
    else:
        report()


if __name__ == "__main__":
    main()
