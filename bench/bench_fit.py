"""Benchmark: `qtrait fit` (default sampler settings) on a real run, its compile cost, and a
naive per-image PyMC model.

The run: the shipped real run data/runs/chain_042 (10 generations, 10 digits x 16 traits,
898 guided images and probes of 112 + 112 per generation), or ``--run PATH``; with
``--simulated``, a simulated 10-generation, 16-trait, single-concept run (1,000 guided
images, probes of 125 + 125). For each model (``breeder``, ``tilt``; ``exact`` with
``--with-exact``), one fresh Python process:

1. cold: imports qtrait, opens the run and fits it with the default ``SamplerSettings``
   (nutpie, 4 chains x 1,500 draws after 500 tuning, target accept 0.9): compilation
   included. PyTensor's and numba's disk caches are whatever this machine holds unless
   ``--cold-caches`` points them at empty folders;
2. warm: fits the same run again with another seed in the same process: the compiled
   model is reused with the new data, as in any second fit of the same layout.

cold - import - warm is what a new process (each `qtrait fit` command) pays over a warm
fit besides its imports: building and compiling the model. It is measured with fits of
1 chain x 20 + 20 draws, the warm one with the cold one's seed: the same draws, the same
leapfrog steps (nutpie is deterministic given its seed), so the two differ by the
process's own cost alone. (With another seed, 20 early-tuning draws of a hard posterior
can take 0.4 s or 12 s: tilt on chain_042, 2026-12-07.)

Compile baseline, measured in the same run: ``breeder`` and ``tilt`` again with their
graphs as built until 2026-12-06 (one ``pm.Data`` per data array, PyTensor's ``gammaln``),
by patching the model base class in the measuring process (``BEFORE``).

Warm-fit baseline, measured in the same run: ``breeder`` without the generation shock
and the first step (``NO_GENERATION_TERMS``; the breeder before they became defaults),
cold and warm as above, so the table says what they cost on the machine it runs on.

Numerics baseline, measured in the same run: ``breeder`` with its log density compiled under
numba's fast-math flags (``FASTMATH_ON``; every fit until 2026-12-08), so the table says
what bit-for-bit reproducible draws (``qtrait.fit.NUMBA_FASTMATH``) cost.

Naive baseline (``--simulated`` only: it pools a trait over concepts), in its own fresh
process: the naive way to write the breeder model, per image.
Same structure and priors (per trait: V_t = lambda s2_{t-1} + V_m,
mu_t = c + (1 + gamma)(zbar_{t-1} - c), log lambda, gamma and V_m partially pooled over the
traits, c the unconditional probes' mean), but a likelihood over every guided image of
generations 1..9, y ~ Normal(mu_t, sqrt(V_t)) (9 x 1,000 x 16 = 144,000 observations),
sampled by ``pm.sample`` (PyMC's NUTS, C backend), 4 chains x 1,000 draws after 1,000
tuning (the breeder's defaults until 2026-12-07: the same 2,000 iterations a chain),
target accept 0.9, cores=2.
``--naive-tune`` and ``--naive-draws`` shorten it (for a quick look): its sampling time is
then scaled to 1,000 + 1,000 per chain in proportion to leapfrog steps (gradient
evaluations dominate), each phase by its own steps per iteration, and the output says so.
Short tuning leaves the naive model badly adapted (trajectories at the maximum tree depth),
so keep ``--naive-tune`` at 1,000 for a fair figure. The same process times one
log-density-and-gradient evaluation of the naive model and of qtrait's breeder graph,
both on PyTensor's C backend: the cost ratio per gradient, free of sampler differences.

Targets on a 2-core machine (issue 13), on chain_042: warm ``breeder`` <= 10 s, ``tilt``
<= 60 s, ``exact`` <= 5 min; a new process pays <= 10 s over a warm fit; every fit
converges under the defaults. On the simulated run: ``breeder`` >= 10x faster than naive.

    python bench/bench_fit.py [--run PATH | --simulated] [--with-exact] [--repeats R]
                              [--cold-caches] [--skip-baseline] [--skip-naive]
                              [--naive-tune N] [--naive-draws N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _measure import ROOT, measure  # noqa: E402  (bench/ is on sys.path when run as a script)

from qtrait import sampler_defaults as defaults

MAKE_RUN = """
import numpy as np
from qtrait.simulate import ChainTruth, TraitTruth, write_simulated_run
from qtrait.theory.schedules import GuidanceSchedule
rng = np.random.default_rng(1)
traits = tuple(TraitTruth(f"t{{k}}", h2=float(rng.uniform(0.8, 0.98)), m_base=0.0, v_base=1.0,
               m_uncond=float(rng.uniform(-1.5, -0.5)), v_uncond=float(rng.uniform(1.5, 3)),
               v_mut=float(rng.uniform(0, 0.05))) for k in range({traits}))
truth = ChainTruth(traits=traits, model="tilt", generations={generations}, images={images},
                   probe_w1={probe}, probe_uncond={probe},
                   guidance=GuidanceSchedule("constant", 2.0), seed=3)
write_simulated_run({run!r}, truth)
"""

# the model graphs as they were built until 2026-12-06, for the compile baseline: one
# pm.Data per data array (nutpie unpacks each in generated numba code) and PyTensor's
# gammaln (its digamma gradient keeps the compiled log-density out of the disk cache)
BEFORE = """
import pymc as pm
import pytensor.tensor as pt
from qtrait.models import base

def data_vars(self, cd):
    return {k[len("data_"):]: pm.Data(k, v) for k, v in self.arrays(cd).items()}

base.ModelSpec.data_vars = data_vars
base.ModelSpec.packed = lambda self, cd, upto=None: self.arrays(cd, upto)
base.log_gamma = lambda x, lib=None: pt.gammaln(x)
"""

# one fresh process: cold fit, then a warm fit (same layout; another seed unless the
# settings name one)
FIT = """
import json, resource, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from qtrait.fit import SamplerSettings, fit
from qtrait.rundir import open_run
{before}
t_import = time.perf_counter() - t0
spec = None
{spec}
run = open_run({run!r})
t1 = time.perf_counter()
r = fit(run, {model!r}, SamplerSettings(**{settings!r}), save=False, spec=spec)
t2 = time.perf_counter()
peak_cold = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
res = {{"import_s": t_import, "cold_fit_s": t2 - t1, "cold_total_s": t2 - t0,
       "peak_cold_mib": peak_cold, "diag_cold": r.diagnostics}}
json.dump(res, open({out!r}, "w"))   # kept if the warm fit runs past the time limit
r2 = fit(run, {model!r}, SamplerSettings(**{{"seed": 1, **{settings!r}}}), save=False,
         spec=spec)
t3 = time.perf_counter()
json.dump(res | {{"warm_s": t3 - t2, "diag_warm": r2.diagnostics}}, open({out!r}, "w"))
"""

# the warm-fit baseline of the breeder (off with --skip-baseline): the same model without the
# generation shock and the first step (docs/models.md 4.1), the breeder as it was before
# they became defaults on 2026-12-06, so the table says what they cost on this machine
NO_GENERATION_TERMS = """
from dataclasses import replace
from qtrait.models import get_spec
spec = get_spec("breeder")
spec = replace(spec, priors={k: v for k, v in spec.priors.items()
                             if k not in ("gen_shock_sd", "first_step")})
"""

# the numerics baseline (off with --skip-baseline): the breeder with its log density compiled
# under numba's fast-math flags, as every fit was until 2026-12-08 (qtrait.fit.NUMBA_FASTMATH
# says why they are off), so the table says what bit-for-bit draws cost on this machine
FASTMATH_ON = """
import qtrait.fit
qtrait.fit.NUMBA_FASTMATH = True
"""

# one fresh process: gradient costs (naive and qtrait's breeder graph), then the naive fit
NAIVE = """
import json, resource, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import numpy as np
import pymc as pm
import pytensor.tensor as pt
from qtrait.models import chain_data, fit_data, get_spec
from qtrait.models.breeder import DEFAULT_PRIORS as P
from qtrait.rundir import open_run

run = open_run({run!r})
traits, gens = run.traits, run.select_generations(None)
raw = np.stack([run.table(g, "guided")[traits].to_numpy(float) for g in gens])  # (G, N, K)
c0, s0 = raw[0].mean(0), raw[0].std(0, ddof=1)   # generation-0 guided units, as qtrait
guided = (raw - c0) / s0
center = np.mean([((run.table(g, "probe_uncond")[traits].to_numpy(float) - c0) / s0).mean(0)
                  for g in gens], axis=0)
prev_mean, prev_var = guided[:-1].mean(1), guided[:-1].var(1, ddof=1)
y = guided[1:]                                   # every guided image of generations 1..G-1
K = len(traits)
with pm.Model() as naive:
    def pooled(name, loc, sd):
        return (pm.Normal(f"{{name}}_mu", *loc)
                + pm.HalfNormal(f"{{name}}_sd", sd) * pm.Normal(f"{{name}}_z", 0, 1, shape=K))
    lam = pt.exp(pooled("log_lambda", P["log_lambda_mu"], P["log_lambda_sd"]))
    gamma = pooled("gamma", P["gamma_mu"], P["gamma_sd"])
    v_mut = (pm.HalfNormal("v_mut_scale", P["v_mut_scale"])
             * pm.HalfNormal("v_mut_z", 1.0, shape=K))
    V = lam * prev_var + v_mut
    mu = center + (1 + gamma) * (prev_mean - center)
    pm.Normal("y", mu[:, None, :], pt.sqrt(V)[:, None, :], observed=y)


def grad_cost(model, seconds=2.0):
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({{}})
    x = np.concatenate([np.ravel(v) for v in model.initial_point().values()])
    fn(x)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        fn(x)
        n += 1
    return (time.perf_counter() - t) / n


cd = chain_data([fit_data(run)])
spec = get_spec("breeder")
g_naive, g_breeder = grad_cost(naive), grad_cost(spec.build(cd))
t1 = time.perf_counter()
with naive:
    idata = pm.sample(draws={draws}, tune={tune}, chains=4, cores=2, target_accept=0.9,
                      random_seed=0, progressbar=False, compute_convergence_checks=False,
                      discard_tuned_samples=False)
t2 = time.perf_counter()
from qtrait.fit import diagnose
diag, _ = diagnose(idata, [v.name for v in naive.free_RVs])
json.dump({{"y_size": int(y.size), "setup_s": t1 - t0, "sample_s": t2 - t1,
           "grad_naive_s": g_naive, "grad_breeder_s": g_breeder,
           "steps_tune": int(idata.warmup_sample_stats["n_steps"].sum()),
           "steps_draw": int(idata.sample_stats["n_steps"].sum()), "diag": diag,
           "peak_children_mib":
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}},
          open({out!r}, "w"))
"""


def best(runs: list[dict], key: str) -> dict:
    return min(runs, key=lambda r: r[key])


#: targets on a 2-core machine (issue 13): warm fit time of each model on chain_042, and
#: what a new process pays over a warm fit (imports, graph, compilation)
WARM_TARGET_S = {"breeder": 10.0, "tilt": 60.0, "exact": 300.0}
OVERHEAD_TARGET_S = 10.0
#: `qtrait fit data/runs/chain_042` as issue 13 recorded it when it was filed (same 2-core
#: machine type, the code of that day, not re-measurable here): breeder 71 s warm, tilt
#: about 27 minutes, exact more than 38 minutes (a lower bound). The ratios to these are
#: printed for chain_042 only and labelled as against recorded, not re-measured, figures.
ISSUE_FIGURES_S = {"breeder": 71.0, "tilt": 27 * 60.0, "exact": 38 * 60.0}
#: the results row of the breeder's warm-fit baseline (NO_GENERATION_TERMS)
NO_GEN_ROW = "breeder without shock and first step"
#: the results row of the numerics baseline (FASTMATH_ON)
FASTMATH_ROW = "breeder with numba fast-math"
#: rows of baselines, not of models, with what each is
BASELINE_ROWS = {
    NO_GEN_ROW: "the breeder before they became defaults on 2026-12-06",
    FASTMATH_ROW: ("the log density compiled as every fit was until 2026-12-08, when a "
                   "graph's first fit could draw otherwise than its later ones"),
}
#: models whose compile baseline (the graphs as built before 2026-12-06) is measured
BASELINE_MODELS = ("breeder", "tilt")


#: the sampler settings of the new-process measurement: both fits with seed 0, so they
#: sample the same draws and cold - import - warm is the process's own cost (graph,
#: compilation)
TINY = {"chains": 1, "draws": 20, "tune": 20, "seed": 0}


def fit_times(run: str, model: str, tmp: Path, args, before: bool = False,
              settings: dict | None = None, spec: str = "", label: str = "") -> dict:
    """Cold and warm fit of ``model`` in fresh processes (best of ``--repeats``), with the
    default sampler settings or ``settings``; ``spec``: code that sets the spec fitted
    (``label`` names it in the temporary files)."""
    reps = []
    for i in range(args.repeats):
        tag = (f"{model}{label}_{'before' if before else 'now'}_"
               f"{'tiny' if settings else 'full'}_{i}")
        env = {}
        if args.cold_caches:   # a fresh, empty cache for every cold fit
            cache = tmp / f"cache_{tag}"
            env = {"PYTENSOR_FLAGS": f"base_compiledir={cache / 'pytensor'}",
                   "NUMBA_CACHE_DIR": str(cache / "numba")}
        out = tmp / f"{tag}.json"
        m = measure(FIT.format(run=run, model=model, out=str(out), settings=settings or {},
                               before=BEFORE if before else "", spec=spec),
                    timeout=args.limit_s,
                    env=env)
        if "timed_out" in m:   # what finished before the limit: the cold fit, or nothing
            got = json.loads(out.read_text()) if out.is_file() else {}
            return {"timed_out": args.limit_s, "cold": got or None, "warm": None}
        reps.append({**json.loads(out.read_text()), "peak_mib": m["peak_mib"]})
    cold, warm = best(reps, "cold_total_s"), best(reps, "warm_s")
    # building and compiling: what a new process pays over a warm fit, its imports aside
    return {"cold": cold, "warm": warm,
            "overhead_s": cold["cold_total_s"] - cold["import_s"] - warm["warm_s"],
            "peak_mib": max(r["peak_mib"] for r in reps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "data" / "runs" / "chain_042"),
                    help="the run to fit (default: the shipped real run chain_042)")
    ap.add_argument("--simulated", action="store_true",
                    help="fit a simulated run instead (--generations, --images, --traits)")
    ap.add_argument("--models", default="breeder,tilt",
                    help="comma-separated models to time (default: breeder,tilt)")
    ap.add_argument("--overhead-only", action="store_true",
                    help="only the new-process cost (no default-settings fits, no naive)")
    ap.add_argument("--with-exact", action="store_true",
                    help="also the exact model (minutes)")
    ap.add_argument("--skip-baseline", action="store_true",
                    help="skip the baselines: the compile one (the graphs as built before "
                         "2026-12-06) and the breeder without shock and first step")
    ap.add_argument("--naive-tune", type=int, default=1000,
                    help="tuning steps per chain of the naive model (time scaled to 1,000)")
    ap.add_argument("--naive-draws", type=int, default=1000,
                    help="draws per chain of the naive model (time scaled to 1,000)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="repeat every measurement; report the fastest (busy machines)")
    ap.add_argument("--cold-caches", action="store_true",
                    help="point PyTensor's compiledir and numba's cache at empty folders")
    ap.add_argument("--skip-naive", action="store_true",
                    help="only the qtrait fits (no naive baseline, no ratio)")
    ap.add_argument("--limit-s", type=float, default=1200,
                    help="stop a model's process (cold + warm fit) after this many seconds")
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--traits", type=int, default=16)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="qtrait-bench-fit-"))
    try:
        if args.simulated:
            run = str(tmp / "run")
            measure(MAKE_RUN.format(traits=args.traits, generations=args.generations,
                                    images=args.images, probe=args.images // 8, run=run))
        else:
            run = str(Path(args.run).resolve())
            if not (Path(run) / "manifest.json").is_file():
                raise SystemExit(f"bench_fit: {run} is not a run directory")
        models = args.models.split(",") + (["exact"] if args.with_exact else [])
        unknown = sorted(set(models) - set(WARM_TARGET_S))
        if unknown:
            raise SystemExit(f"bench_fit: unknown model(s) {', '.join(unknown)}")
        results = {} if args.overhead_only else {m: fit_times(run, m, tmp, args)
                                                 for m in models}
        if "breeder" in results and not args.skip_baseline:
            results[NO_GEN_ROW] = fit_times(run, "breeder", tmp, args,
                                            spec=NO_GENERATION_TERMS, label="-nogen")
            results[FASTMATH_ROW] = fit_times(run, "breeder", tmp, args,
                                              spec=FASTMATH_ON, label="-fastmath")
        overhead = {m: {"now": fit_times(run, m, tmp, args, settings=TINY)} for m in models}
        if not args.skip_baseline:
            for m in [m for m in models if m in BASELINE_MODELS]:
                overhead[m]["before"] = fit_times(run, m, tmp, args, before=True,
                                                  settings=TINY)
        naive = None
        # the naive model is per trait: a single-concept (simulated) run only
        if not args.skip_naive and args.simulated and not args.overhead_only:
            reps = []
            for i in range(args.repeats):
                out = tmp / f"naive_{i}.json"
                m = measure(NAIVE.format(run=run, tune=args.naive_tune,
                                         draws=args.naive_draws, out=str(out)))
                reps.append({**json.loads(out.read_text()), "peak_mib": m["peak_mib"]})
            naive = best(reps, "sample_s")
            naive["peak_mib"] = max(r["peak_mib"] for r in reps)
            # scale each phase to 1,000 iterations per chain, by its share of leapfrog steps
            st, sd = naive["steps_tune"], naive["steps_draw"]
            naive["scale"] = (st * 1000 / args.naive_tune + sd * 1000 / args.naive_draws) \
                / (st + sd)
            naive["wall_s"] = naive["setup_s"] + naive["sample_s"] * naive["scale"]
        report(args, run, results, overhead, naive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe_run(args, run: str) -> str:
    if args.simulated:
        n_probe = args.images // 8
        return (f"simulated, {args.generations} generations x {args.traits} traits x 3 sets "
                f"({args.images} guided images, probes of {n_probe} + {n_probe})")
    return run


def report(args, run: str, results: dict, overhead: dict, naive: dict | None) -> None:
    print(f"run: {describe_run(args, run)}\nsampler: nutpie, {defaults.CHAINS} chains x "
          f"{defaults.DRAWS} draws after {defaults.TUNE} tuning, target accept "
          f"{defaults.TARGET_ACCEPT} (qtrait's defaults)")
    print("disk caches (PyTensor compiledir, numba): "
          + ("empty (--cold-caches)" if args.cold_caches else "as found on this machine")
          + (f"; best of {args.repeats} runs" if args.repeats > 1 else "") + "\n")
    nw = naive["wall_s"] if naive else None
    print(f"{'model':<9}{'import s':>9}{'cold s':>9}{'warm s':>9}{'peak MiB':>10}"
          f"{'naive/warm':>12}{'R-hat':>8}{'ESS':>6}{'div':>5}  verdict (warm fit)")
    for model, r in results.items():
        if model in BASELINE_ROWS:
            continue
        if r["warm"] is None:   # ran past --limit-s
            c = r["cold"]
            print(f"{model:<9}" + (f"{c['import_s']:>9.1f}{c['cold_total_s']:>9.1f}" if c
                                   else f"{'-':>9}{'> ' + str(int(r['timed_out'])):>9}")
                  + f"  warm fit not finished within --limit-s {r['timed_out']:.0f} s")
            continue
        c, w = r["cold"], r["warm"]
        d = w["diag_warm"]
        print(f"{model:<9}{c['import_s']:>9.1f}{c['cold_total_s']:>9.1f}{w['warm_s']:>9.1f}"
              f"{r['peak_mib']:>10.0f}"
              + (f"{nw / w['warm_s']:>11.1f}x" if naive else f"{'-':>12}")
              + f"{d['rhat_max']:>8.3f}{min(d['ess_bulk_min'], d['ess_tail_min']):>6.0f}"
              f"{d['divergences']:>5}  {'converged' if d['ok'] else 'NOT CONVERGED'}")
    now = results.get("breeder")
    for row, what in BASELINE_ROWS.items():
        base = results.get(row)
        if base and base["warm"] and now and now["warm"]:
            d = base["warm"]["diag_warm"]
            print(f"baseline, same run: {row} ({what}): warm {base['warm']['warm_s']:.1f} s, "
                  f"R-hat {d['rhat_max']:.3f}, ESS "
                  f"{min(d['ess_bulk_min'], d['ess_tail_min']):.0f}, {d['divergences']} div, "
                  f"{'converged' if d['ok'] else 'NOT CONVERGED'}; breeder warm / baseline: "
                  f"{now['warm']['warm_s'] / base['warm']['warm_s']:.2f}")
    if Path(run).name == "chain_042" and not args.simulated:
        ratios = [f"{m} {r['warm']['warm_s'] / ISSUE_FIGURES_S[m]:.3f}"
                  + (" (against a lower bound)" if m == "exact" else "")
                  for m, r in results.items() if r["warm"] is not None
                  and m not in BASELINE_ROWS]
        if ratios:
            print("warm / the figures recorded in issue 13 when it was filed (breeder 71 s, "
                  "tilt about 27 min, exact > 38 min; not re-measured): " + ", ".join(ratios))
    print("\ncold s: a fresh process from `import qtrait` to the end of the first fit "
          "(imports, graph, compilation, sampling);\nwarm s: a second fit, same process, "
          "same layout, another seed (the compiled model reused). R-hat (max), ESS (min of\n"
          "bulk and tail), divergences and verdict (qtrait's convergence rule): the warm fit.")
    print(f"\nwhat a new process pays over a warm fit, besides its imports (cold - import - "
          f"warm of fits with {TINY['chains']} chain x {TINY['draws']} + {TINY['tune']} "
          f"draws, both seed {TINY['seed']}):")
    print(f"{'model':<9}{'now s':>8}{'before s':>10}{'now/before':>12}{'import s':>10}")
    for model, o in overhead.items():
        now, bef = o["now"], o.get("before")
        cells = [f"{now['overhead_s']:>8.1f}" if now["warm"] else f"{'-':>8}"]
        if bef and bef["warm"] and now["warm"]:
            cells += [f"{bef['overhead_s']:>10.1f}",
                      f"{now['overhead_s'] / bef['overhead_s']:>12.2f}"]
        else:
            cells += [f"{'-':>10}", f"{'-':>12}"]
        if now["warm"]:
            cells.append(f"{now['cold']['import_s']:>10.1f}")
        print(f"{model:<9}" + "".join(cells))
    if any("before" in o for o in overhead.values()):
        print("before: the graphs as built until 2026-12-06 (one pm.Data per data array, "
              "PyTensor's gammaln), measured in this run.")
    if not args.simulated and not args.skip_naive and not args.overhead_only:
        print("\nnaive baseline: not run (it pools a trait over concepts; run it on the "
              "simulated single-concept run: --simulated)")
    if naive:
        print(f"\nnaive baseline: per-image breeder model in PyMC, {naive['y_size']:,} "
              f"observations, pm.sample (NUTS, C backend), 4 chains, cores=2, "
              f"target accept 0.9")
        if (args.naive_tune, args.naive_draws) != (1000, 1000):
            print(f"  SCALED: measured with {args.naive_tune} tuning + {args.naive_draws} "
                  f"draws per chain, sampling {naive['sample_s']:.1f} s; scaled "
                  f"x{naive['scale']:.2f} to 1000 + 1000 by leapfrog steps per phase "
                  f"(an estimate, not a measurement)")
        print(f"  setup (imports, data, graph, gradient timing) {naive['setup_s']:.1f} s + "
              f"sampling {naive['sample_s'] * naive['scale']:.1f} s = {naive['wall_s']:.1f} s; "
              f"peak {naive['peak_mib']:.0f} MiB (+ {naive['peak_children_mib']:.0f} MiB per "
              f"sampling worker)")
        d = naive["diag"]
        print(f"  leapfrog steps per iteration: tuning "
              f"{naive['steps_tune'] / (4 * args.naive_tune):.0f}, draws "
              f"{naive['steps_draw'] / (4 * args.naive_draws):.0f}; min bulk ESS "
              f"{d['ess_bulk_min']:.0f}; R-hat max {d['rhat_max']:.3f}; divergences "
              f"{d['divergences']}")
        if results.get("breeder", {}).get("warm"):
            bw = results["breeder"]["warm"]
            pe_n = naive["wall_s"] / d["ess_bulk_min"]
            pe_b = bw["warm_s"] / bw["diag_warm"]["ess_bulk_min"]
            print(f"  seconds per effective draw (wall / min bulk ESS): naive {pe_n:.3f}, "
                  f"breeder warm {pe_b:.4f} ({pe_n / pe_b:.0f}x; the breeder also samples "
                  f"sigma_learn and tau)")
        gn, gb = naive["grad_naive_s"], naive["grad_breeder_s"]
        print(f"  one log-density + gradient evaluation (PyTensor C backend): naive "
              f"{gn * 1e6:.0f} us, qtrait breeder graph {gb * 1e6:.0f} us ({gn / gb:.0f}x)")
    print("\ntargets (2 cores):")
    checks = []
    for model, r in results.items():
        if model in BASELINE_ROWS:
            continue
        if r["warm"] is None:
            checks.append((f"{model} warm fit within {WARM_TARGET_S[model]:.0f} s (not "
                           f"finished within {r['timed_out']:.0f} s of cold + warm)", False))
            continue
        w = r["warm"]["warm_s"]
        checks.append((f"{model} warm {w:.1f} s <= {WARM_TARGET_S[model]:.0f} s",
                       w <= WARM_TARGET_S[model]))
        checks.append((f"{model} converges under the defaults (warm fit)",
                       bool(r["warm"]["diag_warm"]["ok"])))
    for model, o in overhead.items():
        if o["now"]["warm"] is None:
            checks.append((f"{model} new-process cost (not finished within "
                           f"{o['now']['timed_out']:.0f} s)", False))
            continue
        oh = o["now"]["overhead_s"]
        checks.append((f"{model} new-process cost besides imports {oh:.1f} s <= "
                       f"{OVERHEAD_TARGET_S:.0f} s", oh <= OVERHEAD_TARGET_S))
    if naive and results.get("breeder", {}).get("warm"):
        bw = results["breeder"]["warm"]["warm_s"]
        checks.append((f"breeder >= 10x faster than naive ({nw / bw:.0f}x)", nw / bw >= 10))
    for text, ok in checks:
        print(f"  {'met    ' if ok else 'NOT MET'}  {text}")


if __name__ == "__main__":
    main()
