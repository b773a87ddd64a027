"""The ``breeder`` model (theory.md section 2, simplified map; section 4 likelihood).

Per cell (concept, trait), driven by the observed moments of the previous guided set:

    V_t      = lambda s2_{t-1} + V_m
    mu_t - c = (1 + gamma)(zbar_{t-1} - c),   i.e.   mu_t = (1 + gamma) zbar_{t-1} + beta

with (zbar_{t-1}, s2_{t-1}) the moments of what generation t was finetuned on: the guided
set of generation t-1, or every guided set so far when the run's design says
``training_data = "accumulate"`` (:func:`~qtrait.models.base.parent_moments`), and
c the unconditional probe's mean where the run has one, so beta = -gamma c is data
times a parameter. Without a probe the model samples the intercept beta itself: sampling
the centre c instead leaves a ridge (generation 1, at the standardised mean 0, identifies
only gamma c, and c is free as gamma -> 0), which made gamma miscalibrated in SBC. The
guided set's sufficient statistics are the observations:

    s2_t          ~ Gamma with mean V_t and relative variance 2/(N-1) + kappa/N + tau^2
    zbar_t | s2_t ~ Normal(mu_t + b (s2_t - V_t), (1 - rho^2) V_t / N + sigma_learn^2)

(the joint law of a set's mean and variance of :mod:`~qtrait.models.base`: kappa and the
skewness behind b and rho are the cell's, pooled over generations and concepts;
sigma_learn and tau the learning noise of finetuning on the mean and log variance).
log lambda, gamma and V_m are partially pooled over the cells (non-centred).

Level and share. Where the parents' variance barely moves (a chain near its equilibrium,
or one that keeps its variance) the data pin down lambda s2 + V_m at that variance and
little else, and lambda and V_m, sampled as they are, trade along a ridge that the
sampler can diverge on (chain_w1: 41 divergent transitions, R-hat 1.038). With the prior
keys of :data:`LEVEL_SHARE_PRIOR` each cell's pair is sampled instead as its level
L = lambda + V_m (the variance the map passes on from parents with generation 0's
variance, 1 in standardised units) and its inherited share r = lambda / L in (0, 1):

    lambda = r L,   V_m = (1 - r) L,   log L ~ Normal(mu_L, sd_L),   logit r ~ Normal(mu_r, sd_r)

each partially pooled over the cells (:meth:`BreederSpec.level_share`); r -> 1 says
V_m = 0. It is a different prior, not only a different sampler: the defaults keep log
lambda pooled and V_m a population scale times a HalfNormal per cell, and the data
decide between the two only where they are informative (the constant says why it is not
the default).

A spike at V_m = 0. A chain whose variance only decays, with no floor, has V_m = 0, and
the map with V_m free reads it with lambda biased low: regressed on its own lag with an
intercept, the maximum-likelihood lambda of a textbook Replace chain lies below (n - 1)/n
in every cell (analyses/textbook/results.md). With the prior key of
:data:`V_MUT_SLAB_PRIOR` each cell's V_m is either its value or exactly 0,

    cell likelihood = pi L(V_m) + (1 - pi) L(0),    pi ~ Beta(a, b)

over all the cell's generations, the choice marginalised (:meth:`BreederSpec.
spike_likelihood`); pi is the share of cells with V_m > 0. A forecast draws each cell's
choice from its posterior probability ``v_mut_on``. The default priors do not have the
key (the constant says why); without it, V_m is never exactly 0.

Generation shock. One finetuning run makes a whole generation: what it happens to learn
moves every cell of that generation together, which the per-cell noise tau cannot say
(140 independent cell shocks average out in the pooled variance ratio a horizon reads).
With the prior ``gen_shock_sd`` the variance map carries a shock shared by the cells of
a run in each generation,

    V_t = (lambda s2_{t-1} + V_m) exp(e_t),    e_t ~ Normal(0, sigma_gen)

(``gen_shock``; generation 0 has none; how they are sampled:
:meth:`BreederSpec.generation_shocks`). A forecast draws new shocks for the generations
it has not seen, so a chain-wide surprise in one generation widens every later horizon.
Without the prior key the model has no shock.

First step. The first finetuning (of the pretrained model, on its own guided images)
removes more variance than the later ones on the benchmark's chains (seed-1 pilot, the 21
designs with w <= 3: the pooled variance ratio falls to 0.53-0.77 in generation 1, and
by a factor of 0.76-0.94 in each of the next two); a
map with one lambda for every generation must average the two, and a forecast from three
generations then decays too fast. With the prior ``first_step`` generation 1's variance
carries its own log factor d1, shared by the run's cells:

    V_1 = (lambda s2_0 + V_m) exp(e_1 + d1)

so lambda and V_m describe the steps that a forecast runs forward. Without the prior
key there is no such factor.

Mean equilibrium. With an unconditional probe the mean map is centred on the probe's mean
c: beta = -gamma c, so a cell's mean settles at c (gamma < 0) or runs away from it
(gamma > 0). With the prior ``mean_offset_sd`` the intercept gets a per-cell offset,

    beta = -gamma c + delta,    delta ~ Normal(0, s),   s ~ LogNormal(prior)

so the mean may settle elsewhere (at c - delta / gamma) or drift by delta a generation
where gamma is near 0 (``mean_offset``; how it is sampled: :meth:`mean_offsets`). Without
a probe the intercept is already free per cell and the key changes nothing. The default
priors do not have the key (:data:`MEAN_OFFSET_PRIOR` says why and holds the learned
prior); without it, no offset.

Momentum. With the prior key ``mean_momentum`` the mean map carries on a share rho of the
parents' last step (one rho per fit, shared by the cells):

    mu_t = (1 + gamma) zbar_{t-1} + beta + rho (zbar_{t-1} - zbar_{t-2})

(the step of the parents' means, :func:`parent_steps`), from generation 2 (a variant
that left out generation 1's step forecast worse still: benchmark results.md, "The
momentum"). rho > 0 says a mean that has started to move keeps moving, rho < 0 that it
overshoots and comes back. A forecast carries the last observed step into its first
generation. The default priors do not have the key (:data:`MOMENTUM_PRIOR` says why and
holds the learned prior); without it, no momentum.

Learning noise per trait. Traits differ in how far finetuning moves their means beyond
what the map predicts: on the shipped run chain_w1 the saturation means of all ten
digits fall by 15 to 30 standard errors in generation 1, where the trait axes' means
move by 1 to 7 (medians over the digits). So each trait k has its own noise, shared by
its cells in every concept and run, pooled over the traits as V_m is over the cells
(prior key ``sigma_learn_pooled``, scale s; :data:`SIGMA_POOLED_PRIOR`):

    sigma_k = S h_k,   S ~ HalfNormal(s),   h_k ~ HalfNormal(1)

(``sigma_learn_scale`` and ``sigma_learn_h``; ``sigma_learn``, their product, has the
dimension ``trait``, ordered as the traits first appear among the cells; sampled so on
fits of few cells, and as sigma_k ~ HalfNormal(S) on fits of many:
:meth:`BreederSpec.noise_sampling`). The quiet traits inform the shared scale S
together, so a fit from a few generations of similar traits keeps them near one small
noise, while a loud trait gets a large h_k. Two alternatives,
not defaults: with the prior key ``sigma_learn_trait`` the traits' noises are independent
LogNormals (:data:`SIGMA_TRAIT_PRIOR` says why not; it takes precedence over the pooled
key), and without either key one noise sigma_learn ~ HalfNormal(``sigma_learn``) serves
every trait (:data:`ONE_NOISE_PRIOR`, the default until 2026-12-07).

Mean shock. The learning noise above is independent from cell to cell; one finetuning
might instead move a trait's mean in every concept of the run at once, which would make
the cell-averaged mean vary more than the model says (the check every shipped run fails:
docs/models.md 11). With the prior key ``mean_shock_sd`` every trait k gets one shock a
generation on its cells' means,

    mu_t += m_{t,k},   m_{t,k} ~ Normal(0, s_m),   s_m ~ LogNormal(prior)

(``mean_shock``, dimensions generation 1.. and trait; sampled centred on fits of many
cells, as the generation shock: :meth:`BreederSpec.mean_shocks`). A forecast draws new
ones. Without the key there is none (:data:`MEAN_SHOCK_PRIOR`). Tried and not kept:
where that check fails the mean map lags the chain's drift, a bias the shock does not
remove (analyses/adequacy/results.md, "Where the cell-averaged mean fails").

Shared learning noise. The learning noise on the mean is independent from cell to cell;
with the prior key ``shared_noise`` a share psi of each trait's noise variance is one
draw a generation shared by the trait's cells in every concept, the rest stays the
cell's own:

    mu_t += m_{t,k},   m_{t,k} ~ Normal(0, sqrt(psi) sigma_k),
    the cell's own noise variance (1 - psi) sigma_k^2,   logit psi ~ Normal(prior)

so a cell's one-step predictive variance is the same as without the key, but a trait
that moves in every concept at once (the image statistics of the shipped runs:
analyses/adequacy/results.md, "Which traits the failing mean checks see") moves the
cell-averaged mean as much as it does in the data. Unlike the mean shock, whose one SD
serves every trait, the shared part scales with each trait's own noise (``shared_noise``,
dimensions generation 1.. and trait; ``shared_noise_share`` is psi; sampled as the mean
shock: :meth:`BreederSpec.shared_noises`). A forecast draws new ones. Without the key
there is none (:data:`SHARED_NOISE_PRIOR`). Tried and not kept: with it chain_w1's
one-step PIT test rejects (docs/models.md 4.1).

Push per trait. Guidance can drive an image statistic (sharpness, saturation) a long way
from where the unconditional probe sits, and in every concept at once, for several
generations before it levels off: a map centred on the probe's mean cannot step away
from it and then settle. With the prior key ``mean_push_sd`` each trait k gets a push
pi_k, shared by its cells in every concept and generation, in units of its own learning
noise:

    mu_t = (1 + gamma) zbar_{t-1} + beta + pi_k,   pi_k ~ Normal(0, s_pi sigma_k),
    s_pi ~ LogNormal(prior)

so a cell with gamma < 0 settles at c - pi_k / gamma instead of c (``mean_push``,
dimension trait; sampled as the mean shock: :meth:`BreederSpec.trait_pushes`). A
forecast keeps each draw's pushes. Without the key there is none
(:data:`MEAN_PUSH_PRIOR`). With the push and the prior key ``push_first`` the first
finetuning's push (generation 1, from the real data) is f pi_k, log f ~ Normal(prior),
one f per fit (``push_first``; :data:`PUSH_FIRST_PRIOR`), as the variance has its own
first step. Tried and not kept: the shipped runs' check fails in fewer generations with
the push, but the benchmark's forecasts get worse (docs/models.md 4.1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .base import (FORWARD_KEYS, ModelSpec, last_valid, observed_loglik, parent_moments, pooled,
                   sample_guided, start_state)
from .data import ChainData

#: Priors, in standardised trait units (generation-0 SD = 1). Stated in docs/models.md.
DEFAULT_PRIORS = {
    "log_lambda_mu": (np.log(0.8), 0.5),   # Normal(mean, sd): variance factor ~ 0.3..2
    "log_lambda_sd": 0.3,                  # HalfNormal scale: spread across cells
    "gamma_mu": (0.0, 0.2),                # Normal: exaggeration rate per generation
    "gamma_sd": 0.1,
    "v_mut_scale": 0.3,                    # HalfNormal scale of the population V_m scale
    # HalfNormal scale s of the shared S of the learning noise on the mean, per trait
    # sigma_k = S h_k (module docstring; learned: SIGMA_POOLED_PRIOR)
    "sigma_learn_pooled": 0.33,
    "tau": 0.2,                            # HalfNormal: learning noise on log variance
    "intercept": (0.0, 0.5),               # Normal: beta = -gamma c without an uncond probe
    # LogNormal(mu, sigma) of the generation shock's SD and Normal(mean, sd) of the first
    # step's log factor, learned together on the benchmark's seed-1 chains
    # (analyses/benchmark/run.py shock: wide priors, all 16 generations of 16 designs;
    # shock SD posterior medians 0.034-0.246, larger at high w; first step -0.49 to +0.57,
    # below 0 in 13 of 16; 12 of those 16 fits fail their diagnostics, none diverges):
    # each prior's centre is the mean over chains of the posterior mean (of log SD, of the
    # factor), its spread holds both the spread between the chains and each one's own
    "gen_shock_sd": (-2.38, 0.64),      # median exp(-2.38) = 0.093
    "first_step": (-0.17, 0.31),        # generation 1's variance x exp(d1), median 0.84
}

#: The prior key that switches the momentum on (module docstring, "Momentum"; not a
#: default): Normal(mean, sd) of rho, learned on the benchmark's seed-1 chains with the
#: default priors fixed (analyses/benchmark/run.py momentum: posterior medians +0.07 to
#: +0.64 over 16 designs, every 90% interval above 0; centre and spread computed as the
#: first step's). Left out of the defaults because forecasts of seeds 2 and 3 did not
#: improve with it (worse from 2 generations; benchmark results.md, "The momentum").
MOMENTUM_PRIOR = {"mean_momentum": (0.39, 0.18)}

#: The prior key that switches the mean offset on (module docstring, "Mean equilibrium";
#: not a default): LogNormal(mu, sigma) of the SD of the cells' offsets, learned on the
#: benchmark's seed-1 chains with the priors above fixed (analyses/benchmark/run.py
#: offset: posterior medians 0.014 to 0.124 over 16 designs; centre and spread computed as
#: the shock's), median exp(-2.87) = 0.057 generation-0 SDs. Left out of the defaults
#: because forecasts from 3 generations of seeds 2 and 3 got worse with it (benchmark
#: results.md, "The mean offset").
MEAN_OFFSET_PRIOR = {"mean_offset_sd": (-2.87, 0.78)}

#: The prior key that switches the mean shock on (module docstring, "Mean shock"; not a
#: default): LogNormal(mu, sigma) of its SD, in generation-0 SDs, learned on the
#: benchmark's seed-1 chains with the default priors fixed (analyses/benchmark/run.py
#: mean_shock: a wide prior, all 16 generations of 16 designs; posterior medians 0.029 to
#: 0.17; centre and spread computed as the shock's): median exp(-2.90) = 0.055.
MEAN_SHOCK_PRIOR = {"mean_shock_sd": (-2.90, 0.68)}

#: The prior key that switches the shared learning noise on (module docstring, "Shared
#: learning noise"; not a default): Normal(mean, sd) of logit psi, the share of each
#: trait's learning-noise variance that the trait's cells share in a generation, learned
#: on the benchmark's seed-1 chains with the default priors fixed
#: (analyses/benchmark/run.py shared_noise: Normal(0, 1.5) on logit psi, all 16
#: generations of 16 designs; posterior medians of psi 0.037 to 0.41; centre and spread
#: computed as the shock's): psi's median 0.095, 90% between 0.026 and 0.29.
SHARED_NOISE_PRIOR = {"shared_noise": (-2.25, 0.82)}

#: The prior key that switches the push per trait on (module docstring, "Push per
#: trait"; not a default): LogNormal(mu, sigma) of s_pi, the pushes' SD in units of each
#: trait's learning noise, learned on the benchmark's seed-1 chains with the default
#: priors fixed (analyses/benchmark/run.py push: MEAN_PUSH_WIDE_PRIOR, all 16 generations
#: of 16 designs, trait axes; posterior medians 0.11 to 0.23; centre and spread computed
#: as the shock's): median exp(-1.85) = 0.16, 90% between 0.072 and 0.34.
MEAN_PUSH_PRIOR = {"mean_push_sd": (-1.85, 0.47)}
#: the wide prior of s_pi in the seed-1 fits that learn MEAN_PUSH_PRIOR: LogNormal(log
#: 0.3, 1.5), 90% between 0.025 and 3.5
MEAN_PUSH_WIDE_PRIOR = (float(np.log(0.3)), 1.5)

#: With the push: the prior key of its factor f at generation 1 (module docstring, "Push
#: per trait"; not a default), Normal(mean, sd) of log f, learned on the benchmark's
#: seed-1 chains with the push's learned prior and the default priors fixed
#: (analyses/benchmark/run.py push_first: Normal(0, 1), PUSH_FIRST_WIDE_PRIOR, all 16
#: generations of 16 designs, trait axes; posterior medians of f 0.17 to 27, the trait
#: axes' pushes being small; centre and spread computed as the shock's): median
#: exp(0.16) = 1.2, 90% between 0.04 and 33, as wide as the designs disagree.
PUSH_FIRST_PRIOR = {"push_first": (0.16, 2.03)}
#: the prior of log f in the seed-1 fits that learn PUSH_FIRST_PRIOR
PUSH_FIRST_WIDE_PRIOR = (0.0, 1.0)
#: the push with its first factor: both prior keys
PUSH_WITH_FIRST_PRIOR = MEAN_PUSH_PRIOR | PUSH_FIRST_PRIOR

#: The prior keys that switch on the level-and-share parameterization (module docstring,
#: "Level and share"; not a default): the Normal priors of the locations of log L and
#: logit r, learned on the benchmark's seed-1 chains (analyses/benchmark/run.py
#: levelshare: wide location priors, all 16 generations of 16 designs; posterior medians
#: of the log level's location -0.84 to -0.14, of the logit share's +0.21 to +5.2;
#: centre and spread computed as the shock's: L median 0.68, r median 0.93, 90% 0.61 to
#: 0.99), and the HalfNormal scales of their spreads over cells from the same fits (the
#: root mean square of each spread's posterior over the chains; medians 0.010-0.18 and
#: 0.32-1.2). With these keys log_lambda_mu, log_lambda_sd and v_mut_scale are not used.
#: Left out of the defaults because fits from 3 generations of seeds 2 and 3 converged
#: less often with it (benchmark results.md, "Level and share").
LEVEL_SHARE_PRIOR = {"log_level_mu": (-0.38, 0.18), "log_level_sd": 0.11,
                     "logit_share_mu": (2.63, 1.33), "logit_share_sd": 0.76}


#: A LogNormal(mu, sigma) prior in place of the default HalfNormal(0.3) on log lambda's
#: spread over the cells (not a default), learned on the benchmark's seed-1 chains
#: (analyses/benchmark/run.py spread: a wide LogNormal, all 16 generations of 16 designs;
#: posterior medians 0.011 to 0.25, about 0.02-0.06 in 11 designs and about 0.2 in the
#: low-guidance ones; centre and spread computed as the shock's): median exp(-3.16) =
#: 0.042. Tried as a boundary-avoiding prior for chain_w1, whose default fits fail the
#: convergence rule on that spread; it made them worse (more divergent transitions:
#: docs/models.md 7, benchmark results.md, "The spread of log lambda on the seed-1
#: chains"). A tuple on ``log_lambda_sd`` is a LogNormal (:func:`~qtrait.models.base.pooled`).
LAMBDA_SPREAD_PRIOR = {"log_lambda_sd": (-3.16, 1.24)}

#: The prior key that switches on the spike at V_m = 0 (module docstring, "A spike at
#: V_m = 0"; not a default): Beta(a, b) of the share of cells whose V_m is not 0, uniform
#: (not learned on the benchmark's seed-1 chains). It meets the textbook Replace chains'
#: coverage and width bars that the default misses, though from fits that, as the
#: default's, fail the convergence rule (analyses/textbook/results.md), and more fits from 3
#: generations of seeds 2 and 3 converge with it (16 of 32, 9 without), but their
#: forecasts score worse (benchmark results.md, "The spike at V_m = 0"), and on the
#: shipped runs its fits diverge more (docs/models.md 4.1).
V_MUT_SLAB_PRIOR = {"v_mut_slab": (1.0, 1.0)}

#: The prior key that gives each trait its own learning noise on the mean (module
#: docstring, "Learning noise per trait"; not a default): LogNormal(mu, sigma) of every
#: trait's noise, learned on the benchmark's seed-1 chains with the default priors fixed
#: (analyses/benchmark/run.py trait_noise: each trait's noise with a wide prior, all 16
#: generations of 16 designs x 9 axes; posterior medians 0.04 to 0.81, higher at high w;
#: 13 of those 16 fits fail their diagnostics, one diverges once): mu is the mean of the
#: log noise's posterior means over (design, axis), sigma the root of their variance plus
#: the mean posterior variance; median exp(-1.52) = 0.22 generation-0 SDs. Independent
#: per trait, with no spread over traits to sample: a pooled spread, sampled centred,
#: diverged on fits from 3 generations of similar trait axes (a funnel), and non-centred
#: mixed slowly on the shipped runs, whose image statistics differ from the axes by a
#: factor of 10 (docs/models.md 4.1). Not a default: it describes real chains better (the
#: shipped runs' one-step PIT; held-out density from 3 and 4 generations of seeds 2 and 3),
#: but on a textbook Accumulate chain it forecasts a collapse too often (P(no collapse)
#: 0.86 against the bar of 0.9; analyses/textbook/results.md), and it is worse from two
#: generations (benchmark results.md, "The learning noise per trait").
SIGMA_TRAIT_PRIOR = {"sigma_learn_trait": (-1.52, 0.69)}

#: The scale s of the pooled learning noise's shared S (module docstring, "Learning noise
#: per trait"; in DEFAULT_PRIORS since 2026-12-07): the root mean square of the per-trait
#: noises' posterior medians in the same seed-1 fits (analyses/benchmark/run.py
#: trait_noise_pooled_prior; E sigma_k^2 = s^2 E h_k^2 = s^2 under the prior, so the
#: prior's sigma_k has the fits' RMS). Against one noise, on seeds 2 and 3: the same
#: forecasts from 3 generations, a higher held-out density from 3 and 4, a lower one from
#: 2; the shipped runs' one-step PIT test no longer rejects (docs/models.md 4.1).
SIGMA_POOLED_PRIOR = {"sigma_learn_pooled": DEFAULT_PRIORS["sigma_learn_pooled"]}

#: One learning noise for every trait, HalfNormal with this scale: the default until
#: 2026-12-07 (:func:`one_noise_priors` puts it in place of the pooled noise).
ONE_NOISE_PRIOR = {"sigma_learn": 0.1}


def one_noise_priors(priors: dict) -> dict:
    """``priors`` with one learning noise for every trait (:data:`ONE_NOISE_PRIOR`) in
    place of the pooled noise per trait."""
    return {k: v for k, v in priors.items() if k != "sigma_learn_pooled"} | ONE_NOISE_PRIOR


#: Cells from which the generation shocks are sampled centred (BreederSpec.
#: generation_shocks): set between the layouts measured, not tuned. Centred, chain_042's
#: fits (140 cells) took about 7% fewer leapfrog steps, with no clear change in how many
#: fits converge; non-centred, the SBC's 3-cell fits diverged less (docs/models.md 4.1).
#: The pooled learning noises use the same line (BreederSpec.noise_sampling): sampled as
#: S h_k, chain_042's fit had a bulk ESS of 165, centred one of 579
#: (analyses/adequacy/results.md).
SHOCK_CENTRED_CELLS = 30


def cell_sampling(cd: ChainData) -> str:
    """"centred" on fits of at least :data:`SHOCK_CENTRED_CELLS` cells, else
    "non-centred": how the shocks and the pooled noises are sampled on ``cd``."""
    return "centred" if cd.J >= SHOCK_CENTRED_CELLS else "non-centred"


def set_mean(cd: ChainData, set_name: str, upto: int | None = None) -> np.ndarray:
    """Per cell, the mean of a set's means over its valid generations < upto (NaN where a
    cell has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a cell without the set: NaN
        return np.nanmean(np.where(cd.valid(set_name), cd.sets[set_name].mean,
                                   np.nan)[:upto], axis=0)


def uncond_center(cd: ChainData, upto: int | None = None) -> np.ndarray | None:
    """Per cell, the unconditional probes' mean over generations < upto; None without
    probes."""
    if not cd.has("probe_uncond"):
        return None
    c = set_mean(cd, "probe_uncond", upto)
    return c if np.all(np.isfinite(c)) else None


def parent_level(cd: ChainData, upto: int | None = None) -> np.ndarray:
    """Per cell, the mean of the guided sets' means of generations 0..upto-2 (the parents
    of the generations a fit on < upto sees; 0 where a cell has none)."""
    out = set_mean(cd, "guided", max((cd.G if upto is None else upto) - 1, 1))
    return np.where(np.isfinite(out), out, 0.0)


def parent_steps(cd: ChainData) -> np.ndarray:
    """(G, J): row t holds the last step of the parents' mean before generation t, the
    parent mean of t minus that of t - 1 (:func:`~qtrait.models.base.parent_moments`
    rows t - 1 and t - 2); 0 where there is none (rows 0 and 1, or a missing set)."""
    pm = parent_moments(cd)[0]
    out = np.zeros_like(pm)
    step = pm[1:-1] - pm[:-2]
    out[2:] = np.where(np.isfinite(step), step, 0.0)
    return out


@dataclass(frozen=True)
class BreederSpec(ModelSpec):
    """What the breeder model is, separate from the PyMC graph it builds."""

    name: str = "breeder"
    priors: dict = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    #: scientific parameters reported by `qtrait fit`
    reported = ("lambda", "gamma", "v_mut", "v_star", "share", "sigma_learn",
                "sigma_learn_scale", "tau",
                "gen_shock_sd", "first_step", "mean_momentum", "mean_offset", "mean_offset_sd",
                "mean_shock_sd", "shared_noise_share", "mean_push", "mean_push_sd",
                "push_first")
    #: population parameters of either parameterization (those of the other are absent)
    population = ("log_level_mu", "log_level_sd", "logit_share_mu", "logit_share_sd",
                  "log_lambda_mu", "log_lambda_sd", "gamma_mu", "gamma_sd", "v_mut_scale")

    @property
    def noise_per_trait(self) -> bool:
        """Whether the learning noise has one value per trait (module docstring, "Learning
        noise per trait"): the prior key ``sigma_learn_trait`` or ``sigma_learn_pooled``."""
        return "sigma_learn_trait" in self.priors or "sigma_learn_pooled" in self.priors

    @property
    def has_mean_shock(self) -> bool:
        """Whether the mean map carries a shock per generation and trait (module
        docstring, "Mean shock")."""
        return "mean_shock_sd" in self.priors

    @property
    def has_shared_noise(self) -> bool:
        """Whether a share of the learning noise is shared by a trait's cells in a
        generation (module docstring, "Shared learning noise")."""
        return "shared_noise" in self.priors

    @property
    def has_push(self) -> bool:
        """Whether the mean map has a push per trait (module docstring, "Push per
        trait")."""
        return "mean_push_sd" in self.priors

    @property
    def by_trait(self) -> bool:
        """Whether the graph needs each cell's trait (a per-trait noise, mean shock,
        shared noise or push)."""
        return (self.noise_per_trait or self.has_mean_shock or self.has_shared_noise
                or self.has_push)

    @property
    def has_shock(self) -> bool:
        """Whether the variance map carries the generation shock (module docstring)."""
        return "gen_shock_sd" in self.priors

    def describe(self) -> str:
        return ("breeder: V_t = lambda s2_{t-1} + V_m; mu_t - c = (1 + gamma)(zbar_{t-1} - c);"
                " pooled over traits and concepts")

    def design_constants(self, cd: ChainData) -> tuple:
        out = (uncond_center(cd) is None,)
        if self.by_trait:   # which trait each cell has
            out += (tuple(cd.trait_index()),)
        return out

    def arrays(self, cd: ChainData, upto: int | None = None) -> dict[str, np.ndarray]:
        out = super().arrays(cd, upto)
        center = uncond_center(cd, upto)
        if center is not None:   # data, not a graph constant: a reused model gets its own
            out["data_center"] = center
            if "mean_offset_sd" in self.priors:
                out["data_mean_ref"] = parent_level(cd, upto)
        if "mean_momentum" in self.priors:
            out["data_prev_step"] = parent_steps(cd)
        return out

    def coords(self, cd: ChainData, lay):
        c = super().coords(cd, lay)
        if self.has_shock or self.has_mean_shock or self.has_shared_noise:
            c["shock_generation"] = cd.generations[1:]
        if self.by_trait:
            c["trait"] = cd.traits()
        return c

    def shock_sampling(self, cd: ChainData) -> str:
        """How :meth:`generation_shocks` samples the shocks on ``cd``: "centred" with at
        least :data:`SHOCK_CENTRED_CELLS` cells, "non-centred" with fewer, "" without the
        prior key ``gen_shock_sd``."""
        if not self.has_shock:
            return ""
        return cell_sampling(cd)

    def noise_sampling(self, cd: ChainData) -> str:
        """How :meth:`learning_noise` samples the pooled noises sigma_k = S h_k on ``cd``:
        "centred" (sigma_k ~ HalfNormal(S)) with at least :data:`SHOCK_CENTRED_CELLS`
        cells, "non-centred" (S times h_k ~ HalfNormal(1)) with fewer, "" without the
        prior key ``sigma_learn_pooled`` (or with ``sigma_learn_trait``, which takes
        precedence). The same prior either way; as for the shocks, many cells pin each
        trait's noise down, and S times h_k would have to trade S against every h_k
        together (docs/models.md 4.1, "Learning noise per trait")."""
        if "sigma_learn_pooled" not in self.priors or "sigma_learn_trait" in self.priors:
            return ""
        return cell_sampling(cd)

    def first_step_sampling(self, cd: ChainData) -> str:
        """How :meth:`generation_log_steps` samples the first step's factor d1 on ``cd``:
        "shifted" (``first_step_shifted`` = d1 + the shock's deviation of generation 1)
        with the generation shock on fits of at least :data:`SHOCK_CENTRED_CELLS` cells,
        whose data pin that sum; "plain" with fewer cells (where the data barely inform
        the shocks, and in the SBC's 3-cell fits shifted sampling left more fits above
        R-hat 1.01: docs/models.md 4.1) or without the shock; "" without the prior key
        ``first_step`` or a generation 1."""
        if "first_step" not in self.priors or cd.G < 2:
            return ""
        return "shifted" if self.has_shock and cell_sampling(cd) == "centred" else "plain"

    def generation_shocks(self, cd: ChainData):
        """(e, mean): the shocks e_t of generations 1.. (a deterministic ``gen_shock``)
        and their mean, or (None, None) without the prior key.

        Sampled as the mean and the deviations from it: iid e_t ~ Normal(0, sigma) over n
        generations is e-bar ~ Normal(0, sigma / sqrt(n)) plus an independent zero-sum
        vector (PyMC's ZeroSumNormal with the same sigma). The split is what lets
        :meth:`cell_parameters` take the mean out of the likelihood (its docstring).

        Every cell of a generation reads its shock. With at least
        :data:`SHOCK_CENTRED_CELLS` cells the data pin each e_t down, and the shocks are
        sampled centred (``gen_shock_mean``, ``gen_shock_dev``): as sigma times a standard
        normal, z_t = e_t / sigma would have to move with sigma, a funnel. With fewer
        cells they are sampled so (``gen_shock_mean_z``, ``gen_shock_dev_z``), which
        suits shocks the data barely inform. The prior, so the posterior, is the same
        either way (docs/models.md 4.1, "How the shocks are sampled")."""
        if not self.has_shock:
            return None, None
        import pymc as pm
        import pytensor.tensor as pt

        n = cd.G - 1
        sd = pm.LogNormal("gen_shock_sd", *self.priors["gen_shock_sd"])
        if self.shock_sampling(cd) == "centred":
            mean = pm.Normal("gen_shock_mean", 0.0, sd / np.sqrt(n))
            dev = (pm.ZeroSumNormal("gen_shock_dev", sigma=sd, dims="shock_generation")
                   if n > 1 else pt.zeros(1))
        else:
            mean = sd * pm.Normal("gen_shock_mean_z", 0.0, 1.0) / np.sqrt(n)
            dev = (sd * pm.ZeroSumNormal("gen_shock_dev_z", sigma=1.0,
                                         dims="shock_generation") if n > 1 else pt.zeros(1))
        return pm.Deterministic("gen_shock", mean + dev, dims="shock_generation"), mean

    def generation_log_steps(self, cd: ChainData, shocks, shock_mean):
        """Per row (generation), what multiplies every cell's V_t on the log scale: the
        generation shocks (rows 1..; ``shock_mean`` their mean) and the first step's own
        factor d1 (row 1, with the prior ``first_step``); None when the model has neither.

        With the shocks, row 1 is e-bar + dev_1 + d1, and the data pin dev_1 + d1 (e-bar
        cancels: :meth:`cell_parameters`), while dev_1 and d1 trade along that sum (a
        posterior correlation of -0.95 on chain_042 sampled plainly). So d1 is sampled
        shifted (:meth:`first_step_sampling`): ``first_step_shifted`` ~ Normal(loc +
        dev_1, sd), and d1 is it less dev_1: given the shocks a shift, so the same prior
        and posterior (docs/models.md 4.1, "How the first step is sampled")."""
        import pymc as pm
        import pytensor.tensor as pt

        if shocks is None and "first_step" not in self.priors:
            return None
        out = (pt.concatenate([pt.zeros(1), shocks]) if shocks is not None
               else pt.zeros(cd.G))
        how = self.first_step_sampling(cd)
        if how:
            loc, sd = self.priors["first_step"]
            if how == "plain":
                d1 = pm.Normal("first_step", loc, sd)
            else:
                dev1 = shocks[0] - shock_mean
                d1 = pm.Deterministic("first_step", pm.Normal(
                    "first_step_shifted", loc + dev1, sd) - dev1)
            out = pt.set_subtensor(out[1], out[1] + d1)
        return out

    def mean_shocks(self, cd: ChainData):
        """(G, J): what the mean shock adds to each cell's mean map (row 0, generation 0,
        none), or 0 without the prior key ``mean_shock_sd`` (module docstring, "Mean
        shock"). One shock m_{t,k} per generation and trait, shared by the trait's cells;
        sampled centred (``mean_shock``) with at least :data:`SHOCK_CENTRED_CELLS` cells,
        where each is informed by the trait's cells in every concept, else as s_m times a
        standard normal (``mean_shock_z``); the same prior either way."""
        if not self.has_mean_shock or cd.G < 2:
            return 0.0
        import pymc as pm
        import pytensor.tensor as pt

        sd = pm.LogNormal("mean_shock_sd", *self.priors["mean_shock_sd"])
        dims = ("shock_generation", "trait")
        if cell_sampling(cd) == "centred":
            m = pm.Normal("mean_shock", 0.0, sd, dims=dims)
        else:
            m = pm.Deterministic("mean_shock", sd * pm.Normal("mean_shock_z", 0.0, 1.0,
                                                              dims=dims), dims=dims)
        rows = pt.concatenate([pt.zeros((1, len(cd.traits()))), m], axis=0)
        return rows[:, cd.trait_index()]

    def shared_noises(self, cd: ChainData, sigma):
        """(shift, own): what the shared learning noise (module docstring, "Shared
        learning noise") adds to each cell's mean map, (G, J) with row 0 (generation 0)
        none, and the factor 1 - psi of the cells' own noise variance; (0, 1) without the prior key
        ``shared_noise`` or a generation 1. ``sigma``: the learning noise per trait (K,)
        or one for all (a scalar). Sampled centred (``shared_noise``) with at least
        :data:`SHOCK_CENTRED_CELLS` cells, else as its SD times a standard normal
        (``shared_noise_z``); the same prior either way."""
        if not self.has_shared_noise or cd.G < 2:
            return 0.0, 1.0
        import pymc as pm
        import pytensor.tensor as pt

        K = len(cd.traits())
        psi = pm.Deterministic("shared_noise_share", pm.math.sigmoid(
            pm.Normal("shared_noise_logit", *self.priors["shared_noise"])))
        sd = pt.sqrt(psi) * (sigma * pt.ones(K))
        dims = ("shock_generation", "trait")
        if cell_sampling(cd) == "centred":
            m = pm.Normal("shared_noise", 0.0, sd[None, :], dims=dims)
        else:
            m = pm.Deterministic("shared_noise", sd[None, :] * pm.Normal(
                "shared_noise_z", 0.0, 1.0, dims=dims), dims=dims)
        rows = pt.concatenate([pt.zeros((1, K)), m], axis=0)
        return rows[:, cd.trait_index()], 1.0 - psi

    def trait_pushes(self, cd: ChainData, sigma):
        """(J,): each cell's push pi_k (module docstring, "Push per trait"), or 0 without
        the prior key ``mean_push_sd``; (G, J) with the prior key ``push_first``, whose
        row 1 (generation 1) is f pi_k. ``sigma``: the learning noise per trait (K,) or
        one for all (a scalar). Sampled centred (``mean_push``) with at least
        :data:`SHOCK_CENTRED_CELLS` cells, else as s_pi sigma_k times a standard normal
        (``mean_push_z``); the same prior either way."""
        if not self.has_push:
            return 0.0
        import pymc as pm
        import pytensor.tensor as pt

        sd = pm.LogNormal("mean_push_sd", *self.priors["mean_push_sd"]) * (
            sigma * pt.ones(len(cd.traits())))
        if cell_sampling(cd) == "centred":
            push = pm.Normal("mean_push", 0.0, sd, dims="trait")
        else:
            push = pm.Deterministic("mean_push", sd * pm.Normal("mean_push_z", 0.0, 1.0,
                                                                dims="trait"), dims="trait")
        push = push[cd.trait_index()]
        if "push_first" not in self.priors or cd.G < 2:
            return push
        f = pt.exp(pm.Normal("push_first", *self.priors["push_first"]))
        rows = pt.set_subtensor(pt.ones(cd.G)[1], f)
        return rows[:, None] * push[None, :]

    def learning_noise(self, cd: ChainData, per_trait: bool = False):
        """The learning noise on the mean (``sigma_learn``; module docstring, "Learning
        noise per trait"): with the prior key ``sigma_learn_trait`` one per trait, shared
        by the trait's cells in every concept and run, each with that LogNormal prior;
        else with ``sigma_learn_pooled`` (the default) one per trait as a shared scale
        times a trait's factor; else one per fit, HalfNormal(``sigma_learn``). Returns
        what multiplies each cell's noise: a scalar, or a (J,) vector; with ``per_trait``
        the (K,) vector of the traits' noises instead (a scalar still for one noise)."""
        import pymc as pm

        p = self.priors
        if not self.noise_per_trait:
            return pm.HalfNormal("sigma_learn", p["sigma_learn"])
        if "sigma_learn_trait" not in p:
            scale = pm.HalfNormal("sigma_learn_scale", p["sigma_learn_pooled"])
            if self.noise_sampling(cd) == "centred":
                sigma = pm.HalfNormal("sigma_learn", scale, dims="trait")
            else:
                h = pm.HalfNormal("sigma_learn_h", 1.0, dims="trait")
                sigma = pm.Deterministic("sigma_learn", scale * h, dims="trait")
        else:
            sigma = pm.LogNormal("sigma_learn", *p["sigma_learn_trait"], dims="trait")
        return sigma if per_trait else sigma[cd.trait_index()]

    def mean_offsets(self, gamma, center, level):
        """Per cell, the offset delta of the mean map's intercept from -gamma c (module
        docstring, "Mean equilibrium"), 0 without the prior key ``mean_offset_sd``.

        Sampled as the mean step at the cell's own level m (``level``: the mean of the
        parents' means the fit sees), eta = gamma (m - c) + delta, whose prior given gamma
        is Normal(gamma (m - c), s): the same model. The data pin eta (the cells' average
        step) and gamma (how the step varies with the parent's mean) apart, where delta
        and gamma trade along delta + gamma (m - c) = eta, a ridge that is long when the
        chain sits far from c."""
        if "mean_offset_sd" not in self.priors:
            return 0.0
        import pymc as pm

        sd = pm.LogNormal("mean_offset_sd", *self.priors["mean_offset_sd"])
        lean = gamma * (level - center)
        eta = pm.Normal("mean_step", lean, sd, dims="cell")
        return pm.Deterministic("mean_offset", eta - lean, dims="cell")

    # the three pooled cell parameters; hier overrides the population locations
    def cell_parameters(self, cd: ChainData, locs=None, shift=None):
        """lambda, gamma and V_m per cell.

        ``shift``: the mean generation shock e-bar. The likelihood sees lambda and V_m
        only through (lambda s2 + V_m) exp(e-bar + deviation), so lambda e^e-bar and
        V_m e^e-bar are what the data pin down, and e-bar trades against log lambda's
        location and V_m's scale along an exact ridge that slows the sampler (one-off
        warm fits of chain_042: 24.7 s sampled plainly, 17.8 s shifted). So those two
        are sampled shifted:
        log_lambda_mu_shifted ~ Normal(mu + e-bar, sd) and v_mut_scale_shifted ~
        HalfNormal(scale e^e-bar), the same priors moved by e-bar, and the model's
        log_lambda_mu, v_mut_scale, lambda and V_m are the shifted ones times e^-e-bar.
        The posterior is the same; e-bar is then informed by the priors alone."""
        import pymc as pm
        import pytensor.tensor as pt

        p = self.priors
        locs = locs or {}
        if shift is not None and locs:
            raise ValueError("the generation shock with regressed locations (hier) is not "
                             "built")
        def cell_gamma():
            return pm.Deterministic("gamma", pooled("gamma", p["gamma_mu"], p["gamma_sd"],
                                                    group_loc=locs.get("gamma")), dims="cell")

        if "log_level_mu" in p:
            if locs:
                raise ValueError("the level-and-share parameterization with regressed "
                                 "locations (hier) is not built")
            lam, v_mut = self.level_share(shift)
            return lam, cell_gamma(), v_mut
        lam = pm.Deterministic("lambda", pt.exp(self.pooled_shifted(
            "log_lambda", shift, locs.get("log_lambda"))), dims="cell")
        if shift is None:
            scale = locs.get("v_mut_scale")
            if scale is None:
                scale = pm.HalfNormal("v_mut_scale", p["v_mut_scale"])
        else:
            scale = pm.Deterministic("v_mut_scale", pm.HalfNormal(
                "v_mut_scale_shifted", p["v_mut_scale"] * pt.exp(shift)) * pt.exp(-shift))
        gamma = cell_gamma()
        vm_z = pm.HalfNormal("v_mut_z", 1.0, dims="cell")
        v_mut = pm.Deterministic("v_mut", scale * vm_z, dims="cell")
        return lam, gamma, v_mut

    def pooled_shifted(self, name: str, shift=None, group_loc=None):
        """The partially pooled per-cell value of ``name`` (priors ``{name}_mu`` and
        ``{name}_sd``; :func:`~qtrait.models.base.pooled`). With the generation shock's
        mean ``shift`` its location is sampled shifted, ``{name}_mu_shifted`` ~
        Normal(mu + shift, sd), and the value returned is the shifted one less ``shift``
        (:meth:`cell_parameters` says why)."""
        import pymc as pm

        p = self.priors
        if shift is None:
            return pooled(name, p[f"{name}_mu"], p[f"{name}_sd"], group_loc=group_loc)
        loc, loc_sd = p[f"{name}_mu"]
        shifted = pm.Normal(f"{name}_mu_shifted", loc + shift, loc_sd)
        pm.Deterministic(f"{name}_mu", shifted - shift)
        return pooled(name, p[f"{name}_mu"], p[f"{name}_sd"], group_loc=shifted) - shift

    def level_share(self, shift=None):
        """lambda and V_m per cell from the level L = lambda + V_m (the variance a unit
        parent variance passes on) and the inherited share r = lambda / L, each partially
        pooled: log L ~ Normal(mu_L, sd_L), logit r ~ Normal(mu_r, sd_r) (module
        docstring, "Level and share"). With the generation shock's mean ``shift`` the
        level's location is sampled shifted, as :meth:`cell_parameters` says for lambda
        and V_m."""
        import pymc as pm
        import pytensor.tensor as pt

        p = self.priors
        log_level = self.pooled_shifted("log_level", shift)
        level = pm.Deterministic("level", pt.exp(log_level), dims="cell")
        share = pm.Deterministic("share", pm.math.sigmoid(pooled(
            "logit_share", p["logit_share_mu"], p["logit_share_sd"])), dims="cell")
        lam = pm.Deterministic("lambda", level * share, dims="cell")
        v_mut = pm.Deterministic("v_mut", level * (1 - share), dims="cell")
        return lam, v_mut

    def build(self, cd: ChainData, locs_fn=None):
        """The PyMC model; ``locs_fn`` (hier) supplies per-cell population locations."""
        import pymc as pm
        import pytensor.tensor as pt

        p = self.priors
        lay = self.layout(cd)
        with pm.Model(coords=self.coords(cd, lay)) as model:
            D = self.data_vars(cd)
            locs = locs_fn(cd) if locs_fn is not None else None
            shocks, shock_mean = self.generation_shocks(cd)
            lam, gamma, v_mut = self.cell_parameters(cd, locs, shift=shock_mean)
            pm.Deterministic("v_star", pt.switch(lam < 1, v_mut / (1 - lam), np.inf),
                             dims="cell")
            sigma_k = self.learning_noise(cd, per_trait=True)
            sigma = sigma_k[cd.trait_index()] if self.noise_per_trait else sigma_k
            shared, own = self.shared_noises(cd, sigma_k)
            tau = pm.HalfNormal("tau", p["tau"])
            center = D.get("center")
            if center is None:
                beta = pm.Normal("intercept", *p["intercept"], dims="cell")
            else:
                beta = pm.Deterministic("intercept", -gamma * center + self.mean_offsets(
                    gamma, center, D.get("mean_ref")), dims="cell")
            # row 0 (generation 0, the real data) is not modelled: the layout never reads it
            inherited = lam * D["prev_var"]
            V = inherited + v_mut
            log_step = self.generation_log_steps(cd, shocks, shock_mean)
            if log_step is not None:
                step = pt.exp(log_step)[:, None]
                V, inherited = V * step, inherited * step
            mu = (1 + gamma) * D["prev_mean"] + beta + self.mean_shocks(cd)
            if self.has_push:   # the optional terms only where their keys are: without
                mu = mu + self.trait_pushes(cd, sigma_k)   # them the graph is as before
            if self.has_shared_noise:
                mu = mu + shared
                sigma = pt.sqrt(own) * sigma
            if "mean_momentum" in p:
                mu = mu + pm.Normal("mean_momentum", *p["mean_momentum"]) * D["prev_step"]
            pm.Deterministic("guided_mean", mu, dims=("generation", "cell"))
            pm.Deterministic("guided_var", V, dims=("generation", "cell"))
            if "v_mut_slab" in p:   # the same map with V_m = 0: the inherited part alone
                self.spike_likelihood(D, mu, V, inherited, sigma ** 2, tau ** 2)
            else:
                self.likelihood(D, lay, {"guided": (mu, V)}, extra_mean=sigma ** 2,
                                extra_rel=tau ** 2)
        return model

    def spike_likelihood(self, D: dict, mu, V, V0, extra_mean, extra_rel):
        """The guided sets' likelihood with each cell's V_m either its value or exactly 0
        (module docstring, "A spike at V_m = 0"), the choice marginalised per cell: the
        cell's log-likelihood over its generations is log(pi L1 + (1 - pi) L0), pi ~ Beta
        (prior ``v_mut_slab``) the share of cells with V_m > 0. ``v_mut_on`` is each
        cell's posterior probability of V_m > 0 given the other parameters (forecasts draw
        the choice from it). The observations of a cell are not independent given the
        parameters (they share the choice), so the pointwise ``log_lik_guided`` of an
        observed entry is its density given the cell's other observations: the cell's
        log-likelihood less the same without the entry (what PSIS-LOO leaves out)."""
        import pymc as pm
        import pytensor.tensor as pt

        (ll1, seen1), (ll0, seen0) = (observed_loglik(D, "guided", mu, v, extra_mean,
                                                      extra_rel) for v in (V, V0))
        pi = pm.Beta("v_mut_slab", *self.priors["v_mut_slab"])
        a, b = pt.log(pi) + pt.sum(seen1, axis=0), pt.log1p(-pi) + pt.sum(seen0, axis=0)
        cell = pt.logaddexp(a, b)
        pm.Potential("likelihood", pt.sum(cell))
        pm.Deterministic("v_mut_on", pm.math.sigmoid(a - b), dims="cell")
        pm.Deterministic("log_lik_guided", cell - pt.logaddexp(a - seen1, b - seen0),
                         dims=("generation", "cell"))

    def forward(self, draws: dict, cd: ChainData, start: int, t_end: int,
                rng: np.random.Generator) -> dict:
        """Guided moments of generations start..t_end per draw, latent and as observed in
        a set of the run's size, simulated from the observed guided set of generation
        start-1 (arrays (draws, t, J); keys FORWARD_KEYS)."""
        lam, gamma, v_mut = draws["lambda"], draws["gamma"], draws["v_mut"]
        if "v_mut_on" in draws:   # the spike: V_m of each draw's cell on or exactly 0
            v_mut = v_mut * (rng.uniform(size=v_mut.shape) < draws["v_mut_on"])
        S = lam.shape[0]
        beta = draws["intercept"]
        push = 0.0
        if "mean_push" in draws:   # the push per trait: a constant of each draw's map
            push = draws["mean_push"][:, cd.trait_index()]
            beta = beta + push
        center = uncond_center(cd)
        center = (np.broadcast_to(center, lam.shape) if center is not None
                  else np.full(lam.shape, np.nan))
        K = len(cd.traits())
        sigma_k = draws["sigma_learn"]   # (S, K) per trait, or (S,) one for all
        sigma_k = sigma_k if sigma_k.ndim == 2 else np.repeat(sigma_k[:, None], K, axis=1)
        psi = draws.get("shared_noise_share")
        psi = np.zeros(S) if psi is None else psi
        sigma = np.sqrt(1 - psi)[:, None] * sigma_k[:, cd.trait_index()]
        shared_sd = np.sqrt(psi)[:, None] * sigma_k
        tau = draws["tau"][:, None]
        shock_sd = draws.get("gen_shock_sd")
        mean_shock_sd = draws.get("mean_shock_sd")
        st = start_state(cd, start, lam.shape)
        rho = draws.get("mean_momentum")
        if rho is not None:      # the parents' mean before their last step
            before = last_valid(parent_moments(cd)[0], start - 1)
            before = np.broadcast_to(np.where(np.isfinite(before), before,
                                              st.parents.mean), lam.shape).copy()
        out = {k: np.empty((S, t_end - start + 1, cd.J)) for k in FORWARD_KEYS}
        for i in range(t_end - start + 1):
            V = (lam * st.parents.var + v_mut) * np.exp(
                tau * rng.standard_normal(lam.shape) - tau ** 2 / 2)
            if shock_sd is not None:   # one shock per run and generation, all its cells
                e = shock_sd[:, None] * rng.standard_normal((S, len(cd.runs)))
                V = V * np.exp(e[:, cd.run_of_cell])
            if start + i == 1 and "first_step" in draws:
                V = V * np.exp(draws["first_step"])[:, None]
            mu = (1 + gamma) * st.parents.mean + beta + sigma * rng.standard_normal(lam.shape)
            if start + i == 1 and "push_first" in draws:   # generation 1's push: f pi_k
                mu = mu + (np.exp(draws["push_first"])[:, None] - 1) * push
            if mean_shock_sd is not None:   # one shock per trait, all of the trait's cells
                m = mean_shock_sd[:, None] * rng.standard_normal((S, K))
                mu = mu + m[:, cd.trait_index()]
            if "shared_noise_share" in draws:   # the noise's shared part, per trait
                mu = mu + (shared_sd * rng.standard_normal((S, K)))[:, cd.trait_index()]
            if rho is not None:   # no step before generation 2: before = parents there
                mu = mu + rho[:, None] * (st.parents.mean - before)
                before = st.parents.mean.copy()
            zbar, s2 = sample_guided(rng, mu, V, st.n, st.kurt, st.skew)
            st.parents.add(st.n, zbar, s2)
            for k, v in zip(FORWARD_KEYS, (mu, V, zbar, s2)):
                out[k][:, i] = v
        return out | {"m_uncond": center}
