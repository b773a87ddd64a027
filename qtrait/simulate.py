"""Forward simulation of a Chain of Diffusion with known truth (numpy only).

Each generation applies the generation map of :mod:`qtrait.theory.generation` per trait
and concept, fed with the *observed* moments of the previous guided set (so the
finite-sample error of the guided set is the drift, theory.md 2.6), and draws the sample
sets from the moments it produces:

* ``guided``: the selected set (next generation's training data), with mutation;
* ``probe_w1`` and ``probe_uncond``: the finetuned model sampled at w = 1 and with the
  empty prompt (for ``breeder``, which has no selection/inheritance split, no probes);
* generation 0: the guided set is the real data D_0; its probes come from the base model.

The run directory's manifest records the true parameters, the generating (latent) moments
of every generation and the realised true horizon: the first generation at which those
moments cross the collapse criteria (theory.md section 3), censored at T_max.

This module is also qtrait's public source of synthetic data for users' and its own tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .rundir import RunWriter, make_manifest
from .theory.generation import Generation0, MapParams, generation0_probes, generation_step
from .theory.horizon import REASONS, Criteria, run_horizon, trait_horizons
from .theory.schedules import GuidanceSchedule, NoiseSchedule, Sampler

LATENT_KEYS = ("guided_mean", "guided_var", "learned_mean", "learned_var", "uncond_mean",
               "uncond_var")


@dataclass(frozen=True)
class TraitTruth:
    """True parameters of one trait (units: generation-0 standard deviations)."""

    name: str
    h2: float = 0.9
    mean0: float = 0.0          # mean of the real data D_0
    var0: float = 1.0           # variance of the real data D_0
    m_base: float = 0.0         # base model's conditional mean (w = 1)
    v_base: float = 1.0         # base model's conditional variance
    m_uncond: float = -1.0      # base model's unconditional mean
    v_uncond: float = 2.0       # base model's unconditional variance
    v_mut: float = 0.0          # mutation variance added at sampling time
    learn_sd: float = 0.0       # learning noise of finetuning on the learned mean
    learn_sd_logvar: float = 0.0  # ... and on the learned log variance
    lam: float = 0.9            # breeder only: variance factor lambda
    gamma: float = 0.0          # breeder only: exaggeration rate
    center: float | None = None  # breeder only: centre (default m_uncond)
    skew: float = 0.0           # skewness of the images' law (0: Gaussian; else a shifted
                                # Gamma with excess kurtosis 1.5 skew^2)


@dataclass(frozen=True)
class ChainTruth:
    """Design and true parameters of a simulated chain."""

    traits: tuple[TraitTruth, ...]
    model: str = "tilt"
    generations: int = 10
    images: int = 500
    probe_w1: int = 64
    probe_uncond: int = 64
    guidance: GuidanceSchedule = field(default_factory=lambda: GuidanceSchedule("constant",
                                                                                 3.0))
    sampler: Sampler = field(default_factory=Sampler)
    rho: float = 0.0
    p_drop: float = 0.0
    anchor: str = "base"
    mixture: bool = False
    concepts: tuple[str, ...] = ("all",)
    trait_correlation: float = 0.0
    #: SD of the generation shock: one Normal draw per generation added to the log of
    #: every cell's learned variance (breeder: its guided variance), shared by all cells
    #: (qtrait.models.breeder: one finetuning run makes a whole generation)
    shock_sd: float = 0.0
    #: SD of the mean shock: one Normal draw per generation and trait added to the
    #: trait's learned mean in every concept (qtrait.models.breeder, "Mean shock")
    mean_shock_sd: float = 0.0
    #: log factor on every cell's learned variance in generation 1 only (breeder: the
    #: first finetuning's own step, qtrait.models.breeder)
    first_step: float = 0.0
    #: breeder only: draw the unconditional probe set too (probe_uncond images from the
    #: base model's unconditional (m_uncond, v_uncond) every generation), which centres the
    #: model's mean map on its mean; a trait's ``center`` then may differ from it
    breeder_probe: bool = False
    criteria: Criteria = field(default_factory=Criteria)
    seed: int = 0

    def __post_init__(self):
        if self.generations < 1:
            raise ValueError("generations must be >= 1")
        if self.images < 2:
            raise ValueError("images must be >= 2 (a variance needs two values)")
        if not self.shock_sd >= 0:
            raise ValueError("shock_sd must be >= 0")
        if not self.mean_shock_sd >= 0:
            raise ValueError("mean_shock_sd must be >= 0")
        if self.breeder_probe and (self.model != "breeder" or self.probe_uncond < 2):
            raise ValueError("breeder_probe needs model 'breeder' and probe_uncond >= 2")
        for n in (self.probe_w1, self.probe_uncond):
            if n == 1 or n < 0:
                raise ValueError("probe sizes must be 0 or >= 2")
        names = [t.name for t in self.traits]
        if not names or len(set(names)) != len(names):
            raise ValueError("traits need distinct names")
        k = len(self.traits)
        if k > 1 and not -1.0 / (k - 1) < self.trait_correlation < 1.0:
            raise ValueError(f"trait_correlation must be in (-1/(K-1), 1) = "
                             f"({-1.0 / (k - 1):.3g}, 1)")
        self.map_params()  # validates model, anchor, rho, h2, schedule

    @property
    def cfg_scale(self) -> float:
        return float(self.guidance.scale)

    def _p(self, name: str) -> np.ndarray:
        return np.array([getattr(t, name) for t in self.traits], dtype=float)

    def generation0(self) -> Generation0:
        return Generation0.of(mean0=self._p("mean0"), var0=self._p("var0"),
                              m_base=self._p("m_base"), v_base=self._p("v_base"),
                              m_uncond=self._p("m_uncond"), v_uncond=self._p("v_uncond"))

    def map_params(self) -> MapParams:
        centers = [t.m_uncond if t.center is None else t.center for t in self.traits]
        return MapParams(model=self.model, h2=self._p("h2"), anchor=self.anchor,
                         guidance=self.guidance, sampler=self.sampler, rho=self.rho,
                         v_mut=self._p("v_mut"), mixture=self.mixture, lam=self._p("lam"),
                         gamma=self._p("gamma"), center=np.array(centers, dtype=float))


def default_truth(**overrides: Any) -> ChainTruth:
    """A small, readable chain: three traits with different heritability and mutation."""
    traits = (
        TraitTruth("axis_1", h2=0.95, m_base=0.1, v_base=1.1, m_uncond=-1.0, v_uncond=2.0),
        TraitTruth("axis_2", h2=0.85, m_base=-0.1, v_base=0.9, m_uncond=0.8, v_uncond=1.8,
                   v_mut=0.05),
        TraitTruth("saturation", h2=0.9, m_base=0.05, v_base=1.0, m_uncond=-0.5,
                   v_uncond=2.5, learn_sd=0.02),
    )
    return ChainTruth(traits=traits, **overrides)


def standard_noise(rng, shape: tuple, skew: np.ndarray) -> np.ndarray:
    """Draws with mean 0, variance 1 and, per last axis, skewness ``skew``: Gaussian where
    the skewness is 0, else a standardised Gamma of shape 4 / skew^2 (excess kurtosis
    1.5 skew^2), mirrored for a negative skewness."""
    z = rng.standard_normal(shape)
    for k, s in enumerate(np.broadcast_to(skew, shape[-1:])):
        if s != 0:
            a = 4.0 / s ** 2
            z[..., k] = np.sign(s) * (rng.gamma(a, 1.0, shape[:-1]) - a) / np.sqrt(a)
    return z


def _draw(rng, mean, var, n, corr_chol, skew=0.0):
    """n samples per concept: mean, var shaped (C, K); returns (C, n, K). Correlated
    traits mix the skewed noise, so a trait's skewness is as stated only without
    correlation."""
    z = standard_noise(rng, (mean.shape[0], n, mean.shape[1]), skew) @ corr_chol.T
    return mean[:, None, :] + np.sqrt(var)[:, None, :] * z


def simulate_tables(truth: ChainTruth) -> tuple[list[dict[str, pd.DataFrame]], dict]:
    """Simulate the per-image tables of every generation.

    Returns ``(tables, latent)``: ``tables[g][set]`` is a DataFrame (``concept`` and one
    column per trait); ``latent[key]`` an array (generation, concept, trait) of the
    generating moments (:data:`LATENT_KEYS`).
    """
    rng = np.random.default_rng(truth.seed)
    K, C = len(truth.traits), len(truth.concepts)
    names = [t.name for t in truth.traits]
    corr = np.full((K, K), truth.trait_correlation)
    np.fill_diagonal(corr, 1.0)
    chol = np.linalg.cholesky(corr)
    g0 = truth.generation0()
    params = truth.map_params()
    tile = lambda a: np.broadcast_to(np.asarray(a, dtype=float), (C, K)).copy()  # noqa: E731
    latent = {k: np.full((truth.generations, C, K), np.nan) for k in LATENT_KEYS}
    learn = np.stack([truth._p("learn_sd"), truth._p("learn_sd_logvar")])
    tables: list[dict[str, pd.DataFrame]] = []
    prev_learned = (tile(g0.m_base), tile(g0.v_base))
    obs_mean = obs_var = None
    (w1m, w1v), (um, uv) = generation0_probes(g0, params)
    for g in range(truth.generations):
        if g == 0:
            sets = {"guided": (tile(g0.mean0), tile(g0.var0), truth.images)}
            learned, uncond = prev_learned, (tile(g0.m_uncond), tile(g0.v_uncond))
            probes = ((tile(w1m), tile(w1v)), (tile(um), tile(uv)))
        else:
            noise = (learn[0] * rng.standard_normal((C, K)),
                     learn[1] * rng.standard_normal((C, K)))
            if truth.shock_sd > 0:   # drawn only then: shock-free chains keep their draws
                noise = (noise[0], noise[1] + truth.shock_sd * rng.standard_normal())
            if truth.mean_shock_sd > 0:   # one per trait, shared by the concepts
                noise = (noise[0] + truth.mean_shock_sd * rng.standard_normal((1, K)),
                         noise[1])
            if g == 1 and truth.first_step:
                noise = (noise[0], noise[1] + truth.first_step)
            r = generation_step(obs_mean, obs_var, prev_learned, g0, params, noise)
            if not r.valid.all():
                raise ValueError(
                    f"generation {g}: the CFG tilt does not exist (the learned conditional "
                    "is wider than the unconditional: w > u/(u - V_u)); use model 'exact' "
                    "or a wider unconditional branch")
            sets = {"guided": (r.guided_mean, r.guided_var, truth.images)}
            learned, uncond = (r.learned_mean, r.learned_var), (r.uncond_mean, r.uncond_var)
            probes = ((r.w1_mean, r.w1_var), (r.uncond_probe_mean, r.uncond_probe_var))
            prev_learned = learned
        if truth.model != "breeder":
            sets["probe_w1"] = (*probes[0], truth.probe_w1)
            sets["probe_uncond"] = (*probes[1], truth.probe_uncond)
        elif truth.breeder_probe:
            sets["probe_uncond"] = (tile(g0.m_uncond), tile(g0.v_uncond), truth.probe_uncond)
        gm, gv = sets["guided"][0], sets["guided"][1]
        for key, value in zip(LATENT_KEYS, (gm, gv, *learned, *uncond)):
            latent[key][g] = value
        gen_tables = {}
        for set_name, (mean, var, n) in sets.items():
            if n == 0:
                continue
            z = _draw(rng, tile(mean), tile(var), n, chol, truth._p("skew")).reshape(C * n, K)
            df = pd.DataFrame(z, columns=names)
            df.insert(0, "concept", np.repeat(truth.concepts, n))
            gen_tables[set_name] = df
        grouped = gen_tables["guided"].groupby("concept", sort=False)[names]
        obs_mean = grouped.mean().loc[list(truth.concepts)].to_numpy()
        obs_var = grouped.var(ddof=1).loc[list(truth.concepts)].to_numpy()
        tables.append(gen_tables)
    return tables, latent


def true_horizon(truth: ChainTruth, latent: dict) -> dict:
    """The realised horizon: first crossing of the generating moments, censored at T_max
    (and at the simulated generations: a chain shorter than T_max that has not collapsed
    reports ``censored_at``)."""
    crit = truth.criteria
    m_u = truth._p("m_uncond")
    mean, var = latent["guided_mean"], latent["guided_var"]
    K, C = len(truth.traits), len(truth.concepts)
    corr = np.full((K, K), truth.trait_correlation)
    np.fill_diagonal(corr, 1.0)
    t_run, why = run_horizon(mean, var, crit, np.broadcast_to(corr, (C, K, K)))
    t_k, r_k = trait_horizons(mean, var, m_u, crit)
    per_trait = []
    for c, concept in enumerate(truth.concepts):
        for k, t in enumerate(truth.traits):
            hit = int(t_k[c, k]) > 0
            per_trait.append({"concept": concept, "trait": t.name,
                              "t_star": int(t_k[c, k]) if hit else None,
                              "reason": REASONS[int(r_k[c, k])] if hit else None})
    return {"criteria": crit.to_dict(), "t_star": t_run, "reason": why,
            "censored_at": min(crit.t_max, truth.generations - 1), "per_trait": per_trait}


def truth_record(truth: ChainTruth, latent: dict) -> dict:
    """The manifest's ``truth`` record of a simulated chain: ``model``, the true
    ``parameters`` (plain JSON values), the ``latent`` moments per generation, concept and
    trait (``dims``; undefined moments as None) and the realised true ``horizon``."""
    def plain(obj):
        if dataclasses.is_dataclass(obj):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                    if f.name != "fn"}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        return obj

    def finite_or_none(a: np.ndarray):
        # the breeder has no learned/unconditional split: those moments are undefined
        return np.where(np.isfinite(a), a, None).tolist() if np.isnan(a).any() else a.tolist()

    return {"model": truth.model, "parameters": plain(truth),
            "latent": {k: finite_or_none(v) for k, v in latent.items()},
            "dims": ["generation", "concept", "trait"],
            "horizon": true_horizon(truth, latent)}


def write_simulated_run(out: str | Path, truth: ChainTruth, run_id: str | None = None,
                        progress: bool = False) -> Path:
    """Simulate a chain and write it as a run directory; returns its path."""
    out = Path(out)
    tables, latent = simulate_tables(truth)
    s = truth.sampler
    design = {
        "name": run_id or out.name,
        "base_model": f"simulated ({truth.model} model)",
        "dataset": "simulated",
        "cfg_scale": truth.cfg_scale,
        "cfg_schedule": truth.guidance.kind,
        "cfg_schedule_params": {"end": truth.guidance.end, "start": truth.guidance.start,
                                "until": truth.guidance.until},
        "p_drop": float(truth.p_drop),
        "anchor": truth.anchor,
        "images_per_generation": truth.images * len(truth.concepts),
        "probe_sizes": {"probe_w1": 0 if truth.model == "breeder"
                        else truth.probe_w1 * len(truth.concepts),
                        "probe_uncond": 0 if truth.model == "breeder"
                        and not truth.breeder_probe
                        else truth.probe_uncond * len(truth.concepts)},
        "sampler": {"scheduler": s.scheduler, "steps": s.steps,
                    "prediction_type": s.prediction_type,
                    "timestep_spacing": s.timestep_spacing,
                    "beta_schedule": s.noise.beta_schedule},
        "seeds": {"run": truth.seed},
        "feature_extractor": "none (simulated traits)",
    }
    manifest = make_manifest(run_id or out.name, design, [t.name for t in truth.traits],
                             producer_name="qtrait.simulate",
                             basis={"kind": "simulated", "file": None},
                             truth=truth_record(truth, latent))
    writer = RunWriter.create(out, manifest)
    from tqdm.auto import tqdm

    for g, gen_tables in enumerate(tqdm(tables, desc="writing generations",
                                        disable=not progress)):
        writer.write_generation(g, gen_tables)
    return out


def truth_from_config(cfg: dict[str, Any]) -> ChainTruth:
    """Build a :class:`ChainTruth` from a config mapping (TOML/JSON; see docs/cli.md)."""
    cfg = dict(cfg)
    shortcuts = ("cfg_scale", "cfg_schedule", "cfg_end", "cfg_start", "cfg_until")
    known = {f.name for f in dataclasses.fields(ChainTruth)} | set(shortcuts)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
    trait_fields = {f.name for f in dataclasses.fields(TraitTruth)}
    for t in cfg.get("traits", []):
        bad = sorted(set(t) - trait_fields)
        if bad:
            raise ValueError(f"unknown trait key(s) {bad}; known: {', '.join(sorted(trait_fields))}")
    traits = tuple(TraitTruth(**t) for t in cfg.pop("traits", [{"name": "trait_1"}]))
    g = cfg.pop("guidance", {})
    guidance = GuidanceSchedule(kind=g.get("kind", cfg.pop("cfg_schedule", "constant")),
                                scale=float(g.get("scale", cfg.pop("cfg_scale", 3.0))),
                                end=float(g.get("end", cfg.pop("cfg_end", 1.0))),
                                start=float(g.get("start", cfg.pop("cfg_start", 0.0))),
                                until=float(g.get("until", cfg.pop("cfg_until", 0.5))))
    s = cfg.pop("sampler", {})
    noise = NoiseSchedule(**s.pop("noise", {})) if "noise" in s else NoiseSchedule()
    sampler = Sampler(noise=noise, **s)
    crit = Criteria(**cfg.pop("criteria", {}))
    if "concepts" in cfg:
        cfg["concepts"] = tuple(cfg["concepts"])
    return ChainTruth(traits=traits, guidance=guidance, sampler=sampler, criteria=crit, **cfg)


# --- Gaussian refitting chains: the textbook cases, from an independent generator ---------

REFIT_MODES = ("replace", "accumulate")


def refit_chain_table(mode: str, n: int, traits: int = 3, generations: int = 15,
                      seed: int = 0, corr: float = 0.3) -> pd.DataFrame:
    """A long table (``qtrait import``'s columns) of a Gaussian refitting chain, the
    textbook model-collapse setting (Shumailov et al. 2024; Kazdan et al. 2024,
    "Collapse or Thrive"; Gerstgrasser et al. 2024), written without any of qtrait's
    models: generation 0 is ``n`` draws of a ``traits``-dimensional Gaussian (unit
    variances, correlation ``corr``); each later generation is ``n`` draws from the
    Gaussian fitted by maximum likelihood (mean, covariance with divisor N) to

    * ``replace``: the previous generation's n samples only. The expected variance falls
      by (n - 1)/n a generation, so log V drifts down by about 1/n a generation;
    * ``accumulate``: every sample so far (N = n (t + 1) at generation t + 1). The
      variance stays bounded (its expected log-ratio to generation 0 converges); the
      chain does not collapse.

    One concept (``all``), one guided set per generation."""
    if mode not in REFIT_MODES:
        raise ValueError(f"mode must be one of {REFIT_MODES}, got {mode!r}")
    if n < 2 or traits < 1 or generations < 1:
        raise ValueError("need n >= 2, traits >= 1 and generations >= 1")
    rng = np.random.default_rng(seed)
    cov = np.full((traits, traits), corr) + (1 - corr) * np.eye(traits)
    mean = np.zeros(traits)
    pool = []
    rows = []
    for g in range(generations + 1):
        x = rng.multivariate_normal(mean, cov, size=n)
        rows.append(pd.DataFrame(x, columns=[f"t{k}" for k in range(traits)])
                    .assign(generation=g, set="guided", concept="all",
                            image_id=[f"g{g}_{i}" for i in range(n)]))
        pool.append(x)
        fit_on = x if mode == "replace" else np.concatenate(pool)
        mean = fit_on.mean(axis=0)
        cov = np.cov(fit_on, rowvar=False, ddof=0).reshape(traits, traits)
    cols = ["generation", "set", "concept", "image_id"] + [f"t{k}" for k in range(traits)]
    return pd.concat(rows, ignore_index=True)[cols]


def write_refit_run(out: str | Path, mode: str, n: int, traits: int = 3,
                    generations: int = 15, seed: int = 0):
    """:func:`refit_chain_table` imported as a run directory (through a CSV, as a user's
    own table would be); returns the opened run. Its design: no guidance (w = 1),
    anchor ``previous`` (each generation is fitted to data, nothing pulls it back), and
    ``training_data`` the mode (what each generation is fitted to)."""
    from .rundir.table import import_table

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv = out.with_suffix(".csv")
    refit_chain_table(mode, n, traits, generations, seed).to_csv(csv, index=False)
    try:
        return import_table(csv, out, {"name": out.name, "cfg_scale": 1.0,
                                       "cfg_schedule": "constant", "p_drop": 0.0,
                                       "anchor": "previous", "training_data": mode,
                                       "base_model": f"Gaussian refitting ({mode}, n={n})",
                                       "dataset": "simulated"})
    finally:
        csv.unlink(missing_ok=True)
