"""Fitting a model to a run: sampling, diagnostics and the saved posterior.

``fit`` builds the model from the run's sufficient statistics, samples it with PyMC's NUTS,
computes the diagnostics (R-hat, bulk and tail ESS, divergences, E-BFMI) and saves the
inference data as netCDF under the run's ``fits/`` folder, stamped with provenance: model,
a hash of the model and sampler configuration, run id, package versions and seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from . import sampler_defaults as defaults
from .models import chain_data, fit_data, get_spec
from .models.base import LIKELIHOOD_VERSION
from .rundir import Run
from .rundir import layout
from .rundir.manifest import package_versions, utc_now

#: Diagnostic thresholds (warnings say what to do when one fails).
RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3


def default_sampler() -> str:
    """nutpie when installed (a base dependency), else PyMC's own NUTS."""
    try:
        import nutpie  # noqa: F401
    except ImportError:  # pragma: no cover - nutpie is a base dependency
        return "pymc"
    return "nutpie"


@dataclass(frozen=True)
class SamplerSettings:
    """Defaults (:mod:`qtrait.sampler_defaults`, which says why): 4 chains x 1,500 draws
    after 500 tuning steps, target accept 0.9, seed 0, sampler nutpie (PyMC's NUTS with
    ``sampler="pymc"``). ``cores``: the chains sampled at once (default: min(chains, 2),
    this project's 2-core machines; 1 in each worker of a parallel backtest). It does not
    change the draws, so it is not part of the fit's config hash."""

    chains: int = defaults.CHAINS
    draws: int = defaults.DRAWS
    tune: int = defaults.TUNE
    target_accept: float = defaults.TARGET_ACCEPT
    seed: int = 0
    sampler: str = field(default_factory=default_sampler)
    cores: int | None = None

    @property
    def n_cores(self) -> int:
        return self.cores or min(self.chains, 2)


@dataclass
class FitResult:
    """A sampled posterior and what `qtrait fit` reports about it: the InferenceData, the
    diagnostics and their warnings, the traits left out, the saved path and config hash,
    the model's name, the fitted data (ChainData) and the model spec."""
    idata: object
    diagnostics: dict
    warnings: list[str]
    excluded: list[str]
    path: Path | None
    config_hash: str
    model: str
    data: object = None          # the ChainData the model saw
    spec: object = None


def config_hash(model: str, priors: dict, settings: SamplerSettings, generations) -> str:
    """Hash of what determines a fit (model, priors, sampler settings, the data keys of
    :func:`data_key`, qtrait's version): the saved file's name, ``fits/<model>-<hash>.nc``."""
    blob = json.dumps({"model": model, "priors": {k: np.asarray(v).tolist()
                                                  for k, v in priors.items()},
                       "settings": {k: v for k, v in asdict(settings).items() if k != "cores"},
                       "generations": list(generations),
                       "qtrait": __version__, "likelihood": LIKELIHOOD_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def data_key(run: Run, fd) -> tuple:
    """What identifies the data of a fit in its config hash: the run id, the generations,
    and a trait/concept selection (:meth:`qtrait.rundir.Run.select`) when there is one."""
    sel = run.manifest.get("selection")
    return (fd.run_id, fd.generations) + ((sel,) if sel else ())


def diagnostics_ok(diag: dict) -> bool:
    """The convergence verdict every output built on a fit carries: R-hat <= 1.01, bulk
    and tail ESS >= 400, no divergences and E-BFMI >= 0.3."""
    return bool(diag["rhat_max"] <= RHAT_MAX and diag["ess_bulk_min"] >= ESS_MIN
                and diag["ess_tail_min"] >= ESS_MIN and diag["divergences"] == 0
                and diag["ebfmi_min"] >= EBFMI_MIN)


def diagnose(idata, var_names) -> tuple[dict, list[str]]:
    """Max R-hat, min bulk/tail ESS, divergences, min E-BFMI, and what to do about them."""
    import arviz as az

    post = idata.posterior[var_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # constant draws of a fixed value
        rhat = float(az.rhat(post).to_array().max())
        ess_bulk = float(az.ess(post, method="bulk").to_array().min())
        ess_tail = float(az.ess(post, method="tail").to_array().min())
    div = int(idata.sample_stats["diverging"].sum())
    ebfmi = float(np.min(az.bfmi(idata)))
    diag = {"rhat_max": rhat, "ess_bulk_min": ess_bulk, "ess_tail_min": ess_tail,
            "divergences": div, "ebfmi_min": ebfmi}
    diag["ok"] = diagnostics_ok(diag)
    advice = []
    if rhat > RHAT_MAX:
        advice.append(f"R-hat {rhat:.4f} > {RHAT_MAX}: chains disagree; run more tuning "
                      "(--tune) and draws (--draws), and check the model fits the data")
    if min(ess_bulk, ess_tail) < ESS_MIN:
        advice.append(f"ESS {min(ess_bulk, ess_tail):.0f} < {ESS_MIN}: too few effective "
                      "draws for stable 90% intervals; increase --draws or --chains")
    if div:
        advice.append(f"{div} divergent transition(s): the posterior has regions the sampler "
                      "cannot explore; raise --target-accept (e.g. 0.95 or 0.99)")
    if ebfmi < EBFMI_MIN:
        advice.append(f"E-BFMI {ebfmi:.2f} < {EBFMI_MIN}: poor energy exploration, often from "
                      "heavy-tailed or funnel-shaped posteriors; raise --tune")
    return diag, advice


#: numba's fast-math flags for the log density nutpie samples (PyTensor's default is on).
#: With them LLVM may reassociate and fuse floating-point operations differently when it
#: compiles a graph fresh (its parts inlined) than when it links the parts from PyTensor's
#: disk cache, so the first fit of a graph new to the machine drew otherwise than every
#: later fit with the same seed (a difference in the last bit, grown by the sampler). Off,
#: the draws are the same bit for bit, cold cache or warm, at more sampling time
#: (bench/bench_fit.py prints how much; docs/models.md section 7, "Reproducibility").
NUMBA_FASTMATH = False

#: compiled models kept for the life of the process, by the model's data layout: a
#: second fit of the same layout (another run, another seed, a leave-future-out refit)
#: swaps the data into the compiled model instead of compiling again (nutpie)
_COMPILED: dict = {}


def _sample(spec, cd, settings: SamplerSettings, progress: bool, upto: int | None = None):
    """Posterior draws (InferenceData) of ``spec`` on ``cd``."""
    import pymc as pm

    key = (spec.signature(cd), settings.sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)   # pytensor's BLAS advice
        if settings.sampler == "nutpie":
            import nutpie

            if key in _COMPILED:
                pm_model, compiled = _COMPILED[key]
            else:
                import pytensor

                pm_model = spec.build(cd)
                with pytensor.config.change_flags(numba__fastmath=NUMBA_FASTMATH):
                    compiled = nutpie.compile_pymc_model(pm_model)
                _COMPILED[key] = (pm_model, compiled)
            compiled = compiled.with_data(**spec.packed(cd, upto))
            idata = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune,
                                  chains=settings.chains, cores=settings.n_cores,
                                  seed=settings.seed, progress_bar=progress,
                                  target_accept=settings.target_accept, save_warmup=False)
        else:
            pm_model = spec.build(cd)
            with pm_model:
                pm.set_data(spec.packed(cd, upto))
                idata = pm.sample(draws=settings.draws, tune=settings.tune,
                                  chains=settings.chains, cores=settings.n_cores,
                                  target_accept=settings.target_accept,
                                  random_seed=settings.seed, progressbar=progress,
                                  compute_convergence_checks=False)
    return _tidy(idata, spec, cd, pm_model, upto)


def _tidy(idata, spec, cd, pm_model, upto=None):
    """Fresh coordinates for this data (a reused compiled model carries the first data's
    labels) and the pointwise log-likelihood moved to its own group."""
    import arviz as az

    lay = spec.layout(cd)
    coords = spec.coords(cd, lay)
    post = idata.posterior
    post = post.assign_coords({k: v for k, v in coords.items() if k in post.dims})
    values, obs = spec.pointwise(post, cd, upto)
    post = post.drop_vars([v for v in post.data_vars if v.startswith("log_lik_")])
    import xarray as xr

    ll = xr.DataArray(values, dims=("chain", "draw", "obs"),
                      coords={"chain": post["chain"], "draw": post["draw"],
                              **{k: ("obs", np.asarray(v).astype(str) if v.dtype == object
                                     else v) for k, v in obs.items()}})
    groups = {"posterior": post, "log_likelihood": ll.to_dataset(name="y"),
              "sample_stats": idata.sample_stats}
    free = [v.name for v in pm_model.free_RVs]
    out = az.InferenceData(**groups)
    out.posterior.attrs["free_variables"] = json.dumps(free)
    return out


def fit(runs, model: str = "breeder", settings: SamplerSettings = SamplerSettings(),
        generations: slice | None = None, save: bool = True, progress: bool = False,
        spec=None, upto: int | None = None) -> FitResult:
    """Sample the posterior of ``model`` on one run (or several, for ``hier``) and save it
    under the (first) run's fits/ folder. ``upto`` fits generations < upto of the data
    (the same compiled model as the whole data: leave-future-out refits)."""
    runs = [runs] if isinstance(runs, Run) else list(runs)
    spec = spec or get_spec(model)
    datas = [fit_data(r, generations) for r in runs]
    cd = chain_data(datas)
    spec.check(cd)
    h = config_hash(spec.name, spec.priors, settings,
                    [data_key(r, d) for r, d in zip(runs, datas)])
    idata = _sample(spec, cd, settings, progress, upto)
    free = json.loads(idata.posterior.attrs["free_variables"])
    diag, advice = diagnose(idata, free)
    excluded = sorted({t for d in datas for t in d.excluded})
    idata.posterior.attrs.update({
        "model": spec.name, "config_hash": h,
        "run_id": ",".join(d.run_id for d in datas),
        "generations": json.dumps(datas[0].generations if len(datas) == 1
                                  else {d.run_id: d.generations for d in datas}),
        "seed": settings.seed, "sampler": settings.sampler,
        "created_at": utc_now(), "qtrait_version": __version__,
        "package_versions": json.dumps(package_versions(("numpy", "pymc", "pytensor",
                                                          "arviz", "nutpie"))),
        "standardisation": "traits in generation-0 guided SD units per (concept, trait)",
        "excluded_traits": json.dumps(excluded),
        "selection": json.dumps([r.manifest.get("selection") for r in runs]),
    })
    path = None
    if save:
        path = layout.fit_path(runs[0].root, spec.name, h)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")   # concurrent fits of a run
        idata.to_netcdf(str(tmp))
        tmp.replace(path)
    return FitResult(idata, diag, advice, excluded, path, h, spec.name, cd, spec)


def summary_table(result: FitResult, spec_reported, hdi: float = 0.9):
    """Posterior median and central 90% interval of the scientific parameters."""
    import pandas as pd

    post = result.idata.posterior
    rows = []
    lo_q, hi_q = (1 - hdi) / 2, 1 - (1 - hdi) / 2
    for name in spec_reported:
        if name not in post:
            continue
        da = post[name]
        stacked = da.stack(sample=("chain", "draw"))
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if extra:
            for idx in np.ndindex(*(da.sizes[d] for d in extra)):
                sel = {d: da[d].values[i] for d, i in zip(extra, idx)}
                v = stacked.sel(sel).values
                rows.append(_row(name, sel, v, lo_q, hi_q))
        else:
            rows.append(_row(name, {}, stacked.values, lo_q, hi_q))
    return pd.DataFrame(rows)


def _row(name, sel, v, lo_q, hi_q):
    v = v[np.isfinite(v)]
    label = name + ("[" + ", ".join(f"{k}={val}" for k, val in sel.items()) + "]" if sel else "")
    if not len(v):
        return {"parameter": label, "median": np.nan, "lo90": np.nan, "hi90": np.nan}
    return {"parameter": label, "median": float(np.median(v)),
            "lo90": float(np.quantile(v, lo_q)), "hi90": float(np.quantile(v, hi_q))}
