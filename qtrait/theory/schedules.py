"""Noise schedules, sampler settings and guidance schedules (numpy only).

These mirror diffusers' ``DDIMScheduler`` and ``DDPMScheduler`` so that the exact Gaussian
sampler map (:mod:`qtrait.theory.sampler`) computes what those schedulers do, step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

BETA_SCHEDULES = ("linear", "scaled_linear")
SCHEDULERS = ("ddim", "ddpm")
PREDICTION_TYPES = ("epsilon", "v_prediction")
SPACINGS = ("leading", "linspace", "trailing", "floor_linspace")
GUIDANCE_KINDS = ("constant", "linear", "cosine", "step", "interval", "custom")


@dataclass(frozen=True)
class NoiseSchedule:
    """The training noise schedule: ``num_train_timesteps`` betas and their products.

    Defaults are DDPM's (linear betas 1e-4..0.02 over 1000 steps); Stable Diffusion uses
    ``scaled_linear`` with 0.00085..0.012 (:meth:`stable_diffusion`).
    """

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, "
                             f"got {self.beta_schedule!r}")
        if self.num_train_timesteps < 2:
            raise ValueError("num_train_timesteps must be >= 2")

    @classmethod
    def stable_diffusion(cls) -> "NoiseSchedule":
        return cls(1000, 0.00085, 0.012, "scaled_linear")

    def betas(self) -> np.ndarray:
        n = self.num_train_timesteps
        if self.beta_schedule == "linear":
            return np.linspace(self.beta_start, self.beta_end, n)
        return np.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, n) ** 2

    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas())


@dataclass(frozen=True)
class Sampler:
    """A sampler: scheduler, step count, timestep spacing and prediction type.

    ``timestep_spacing`` follows diffusers (``leading`` with ``steps_offset``, ``linspace``
    (rounded), ``trailing``), plus ``floor_linspace`` = floor(linspace(T-1, 0, steps)),
    the spacing of theory.md's table. Each step goes from a timestep t to a previous one:
    for ``ddim`` diffusers uses ``t - T // steps`` (``prev="stride"``), for ``ddpm`` and
    for ``floor_linspace`` (theory.md's convention) the next listed timestep
    (``prev="next"``); ``prev`` overrides. Below 0 the previous
    alpha_bar is 1 (diffusers' ``set_alpha_to_one=True``; DDPM always).
    """

    scheduler: str = "ddim"
    steps: int = 50
    noise: NoiseSchedule = field(default_factory=NoiseSchedule)
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    prev: str | None = None

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {self.prediction_type!r}")
        if self.timestep_spacing not in SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {SPACINGS}, "
                             f"got {self.timestep_spacing!r}")
        if not 1 <= self.steps <= self.noise.num_train_timesteps:
            raise ValueError(f"steps must be in 1..{self.noise.num_train_timesteps}, "
                             f"got {self.steps}")
        if self.prev not in (None, "stride", "next"):
            raise ValueError("prev must be 'stride', 'next' or None")

    def timesteps(self) -> np.ndarray:
        """The sampling timesteps, first (noisiest) to last, as diffusers computes them."""
        T, n = self.noise.num_train_timesteps, self.steps
        if self.timestep_spacing == "linspace":
            ts = np.linspace(0, T - 1, n).round()[::-1]
        elif self.timestep_spacing == "floor_linspace":
            ts = np.floor(np.linspace(T - 1, 0, n))
        elif self.timestep_spacing == "leading":
            ts = (np.arange(0, n) * (T // n)).round()[::-1] + self.steps_offset
        else:  # trailing
            ts = np.round(np.arange(T, 0, -T / n)) - 1
        return ts.astype(np.int64)

    def alpha_bar_pairs(self) -> np.ndarray:
        """Array (steps, 3): alpha_bar at t, alpha_bar at the previous timestep, and 1.0
        where the step adds noise (DDPM with t > 0) else 0.0."""
        ac = self.noise.alphas_cumprod()
        ts = self.timesteps()
        prev_rule = self.prev or ("stride" if self.scheduler == "ddim"
                                  and self.timestep_spacing != "floor_linspace" else "next")
        final = 1.0 if (self.set_alpha_to_one or self.scheduler == "ddpm") else ac[0]
        rows = []
        for i, t in enumerate(ts):
            if prev_rule == "stride":
                tp = t - self.noise.num_train_timesteps // self.steps
            else:
                tp = ts[i + 1] if i + 1 < len(ts) else -1
            ab_prev = ac[tp] if tp >= 0 else final
            noisy = 1.0 if (self.scheduler == "ddpm" and t > 0) else 0.0
            rows.append((ac[t], ab_prev, noisy))
        return np.array(rows)


@dataclass(frozen=True)
class GuidanceSchedule:
    """Guidance scale over sampling steps, as a function of progress p in [0, 1]
    (p = 0 the first, noisiest step; p = 1 the last).

    - ``constant``: w everywhere;
    - ``linear``: from ``scale`` at p = 0 to ``end`` at p = 1;
    - ``cosine``: ``end + (scale - end) (1 + cos(pi p)) / 2``;
    - ``step``: ``scale`` while p < ``until``, then ``end``;
    - ``interval``: ``scale`` for ``start`` <= p < ``until``, ``end`` elsewhere;
    - ``custom``: ``fn(p)``, vectorised or not.

    ReDiFine's schedule is a decaying one (``linear`` or ``cosine`` with ``end`` = 1,
    the default end value, i.e. no guidance at the end).
    """

    kind: str = "constant"
    scale: float = 7.5
    end: float = 1.0
    start: float = 0.0
    until: float = 0.5
    fn: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self):
        if self.kind not in GUIDANCE_KINDS:
            raise ValueError(f"guidance schedule must be one of {GUIDANCE_KINDS}, "
                             f"got {self.kind!r}")
        if self.kind == "custom" and self.fn is None:
            raise ValueError("a custom guidance schedule needs fn(progress) -> w")

    def values(self, n_steps: int) -> np.ndarray:
        p = np.linspace(0.0, 1.0, n_steps) if n_steps > 1 else np.zeros(1)
        w, e = float(self.scale), float(self.end)
        if self.kind == "constant":
            return np.full(n_steps, w)
        if self.kind == "linear":
            return w + (e - w) * p
        if self.kind == "cosine":
            return e + (w - e) * (1.0 + np.cos(np.pi * p)) / 2.0
        if self.kind == "step":
            return np.where(p < self.until, w, e)
        if self.kind == "interval":
            return np.where((p >= self.start) & (p < self.until), w, e)
        return np.array([float(self.fn(x)) for x in p])

    def describe(self) -> str:
        if self.kind == "constant":
            return f"constant w={self.scale:g}"
        if self.kind in ("linear", "cosine"):
            return f"{self.kind} {self.scale:g}->{self.end:g}"
        if self.kind == "step":
            return f"step w={self.scale:g} until {self.until:g}, then {self.end:g}"
        if self.kind == "interval":
            return f"w={self.scale:g} in [{self.start:g}, {self.until:g}), else {self.end:g}"
        return "custom"


def as_guidance(g: "GuidanceSchedule | float") -> GuidanceSchedule:
    """A guidance schedule as is, or a number as the constant schedule at that scale."""
    return g if isinstance(g, GuidanceSchedule) else GuidanceSchedule("constant", float(g))
