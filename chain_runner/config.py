"""The chain configuration: every knob of the design, with defaults (TOML on disk).

See ``docs/chain.md`` for the documented file. Unknown keys are refused (a typo must not
silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtrait.errors import QtraitError


@dataclass(frozen=True)
class DesignConfig:
    cfg_scale: float = 3.0          # guidance scale w (at the start of a decaying schedule)
    cfg_schedule: str = "constant"  # constant | linear | cosine (over sampling steps)
    cfg_end: float = 1.0            # scale at the end of a linear/cosine schedule
    p_drop: float = 0.0             # condition drop in finetuning (ReDiFine part 1)
    anchor: str = "base"            # base: fresh LoRA on the base each generation
    probe_fraction: float = 0.25    # probes per generation, as a fraction of N, split evenly


@dataclass(frozen=True)
class SamplerConfig:
    scheduler: str = "ddim"         # ddim | ddpm
    steps: int = 50


@dataclass(frozen=True)
class FinetuneConfig:
    """Finetuning of each generation. These defaults are the CPU miniature's; a Stable
    Diffusion config gets :data:`SD_FINETUNE_DEFAULTS` for the keys it leaves out."""

    lora_rank: int = 8
    lora_alpha: float = 16.0
    steps: int = 400
    batch_size: int = 128
    learning_rate: float = 1e-3


#: Finetuning defaults of the Stable Diffusion backend, for the keys a config leaves out:
#: those of diffusers' text-to-image LoRA example (examples/text_to_image/
#: train_text_to_image_lora.py: --rank 4 with lora_alpha = rank, --train_batch_size 16,
#: --learning_rate 1e-4; with --num_train_epochs 100 and --lr_warmup_steps 500, which are
#: sd.epochs and sd.lr_warmup_steps here). ``finetune.steps`` applies when sd.epochs = 0;
#: a config that gives finetune.steps and no sd.epochs trains that many steps.
SD_FINETUNE_DEFAULTS = {"lora_rank": 4, "lora_alpha": 4.0, "batch_size": 16,
                        "learning_rate": 1e-4}
SD_EPOCHS_DEFAULT = 100


@dataclass(frozen=True)
class BaseConfig:
    """The toy base model ("pretrained" once per machine, cached)."""

    hidden: int = 256
    train_steps: int = 4000
    batch_size: int = 256
    learning_rate: float = 2e-3
    label_dropout: float = 0.15
    seed: int = 0


@dataclass(frozen=True)
class TraitsConfig:
    pca_axes: int = 8               # K principal axes of the features of D_0
    classifier_steps: int = 1500    # training steps of the toy feature network (cached)


@dataclass(frozen=True)
class SDConfig:
    """The Stable Diffusion backend (``backend = "sd"``); ignored by the toy backend."""

    model: str = ""                 # hub id or local folder of a diffusers SD 1.x/2.x pipeline
    revision: str = ""              # hub revision (optional)
    data: str = ""                  # finetuning set D_0: image folder with captions
    captions: str = ""              # captions file of a plain folder (default: found)
    resolution: int = 512           # training and sampling resolution (square, px)
    device: str = "auto"            # auto (cuda if available) | cuda | cuda:N | cpu
    mixed_precision: str = "auto"   # auto (bf16 on CUDA where supported, else fp32) | no |
                                    # bf16 | fp16 (with a gradient scaler); autocast, and
                                    # the frozen UNet and text encoder in it (VAE: fp32)
    gradient_checkpointing: bool = False
    target_modules: str = "to_q,to_k,to_v,to_out.0"  # LoRA targets in the UNet (comma list)
    lr_scheduler: str = "constant"  # any diffusers.optimization.get_scheduler name
    lr_warmup_steps: int = 500      # diffusers' LoRA example's default
    epochs: int = 0                 # > 0: epochs instead of finetune.steps (config files: 100
                                    # unless finetune.steps is given, see SD_FINETUNE_DEFAULTS)
    gradient_accumulation: int = 1
    max_grad_norm: float = 1.0      # gradient clipping (0 = none)
    sample_batch_size: int = 8      # images per sampling batch
    negative_prompt: str = ""       # the unconditional prompt of CFG (and the dropped caption)
    deterministic: bool = False     # torch's deterministic algorithms on the GPU (docs/gpu.md)
    export_images: bool = False     # write every set's images as an imagefolder under
                                    # each generation's artifacts/images/ (docs/gpu.md)


@dataclass(frozen=True)
class FeaturesConfig:
    """Image features of the SD backend and of ``qtrait traits extract``."""

    extractor: str = "open_clip"    # open_clip | efficientnet_lite0
    clip_model: str = "ViT-B-32"    # open_clip model name
    clip_pretrained: str = "laion2b_s34b_b79k"  # open_clip tag, or a local checkpoint file
    clip_config: str = ""           # JSON model config of a custom open_clip architecture
    batch_size: int = 32
    device: str = "auto"
    inception_weights: str = ""     # local pt_inception-2015-12-05 weights: Inception FID
    prdc_k: int = 5                 # nearest neighbours of precision/recall/density/coverage


@dataclass(frozen=True)
class RuntimeConfig:
    threads: int = 2                # fixed torch thread count (determinism)
    cache_dir: str = ""             # default: $QTRAIT_CACHE or ~/.cache/qtrait


@dataclass(frozen=True)
class ChainConfig:
    backend: str = "toy"
    name: str = "chain"
    seed: int = 42
    generations: int = 10           # generations 0..T-1 (0 = the real data)
    images: int = 0                 # guided images per generation; 0 = all of D_0
    design: DesignConfig = field(default_factory=DesignConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    traits: TraitsConfig = field(default_factory=TraitsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sd: SDConfig = field(default_factory=SDConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.backend == "toy":  # the toy backend ignores them (and its hashes stay put)
            for key in ("sd", "features"):
                d.pop(key)
        return d

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def check(self) -> None:
        d = self.design
        problems = []
        if self.backend not in BACKENDS:
            problems.append(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.generations < 1:
            problems.append("generations must be >= 1")
        if self.images < 0:
            problems.append("images must be >= 0 (0 = all of D_0)")
        if d.cfg_schedule not in ("constant", "linear", "cosine"):
            problems.append(f"design.cfg_schedule must be constant, linear or cosine, got "
                            f"{d.cfg_schedule!r}")
        if not 0 <= d.p_drop <= 1:
            problems.append(f"design.p_drop must be in [0, 1], got {d.p_drop}")
        if d.anchor not in ("base", "previous"):
            problems.append(f"design.anchor must be base or previous, got {d.anchor!r}")
        if not 0 <= d.probe_fraction <= 1:
            problems.append("design.probe_fraction must be in [0, 1]")
        if d.cfg_scale < 0:
            problems.append("design.cfg_scale must be >= 0")
        schedulers = SD_SCHEDULERS if self.backend == "sd" else ("ddim", "ddpm")
        if self.sampler.scheduler not in schedulers:
            problems.append(f"sampler.scheduler must be one of {', '.join(schedulers)}, got "
                            f"{self.sampler.scheduler!r}")
        if self.backend == "sd":
            problems += self._check_sd()
        if self.sampler.steps < 1 or self.finetune.steps < 1 or self.base.train_steps < 1:
            problems.append("step counts must be >= 1")
        if problems:
            raise QtraitError("invalid chain config: " + "; ".join(problems))

    def _check_sd(self) -> list[str]:
        s, f = self.sd, self.features
        problems = []
        if not s.model:
            problems.append("sd.model is required (a hub id or a local pipeline folder)")
        if not s.data:
            problems.append("sd.data is required (the finetuning image folder)")
        if s.resolution < 8 or s.resolution % 8:
            problems.append(f"sd.resolution must be a positive multiple of 8, got {s.resolution}")
        if s.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            problems.append(f"sd.mixed_precision must be auto, no, fp16 or bf16, got "
                            f"{s.mixed_precision!r}")
        if not (s.device in ("auto", "cpu", "cuda") or s.device.startswith("cuda:")):
            problems.append(f"sd.device must be auto, cpu, cuda or cuda:N, got {s.device!r}")
        if not [m for m in s.target_modules.split(",") if m.strip()]:
            problems.append("sd.target_modules must name at least one module")
        if s.epochs < 0 or s.lr_warmup_steps < 0:
            problems.append("sd.epochs and sd.lr_warmup_steps must be >= 0")
        if s.gradient_accumulation < 1 or s.sample_batch_size < 1 or f.batch_size < 1:
            problems.append("batch sizes and sd.gradient_accumulation must be >= 1")
        problems += check_features(f)
        return problems


BACKENDS = ("toy", "sd")
#: Sampling schedulers of the SD backend (diffusers classes, configured from the model's).
SD_SCHEDULERS = ("ddim", "ddpm", "pndm", "euler", "euler_ancestral", "dpmsolver++", "unipc")
EXTRACTORS = ("open_clip", "efficientnet_lite0")


def check_features(f: FeaturesConfig) -> list[str]:
    problems = []
    if f.extractor not in EXTRACTORS:
        problems.append(f"features.extractor must be one of {', '.join(EXTRACTORS)}, got "
                        f"{f.extractor!r}")
    if f.prdc_k < 1:
        problems.append("features.prdc_k must be >= 1")
    return problems


_SECTIONS = {"design": DesignConfig, "sampler": SamplerConfig, "finetune": FinetuneConfig,
             "base": BaseConfig, "traits": TraitsConfig, "runtime": RuntimeConfig,
             "sd": SDConfig, "features": FeaturesConfig}


def config_from_dict(raw: dict[str, Any]) -> ChainConfig:
    """Build a config from a mapping; unknown keys are errors."""
    top = {f.name for f in dataclasses.fields(ChainConfig)}
    unknown = [k for k in raw if k not in top]
    if unknown:
        raise QtraitError(f"unknown chain config key(s) {unknown}",
                          hint=f"known keys: {', '.join(sorted(top))}")
    raw = with_backend_defaults(raw)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            if not isinstance(value, dict):
                raise QtraitError(f"chain config [{key}] must be a table")
            names = {f.name for f in dataclasses.fields(cls)}
            bad = [k for k in value if k not in names]
            if bad:
                raise QtraitError(f"unknown key(s) {bad} in [{key}]",
                                  hint=f"known keys: {', '.join(sorted(names))}")
            _check_types(cls, value, f"[{key}] ")
            kwargs[key] = cls(**value)
        else:
            _check_types(ChainConfig, {key: value}, "")
            kwargs[key] = value
    cfg = ChainConfig(**kwargs)
    cfg.check()
    return cfg


def set_dotted(d: dict, dotted: str, value: Any) -> None:
    """Set ``d["a"]["b"] = value`` for ``dotted = "a.b"`` (tables created as needed)."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def with_backend_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the Stable Diffusion finetuning defaults filled in where an SD config
    leaves them out (:data:`SD_FINETUNE_DEFAULTS`); other configs unchanged."""
    if raw.get("backend") != "sd":
        return raw
    ft = raw.get("finetune", {})
    sd = raw.get("sd", {})
    if not isinstance(ft, dict) or not isinstance(sd, dict):
        return raw           # config_from_dict says what is wrong
    out = dict(raw)
    out["finetune"] = {**SD_FINETUNE_DEFAULTS, **ft}
    if "epochs" not in sd:
        out["sd"] = {**sd, "epochs": 0 if "steps" in ft else SD_EPOCHS_DEFAULT}
    return out


def _check_types(cls, values: dict[str, Any], where: str) -> None:
    """Each value must have its default's type (an integer is fine for a float)."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else None)
                for f in dataclasses.fields(cls)}
    for key, value in values.items():
        default = defaults.get(key)
        if default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise QtraitError(f"chain config {where}{key} must be a {type(default).__name__}, "
                              f"got {value!r}")


def read_toml(path: str | Path, what: str) -> dict:
    """A TOML file as a dict; a missing or malformed file is a clear one-line error."""
    path = Path(path)
    if not path.is_file():
        raise QtraitError(f"no such {what}: {path}")
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise QtraitError(f"cannot parse {path}: {exc}") from None


def load_config(path: str | Path) -> ChainConfig:
    raw = read_toml(path, "chain config")
    try:
        return config_from_dict(raw)
    except TypeError as exc:
        raise QtraitError(f"{path}: {exc}") from None
