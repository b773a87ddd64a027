"""Simulation-based calibration (SBC; Talts et al. 2018) of the ``breeder`` and ``tilt``
models' core parameters.

For each replication: draw every parameter from the model's prior (PyMC's prior
predictive on the model built for a template data layout, so the draws follow the graph's
own priors), simulate the sufficient statistics of every generation *exactly* from the
model's generative story in numpy (the same equations as the likelihood in
qtrait/models/breeder.py and tilt.py, each generation driven by the previous observed
guided set), fit the model to them (nutpie, the compiled model reused across
replications), and record the rank of the true value among ``thin_to`` evenly thinned
posterior draws. If the sampler and the model's code are right, the ranks are uniform on
0..thin_to; a chi-square test per parameter says how far they are.

Prior draws that make the data degenerate are rejected and counted: for the breeder, a
non-finite or extreme set (variance outside [1e-4, 1e4], |mean| > 1e3); for the tilt, a
generation where the CFG tilt does not exist (w_eff / u <= (w_eff - 1) / V_u, where the
model's likelihood floors the precision at 1e-8) or an extreme set.

Records are appended to ``<model>.jsonl`` beside this file (a rerun resumes);
``--report`` only rewrites results.md and the figure.

    python analyses/sbc/run.py [--model breeder|tilt|both] [--report]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _results import write_results  # noqa: E402  (shared by the analyses)
ROOT = HERE.parents[1]


def load_config() -> dict:
    return tomllib.loads((HERE / "config.toml").read_text())


# --- data ------------------------------------------------------------------------------------

def shape_of(mcfg: dict) -> tuple[float, float]:
    """The (skewness, excess kurtosis) of every set's law in the replications (the
    likelihood's pooled shape: constant, so the pooled estimate is exactly this)."""
    return float(mcfg.get("skew", 0.0)), float(mcfg.get("kurt", 0.0))


def make_chain_data(arrays: dict, G: int, K: int, design: dict, shape=(0.0, 0.0)):
    """A one-concept ChainData from per-set arrays (G, K) of n, mean, var, every set with
    the skewness and excess kurtosis ``shape``."""
    from qtrait.models.data import FitData, SetStats, chain_data

    sets = {}
    for s, a in arrays.items():
        sets[s] = SetStats(n=np.asarray(a["n"], float).reshape(G, 1, K),
                           mean=np.asarray(a["mean"], float).reshape(G, 1, K),
                           var=np.asarray(a["var"], float).reshape(G, 1, K),
                           kurt=np.full((G, 1, K), shape[1]), skew=np.full((G, 1, K), shape[0]))
    fd = FitData("sbc", list(range(G)), ["all"], [f"trait_{k}" for k in range(K)], sets,
                 np.zeros((1, K)), np.ones((1, K)), design, [])
    return chain_data([fd])


def design_of(model: str, mcfg: dict) -> dict:
    if model == "breeder":
        return {}
    return {"cfg_scale": float(mcfg["cfg_scale"]), "cfg_schedule": "constant",
            "p_drop": 0.0, "anchor": "base"}


def template(model: str, mcfg: dict):
    """Placeholder data of the replication layout (every set at mean 0, variance 1)."""
    G, K = mcfg["generations"], mcfg["traits"]
    sizes = {"guided": mcfg["images"]}
    if model == "tilt":
        sizes.update(probe_w1=mcfg["probe_w1"], probe_uncond=mcfg["probe_uncond"])
    arrays = {s: {"n": np.full((G, K), n), "mean": np.zeros((G, K)), "var": np.ones((G, K))}
              for s, n in sizes.items()}
    return make_chain_data(arrays, G, K, design_of(model, mcfg), shape_of(mcfg))


def observe(rng, mean, var, n, shape=(0.0, 0.0), extra_mean=0.0, extra_rel=0.0):
    """Sufficient statistics of a set of n from latent (mean, var), as in the likelihood
    (qtrait.models.base.mean_var_law): s2 ~ Gamma(mean var, relative variance
    r = 2/(n-1) + kurt/n + extra_rel), zbar | s2 ~ N(mean + b (s2 - var), v)."""
    from qtrait.models.base import mean_var_law

    r, b, v = mean_var_law(n, shape[1], shape[0], var, extra_mean, extra_rel)
    s2 = rng.gamma(1.0 / r, var * r)
    return mean + b * (s2 - var) + np.sqrt(v) * rng.standard_normal(np.shape(mean)), s2


def degenerate(zbar, s2) -> bool:
    return bool(not (np.all(np.isfinite(zbar)) and np.all(np.isfinite(s2))
                     and np.all(np.abs(zbar) < 1e3) and np.all((s2 > 1e-4) & (s2 < 1e4))))


def simulate_breeder(th: dict, mcfg: dict, rng):
    """Breeder (breeder.py): V_t = lambda s2_{t-1} + V_m, mu_t = (1 + gamma) zbar_{t-1} +
    beta (beta = -gamma c, sampled itself without a probe); (zbar_t, s2_t) from the joint
    law of :func:`observe` with the configured shape, learning noise sigma_learn^2 on the
    mean and tau^2 on the variance's relative variance; the generation shock
    exp(gen_shock_t) on every cell's V_t where the model has one, and the first step's
    factor exp(first_step) on generation 1's. Generation 0 is the standardised real data (0, 1)."""
    G, K, N = mcfg["generations"], mcfg["traits"], mcfg["images"]
    mean, var = np.zeros((G, K)), np.ones((G, K))
    for t in range(1, G):
        V = th["lambda"] * var[t - 1] + th["v_mut"]
        if "gen_shock" in th:      # the shocks of generations 1..
            V = V * np.exp(th["gen_shock"][t - 1])
        if t == 1 and "first_step" in th:
            V = V * np.exp(th["first_step"])
        mu = (1 + th["gamma"]) * mean[t - 1] + th["intercept"]
        mean[t], var[t] = observe(rng, mu, V, N, shape_of(mcfg), th["sigma_learn"] ** 2,
                                  th["tau"] ** 2)
    if degenerate(mean, var):
        return None
    return make_chain_data({"guided": {"n": np.full((G, K), N), "mean": mean, "var": var}},
                           G, K, design_of("breeder", mcfg), shape_of(mcfg))


def simulate_tilt(th: dict, mcfg: dict, rng):
    """Tilt (tilt.py, anchor base, frozen unconditional branch): m_t = m_b + h2 (zbar_{t-1}
    - m_b) + sigma e_t, u_t = (h2 s2_{t-1} + (1 - h2) V_b) exp(tau f_t) (row 0: the base
    model m_b, V_b); guided set from the tilt with w_eff = 1 + kappa (w - 1), plus V_m; the
    w = 1 probe samples (m_t, u_t), the unconditional probe (m_u, V_u), every generation."""
    G, K, N = mcfg["generations"], mcfg["traits"], mcfg["images"]
    n1, nu = mcfg["probe_w1"], mcfg["probe_uncond"]
    w_e = 1.0 + th["kappa"] * (float(mcfg["cfg_scale"]) - 1.0)
    mb, vb, mu_u, vu = th["m_base"], th["v_base"], th["m_uncond"], th["v_uncond"]
    out = {s: {"n": np.full((G, K), n), "mean": np.zeros((G, K)), "var": np.ones((G, K))}
           for s, n in (("guided", N), ("probe_w1", n1), ("probe_uncond", nu))}
    g = out["guided"]
    for t in range(G):
        if t == 0:
            m, u = mb, vb
        else:
            m = mb + th["h2"] * (g["mean"][t - 1] - mb) + th["sigma_learn"] * th["learn_z_mean"][t]
            u = (th["h2"] * g["var"][t - 1] + (1 - th["h2"]) * vb) * np.exp(
                th["tau"] * th["learn_z_logvar"][t])
            prec = w_e / u - (w_e - 1.0) / vu
            if np.any(prec <= 1e-6):
                return None            # the tilt does not exist
            v = 1.0 / prec
            gm = m + (w_e - 1.0) * (v / vu) * (m - mu_u)
            g["mean"][t], g["var"][t] = observe(rng, gm, v + th["v_mut"], N, shape_of(mcfg))
        p = out["probe_w1"]
        p["mean"][t], p["var"][t] = observe(rng, m, u, n1, shape_of(mcfg))
        p = out["probe_uncond"]
        p["mean"][t], p["var"][t] = observe(rng, mu_u, vu, nu, shape_of(mcfg))
    if any(degenerate(a["mean"], a["var"]) for a in out.values()):
        return None
    return make_chain_data(out, G, K, design_of("tilt", mcfg), shape_of(mcfg))


SIMULATE = {"breeder": simulate_breeder, "tilt": simulate_tilt}


# --- prior draws, fits, ranks ------------------------------------------------------------------

def prior_draws(spec, cd, n: int, seed: int) -> list[dict]:
    """n joint prior draws of every free variable and deterministic parameter (the
    likelihood is a Potential, ignored by prior predictive sampling, as it should be)."""
    import pymc as pm

    model = spec.build(cd)
    skip = ("guided_", "learned_", "log_lik_", "w_eff", "v_star")
    names = [v.name for v in model.free_RVs] + [
        d.name for d in model.deterministics if not d.name.startswith(skip)]
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")      # "the effect of Potentials is ignored"
        prior = pm.sample_prior_predictive(draws=n, var_names=names, random_seed=seed).prior
    return [{k: prior[k].values[0, i] for k in names} for i in range(n)]


def parse(name: str) -> tuple[str, int | None]:
    if name.endswith("]"):
        base, idx = name[:-1].split("[")
        return base, int(idx)
    return name, None


def replicate(model: str, cfg: dict, i: int, theta: dict, settings) -> dict | None:
    """Simulate from theta, fit, and rank the true values (None: degenerate data)."""
    from qtrait.fit import _sample, diagnose
    from qtrait.models import get_spec

    mcfg = cfg[model]
    rng = np.random.default_rng([cfg["seed"], i, 7])
    cd = SIMULATE[model](theta, mcfg, rng)
    if cd is None:
        return None
    spec = get_spec(model)
    t0 = time.perf_counter()
    idata = _sample(spec, cd, settings, progress=False)
    seconds = time.perf_counter() - t0
    post = idata.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    keep = np.linspace(0, S - 1, cfg["thin_to"]).round().astype(int)
    ranks = {}
    for name in mcfg["parameters"]:
        base, idx = parse(name)
        v = post[base].values.reshape((S,) + post[base].shape[2:])
        true = theta[base]
        if idx is not None:
            v, true = v[:, idx], true[idx]
        ranks[name] = int(np.sum(v[keep] < true))
    free = json.loads(post.attrs["free_variables"])
    diag, _ = diagnose(idata, free)
    return {"replication": i, "ranks": ranks,
            "truth": {n: float(theta[parse(n)[0]] if parse(n)[1] is None
                               else theta[parse(n)[0]][parse(n)[1]])
                      for n in mcfg["parameters"]},
            "diagnostics": {k: round(float(v), 4) for k, v in diag.items()},
            "seconds": round(seconds, 2)}


SAMPLER_KEYS = ("chains", "draws", "tune", "target_accept")


def sampler_config(cfg: dict, model: str) -> dict:
    """The fits' sampler settings: the top-level ones, overridden by the model's section."""
    return {k: cfg[model].get(k, cfg[k]) for k in SAMPLER_KEYS}


def run_sbc(model: str, cfg: dict, replications: int, out: Path | None = None,
            log=print) -> dict:
    """Ranks of ``replications`` accepted replications; records appended to ``out``."""
    from qtrait.fit import SamplerSettings
    from qtrait.models import get_spec

    mcfg = cfg[model]
    spec = get_spec(model)
    records, rejected = {}, set()
    if out is not None and out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            if r.get("rejected"):
                rejected.add(r["replication"])
            else:
                records[r["replication"]] = r
    # prior draws for up to 3x the replications (rejections), fixed by the seed
    draws = prior_draws(spec, template(model, mcfg), 3 * replications,
                        seed=cfg["seed"] + (0 if model == "breeder" else 1))
    sam = sampler_config(cfg, model)
    settings_of = lambda i: SamplerSettings(  # noqa: E731
        chains=sam["chains"], draws=sam["draws"], tune=sam["tune"],
        target_accept=sam["target_accept"], seed=i)
    i = 0
    while len(records) < replications:
        if i >= len(draws):
            raise RuntimeError(f"{model}: too many degenerate prior draws ({len(rejected)})")
        if i in records or i in rejected:
            i += 1
            continue
        t0 = time.perf_counter()
        r = replicate(model, cfg, i, draws[i], settings_of(i))
        if r is None:
            rejected.add(i)
            r = {"replication": i, "rejected": True}
        else:
            records[i] = r
        if out is not None:
            with out.open("a") as f:
                f.write(json.dumps(r) + "\n")
        log(f"{model} {i}: {'rejected' if r.get('rejected') else r['ranks']} "
            f"({time.perf_counter() - t0:.1f} s)")
        i += 1
    tried = max(max(records), max(rejected, default=-1)) + 1
    return {"records": [records[k] for k in sorted(records)][:replications],
            "rejected": len([k for k in rejected if k < tried]), "tried": tried}


def uniformity(records: list[dict], names, L: int, bins: int) -> dict:
    """Per parameter: rank histogram (bins over 0..L) and chi-square p-value."""
    out = {}
    for name in names:
        r = np.array([rec["ranks"][name] for rec in records])
        counts = np.histogram(r, bins=bins, range=(0, L + 1))[0]
        out[name] = {"counts": counts.tolist(), "p": float(stats.chisquare(counts).pvalue),
                     "mean_rank": float(r.mean() / L),
                     "extreme": float(np.mean((r == 0) | (r == L)))}
    return out


# --- report -----------------------------------------------------------------------------------

def figure(results: dict, cfg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    ncol = max(len(cfg[m]["parameters"]) for m in models)
    fig, axes = plt.subplots(len(models), ncol, figsize=(2.0 * ncol, 2.2 * len(models)),
                             squeeze=False)
    L, B = cfg["thin_to"], cfg["bins"]
    for row, m in enumerate(models):
        recs = results[m]["records"]
        u = uniformity(recs, cfg[m]["parameters"], L, B)
        n = len(recs)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / B)
        for col, name in enumerate(cfg[m]["parameters"]):
            ax = axes[row, col]
            ax.bar(np.arange(B) + 0.5, u[name]["counts"], width=0.9, color="tab:blue")
            ax.axhspan(lo, hi, color="0.85", zorder=0)
            ax.axhline(n / B, color="k", lw=0.7)
            ax.set_title(f"{m}: {name}\np = {u[name]['p']:.2g}", fontsize=8)
            ax.set_xticks([])
            ax.tick_params(labelsize=7)
        for col in range(len(cfg[m]["parameters"]), ncol):
            axes[row, col].axis("off")
    fig.suptitle(f"SBC rank histograms ({B} bins of ranks 0..{L}; grey: 99% band of a "
                 "uniform histogram)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict, cfg: dict) -> str:
    import qtrait

    L, B = cfg["thin_to"], cfg["bins"]
    lines = ["# Simulation-based calibration (generated by run.py; do not edit)", "",
             f"Ranks of the true value among {L} evenly thinned posterior draws (nutpie; "
             "the sampler settings per model below), "
             f"{B}-bin histograms, chi-square test of uniformity "
             f"({B - 1} df). Mean rank: average rank / {L} (0.5 when calibrated; > 0.5 "
             "means the posterior sits below the truth).", ""]
    for m, res in results.items():
        mcfg, recs = cfg[m], res["records"]
        diag = [r["diagnostics"] for r in recs]
        secs = [r["seconds"] for r in recs]
        design = ", ".join(f"{k} = {v}" for k, v in mcfg.items()
                           if k not in ("parameters", "replications", *SAMPLER_KEYS))
        sam = sampler_config(cfg, m)
        lines += [f"## {m}", "",
                  f"{len(recs)} replications ({design}); fits: {sam['chains']} chains x "
                  f"{sam['draws']} draws after {sam['tune']} tuning steps, target accept "
                  f"{sam['target_accept']}; {res['rejected']} of "
                  f"{res['tried']} prior draws rejected as degenerate. Fits: max R-hat "
                  f"{max(d['rhat_max'] for d in diag):.3f} (fits above 1.01: "
                  f"{sum(d['rhat_max'] > 1.01 for d in diag)}), fits with divergences "
                  f"{sum(d['divergences'] > 0 for d in diag)}, median min bulk ESS "
                  f"{np.median([d['ess_bulk_min'] for d in diag]):.0f}; median "
                  f"{np.median(secs):.1f} s per fit (total {sum(secs) / 60:.0f} min).", "",
                  "| parameter | rank counts | mean rank | ranks 0 or max (2% expected) | "
                  "chi-square p |", "|---|---|---|---|---|"]
        for name, v in uniformity(recs, mcfg["parameters"], L, B).items():
            lines.append(f"| {name} | {v['counts']} | {v['mean_rank']:.3f} | "
                         f"{v['extreme']:.1%} | {v['p']:.3g} |")
        lines.append("")
    lines += [f"Figure: `{cfg['figure']}`.", "",
              f"Machine: {platform.machine()}, Python {sys.version.split()[0]}, qtrait "
              f"{qtrait.__version__}; a shared 2-core machine.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="both", choices=("breeder", "tilt", "both"))
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args(argv)
    cfg = load_config()
    models = ("breeder", "tilt") if a.model == "both" else (a.model,)
    if not a.report:
        for m in models:
            run_sbc(m, cfg, cfg[m]["replications"], HERE / f"{m}.jsonl",
                    log=lambda s: print(s, flush=True))
    results = {}
    for m in ("breeder", "tilt"):
        path = HERE / f"{m}.jsonl"
        if not path.exists():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        recs = sorted((r for r in rows if not r.get("rejected")),
                      key=lambda r: r["replication"])[:cfg[m]["replications"]]
        last = recs[-1]["replication"] if recs else -1
        rej = sum(1 for r in rows if r.get("rejected") and r["replication"] < last)
        results[m] = {"records": recs, "rejected": rej, "tried": last + 1}
    figure(results, cfg, ROOT / cfg["figure"])
    text = report(results, cfg)
    write_results(HERE, text)
    print(text)


if __name__ == "__main__":
    main()
