"""Options shared by the theory and simulation commands (typer Annotated aliases)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import QtraitError
from ..theory.calibration import PROFILES
from ..theory.horizon import Criteria
from ..theory.schedules import GuidanceSchedule, NoiseSchedule, Sampler

CfgScale = Annotated[float, typer.Option("--cfg-scale", help="Guidance scale w (at the "
                                         "start of sampling for a decaying schedule).")]
CfgSchedule = Annotated[str, typer.Option("--cfg-schedule", help="constant, linear, cosine, "
                                          "step or interval (over sampling steps).")]
CfgEnd = Annotated[float, typer.Option("--cfg-end", help="Scale at the end of a linear or "
                                       "cosine schedule, and outside a step/interval one.")]
CfgUntil = Annotated[float, typer.Option("--cfg-until", help="Progress (0..1) where a step "
                                         "or interval schedule ends.")]
CfgStart = Annotated[float, typer.Option("--cfg-start", help="Progress (0..1) where an "
                                         "interval schedule starts.")]
SamplerName = Annotated[str, typer.Option("--sampler", help="ddim (deterministic) or ddpm "
                                          "(ancestral).")]
Steps = Annotated[int, typer.Option("--steps", help="Sampling steps.")]
Spacing = Annotated[str, typer.Option("--spacing", help="Timestep spacing: leading, "
                                      "linspace, trailing, floor_linspace.")]
Prediction = Annotated[str, typer.Option("--prediction", help="epsilon or v_prediction.")]
BetaSchedule = Annotated[str, typer.Option("--betas", help="linear (DDPM, 1e-4..0.02) or "
                                           "sd (Stable Diffusion's scaled_linear "
                                           "0.00085..0.012).")]
Q = Annotated[float, typer.Option("--q", help="Variance collapse: V_t/V_0 < q (the run: "
                                  "the concept-pooled variance ratio).")]
D = Annotated[float, typer.Option("--d", help="Drift: |mu_t - mu_0|/sqrt(V_0) > d (the run: "
                                  "pooled Mahalanobis drift above the chi2_K quantile at "
                                  "P(|Z| < d)).")]
Alpha = Annotated[float, typer.Option("--alpha", help="Observed crossings count only beyond "
                                      "sampling noise: familywise error over generations "
                                      "and criteria (theory.md 3.1).")]
R = Annotated[float, typer.Option("--r", help="Dilution: |mu_t - m_u| < r |mu_0 - m_u|.")]
TMax = Annotated[int, typer.Option("--t-max", help="Generations to look ahead (T_max).")]
Rho = Annotated[Optional[float], typer.Option("--rho", help="Adaptation of the "
                                              "unconditional branch by condition drop, in "
                                              "[0, 1] (measured from probes, or assumed).")]
PDrop = Annotated[float, typer.Option("--p-drop", help="Condition-drop rate of finetuning "
                                      "(recorded; its effect is rho).")]
H2 = Annotated[Optional[float], typer.Option("--h2", help="Heritability of finetuning the "
                                             "zero-shot theory assumes, in [0, 1] "
                                             "(default: the calibration's; 1 "
                                             "uncalibrated).")]
CalibrationOpt = Annotated[str, typer.Option(
    "--calibration", help="Zero-shot calibration (docs/theory.md section 4.6): auto (the "
    "one learned on the run's kind of chain: miniature for the CPU miniature chain, none "
    "otherwise), none (the theory as derived) or miniature.")]


Traits = Annotated[Optional[str], typer.Option(
    "--traits", help="Comma-separated traits to fit (default: all). Fits cost grows with "
    "traits x concepts: on a large run, fit the trait axes first.")]
Concepts = Annotated[Optional[str], typer.Option(
    "--concepts", help="Comma-separated concepts to fit (default: all).")]


def check_theory_options(h2: float | None, calibration: str) -> None:
    """Usage errors for --h2 and --calibration."""
    if h2 is not None and not 0 <= h2 <= 1:
        raise QtraitError(f"--h2 must be in [0, 1], got {h2}")
    if calibration != "auto" and calibration not in PROFILES:
        raise QtraitError(f"--calibration must be auto or one of {sorted(PROFILES)}, "
                          f"got {calibration!r}")


def names(text: str | None) -> list[str] | None:
    """A comma-separated list of names (``None`` stays ``None``: all)."""
    if text is None:
        return None
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out:
        raise QtraitError("give at least one name, comma-separated")
    return out


def open_selected(path, traits: str | None = None, concepts: str | None = None):
    """Open a run and restrict it to the chosen traits and concepts (the --traits and
    --concepts options)."""
    from ..rundir import open_run

    return open_run(path).select(names(traits), names(concepts))


def make_sampler(name: str, steps: int, spacing: str, prediction: str, betas: str) -> Sampler:
    try:
        noise = NoiseSchedule.stable_diffusion() if betas == "sd" else (
            NoiseSchedule() if betas == "linear" else None)
        if noise is None:
            raise ValueError(f"--betas must be 'linear' or 'sd', got {betas!r}")
        return Sampler(name, steps, noise, prediction, spacing)
    except ValueError as exc:
        raise QtraitError(str(exc)) from None


def make_guidance(schedule: str, scale: float, end: float, until: float,
                  start: float = 0.0) -> GuidanceSchedule:
    if schedule == "custom":
        raise QtraitError("a custom schedule needs a Python function; use the Python API "
                          "(qtrait.theory.schedules.GuidanceSchedule)")
    try:
        return GuidanceSchedule(schedule, scale, end=end, start=start, until=until)
    except ValueError as exc:
        raise QtraitError(str(exc)) from None


def make_criteria(q: float, d: float, r: float, t_max: int, alpha: float = 0.05) -> Criteria:
    try:
        return Criteria(q, d, r, t_max, alpha)
    except ValueError as exc:
        raise QtraitError(str(exc)) from None


def floats(text: str, name: str) -> list[float]:
    """Parse a comma-separated list of numbers (``1,2.5,7.5``)."""
    return _numbers(text, name, float, "numbers")


def ints(text: str, name: str) -> list[int]:
    """Parse a comma-separated list of integers (``2,3,5``)."""
    return _numbers(text, name, int, "integers")


def _numbers(text: str, name: str, kind, what: str) -> list:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise QtraitError(f"{name}: expected comma-separated {what}, got {text!r}") from None
    if not values:
        raise QtraitError(f"{name}: give at least one number")
    return values
