"""The Stable Diffusion backend: everything the chain loop needs, on a diffusers pipeline.

Labels are prompt ids: row ``i`` of the prompt table (caption, concept) of D_0; the
unconditional label ``-1`` is the empty (negative) prompt. The finetuned "net" is the
LoRA state (peft keys) or None for the base model; one UNet carries it in turn.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qtrait.errors import QtraitError

from ..config import ChainConfig
from ..features import RGB_TRAITS, image_traits_rgb, make_extractor, resolve_device

#: Sampling schedulers by config name (configured from the model's own scheduler config).
SCHEDULERS = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "pndm": "PNDMScheduler",
              "euler": "EulerDiscreteScheduler",
              "euler_ancestral": "EulerAncestralDiscreteScheduler",
              "dpmsolver++": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler"}
#: The LoRA file of every generation (diffusers format, ``load_lora_weights`` reads it).
LORA_ARTIFACT = "pytorch_lora_weights.safetensors"
PROMPTS_STATE = "prompts.json"


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:2] if x.isdigit())


def per_image_seeds(seed: int, n: int) -> list[int]:
    """The noise seed of each of the n images sampled with ``seed``."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def per_image_generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per image: image i's noise does not depend on the batch."""
    return [torch.Generator().manual_seed(s) for s in per_image_seeds(seed, n)]


def resolve_precision(choice: str, device: torch.device) -> str:
    """The precision of the frozen UNet and text encoder and of autocast: ``auto`` is bf16
    on a CUDA device that supports it, else fp32 ("no"); fp16 and bf16 need CUDA."""
    cuda = device.type == "cuda"
    if choice == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if choice != "no" and not cuda:
        raise QtraitError(f"sd.mixed_precision = {choice!r} needs a CUDA device",
                          hint="use \"auto\" or \"no\" on CPU")
    return choice


def set_deterministic() -> None:
    """The torch settings that make a GPU run repeatable on the same machine and versions
    (sd.deterministic; docs/gpu.md): deterministic algorithms (an op without one
    raises), no cuDNN autotuning, and cuBLAS's fixed workspace."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def check_finite(x: torch.Tensor, what: str) -> None:
    """FloatingPointError (a numerical failure of the generation, chain.py) when ``x`` holds
    NaN or inf."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise FloatingPointError(f"non-finite {what}: {int(bad.sum())} of {x.numel()} "
                                 "values are NaN or inf")


class SDBackend:
    name = "sd"
    null_label = -1
    has_metrics = True

    def __init__(self, config: ChainConfig, progress: bool = True):
        self.config = config
        self.progress = progress
        self.prepared = False
        self.captions: list[str] = []
        self.concepts: np.ndarray = np.array([], dtype=str)
        self._active = None   # id of the adapter state the UNet carries (None: base)

    # -- set-up ------------------------------------------------------------------------------
    def prepare(self) -> "SDBackend":
        if self.prepared:
            return self
        import diffusers
        from diffusers import DDPMScheduler, StableDiffusionPipeline

        c, s = self.config, self.config.sd
        torch.set_num_threads(c.runtime.threads)
        self.device = resolve_device(s.device)
        self.precision = resolve_precision(s.mixed_precision, self.device)
        self.dtype = {"no": torch.float32, "fp16": torch.float16,
                      "bf16": torch.bfloat16}[self.precision]
        if s.deterministic:
            set_deterministic()
        model = s.model
        local = Path(model).expanduser()
        if local.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
            if not (local / "model_index.json").is_file():
                raise QtraitError(f"sd.model {model!r} is not a diffusers pipeline folder "
                                  "(no model_index.json)")
            model = str(local)
        # diffusers >= 0.40 renamed torch_dtype to dtype (the old name warns)
        new = "dtype" in inspect.signature(diffusers.DiffusionPipeline.to).parameters or \
            _version(diffusers.__version__) >= (0, 40)
        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                model, revision=s.revision or None, safety_checker=None,
                requires_safety_checker=False, **{"dtype" if new else "torch_dtype": self.dtype})
        except (OSError, ValueError) as exc:
            raise QtraitError(f"cannot load the pipeline {model!r}: "
                              f"{str(exc).splitlines()[0]}",
                              hint="give a local folder, or a hub id on a machine with access "
                              "and the weights in the Hugging Face cache") from None
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        # the VAE stays in float32: SD's VAE overflows in fp16 (NaN images), and it is a
        # small share of the time; latents are kept in float32 between UNet calls
        if pipe.vae.dtype != torch.float32:
            pipe.vae.to(torch.float32)
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.requires_grad_(False)
        self.unet = pipe.unet
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise QtraitError(f"unsupported prediction type {self.prediction_type!r}")
        self.sampler_cls = getattr(diffusers, SCHEDULERS[c.sampler.scheduler])
        self.extractor = make_extractor(c.features)
        self.inception = None
        if c.features.inception_weights:
            from ..features import InceptionExtractor

            self.inception = InceptionExtractor(c.features.inception_weights,
                                                self.extractor.device, c.features.batch_size)
        self.model_name = s.model
        self._text_cache: dict[str, torch.Tensor] = {}
        self.prepared = True
        return self

    @property
    def other_traits(self) -> tuple[str, ...]:
        return RGB_TRAITS + (("clip_score",) if self.extractor.has_text else ())

    def describe(self, n: int) -> dict:
        return {"base_model": self.model_name,
                "dataset": f"{self.config.sd.data} ({n} images used)",
                "feature_extractor": self.extractor.description,
                "resolution": self.config.sd.resolution,
                "prediction_type": self.prediction_type,
                "precision": self.precision}

    def sampler_description(self) -> dict:
        return {"scheduler": self.config.sampler.scheduler, "steps": self.config.sampler.steps,
                "prediction_type": self.prediction_type}

    # -- data and prompts --------------------------------------------------------------------
    def real_data(self) -> tuple[np.ndarray, np.ndarray]:
        from ..imagedata import list_images, load_images

        s = self.config.sd
        rec = list_images(s.data, s.captions)
        n = self.config.images or len(rec.paths)
        if n > len(rec.paths):
            raise QtraitError(f"images = {n}, but {s.data} holds {len(rec.paths)}")
        idx = np.arange(len(rec.paths))
        if n < len(idx):
            idx = np.sort(np.random.default_rng(self.config.seed).choice(len(idx), n, False))
        self.captions = [rec.captions[i] for i in idx]
        self.concepts = np.array([rec.concepts[i] for i in idx], dtype=str)
        images = load_images([rec.paths[i] for i in idx], s.resolution, self.progress,
                             "reading the finetuning set")
        return images, np.arange(n)

    def state_files(self) -> dict[str, bytes]:
        return {PROMPTS_STATE: json.dumps({"captions": self.captions,
                                           "concepts": self.concepts.tolist()}).encode()}

    def restore_state(self, files: dict[str, bytes]) -> None:
        d = json.loads(files[PROMPTS_STATE])
        self.captions, self.concepts = d["captions"], np.array(d["concepts"], dtype=str)

    def concept_of(self, labels: np.ndarray) -> np.ndarray:
        return self.concepts[np.asarray(labels)]

    def probe_labels(self, concepts: np.ndarray) -> np.ndarray:
        """Prompt ids of probe images of ``concepts``: each concept's captions in turn."""
        out, seen = [], {}
        for c in concepts:
            rows = np.flatnonzero(self.concepts == c)
            out.append(rows[seen.get(c, 0) % len(rows)])
            seen[c] = seen.get(c, 0) + 1
        return np.array(out, dtype=np.int64)

    def prompts(self, labels: np.ndarray) -> list[str]:
        neg = self.config.sd.negative_prompt
        return [neg if lab < 0 else self.captions[lab] for lab in labels]

    @torch.no_grad()
    def _embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        tok = self.pipe.tokenizer
        for s in range(0, len(missing), 64):
            chunk = missing[s:s + 64]
            ids = tok(chunk, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(self.device)
            emb = self.pipe.text_encoder(ids)[0]
            for p, e in zip(chunk, emb):
                self._text_cache[p] = e
        return torch.stack([self._text_cache[p] for p in prompts])

    # -- adapters ----------------------------------------------------------------------------
    def _lora_config(self):
        from peft import LoraConfig

        f, s = self.config.finetune, self.config.sd
        return LoraConfig(r=f.lora_rank, lora_alpha=f.lora_alpha, init_lora_weights="gaussian",
                          target_modules=[m.strip() for m in s.target_modules.split(",")
                                          if m.strip()])

    def _activate(self, state: dict | None) -> None:
        """Put the LoRA ``state`` (None: no adapter) on the UNet."""
        from peft import set_peft_model_state_dict

        if self._active is not None and self._active == (id(state) if state else None):
            return
        if getattr(self.unet, "peft_config", None):
            self.unet.unload_lora()
        self._active = None
        if state is not None:
            self._add_adapter()
            set_peft_model_state_dict(self.unet, state, adapter_name="default")
            self._active = id(state)

    def _add_adapter(self) -> None:
        try:
            self.unet.add_adapter(self._lora_config())
        except ValueError as exc:  # e.g. a target module the UNet does not have
            raise QtraitError(f"cannot put LoRA on the UNet: {str(exc).splitlines()[0]}",
                              hint="check sd.target_modules") from None

    def base_model(self):
        return None

    def adapter_bytes(self, net) -> bytes | None:
        from safetensors.torch import save

        return None if net is None else save({k: v.contiguous() for k, v in net.items()})

    @staticmethod
    def load_adapter(blob: bytes) -> dict:
        from safetensors.torch import load

        return load(blob)

    def lora_file_bytes(self, net: dict) -> bytes:
        """The adapter in diffusers' LoRA format (with rank/alpha metadata), as bytes."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers

        layers = convert_state_dict_to_diffusers(dict(net))
        with tempfile.TemporaryDirectory() as tmp:
            StableDiffusionPipeline.save_lora_weights(
                tmp, unet_lora_layers=layers, safe_serialization=True,
                unet_lora_adapter_metadata=self._lora_config().to_dict())
            return (Path(tmp) / LORA_ARTIFACT).read_bytes()

    def artifacts(self, net) -> dict[str, bytes]:
        return {} if net is None else {LORA_ARTIFACT: self.lora_file_bytes(net)}

    # -- finetuning --------------------------------------------------------------------------
    @torch.no_grad()
    def _latent_moments(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        vae, means, stds = self.pipe.vae, [], []
        for s in range(0, len(images), self.config.sd.sample_batch_size):
            x = torch.as_tensor(images[s:s + self.config.sd.sample_batch_size]).permute(0, 3, 1, 2)
            x = (x.to(self.device, torch.float32) / 127.5 - 1.0).to(vae.dtype)
            dist = vae.encode(x).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
        return torch.cat(means), torch.cat(stds)

    def finetune(self, images: np.ndarray, labels: np.ndarray, seed: int,
                 previous_adapter: dict | None = None):
        from diffusers.optimization import get_scheduler
        from peft import get_peft_model_state_dict, set_peft_model_state_dict
        from tqdm.auto import tqdm

        c, f, s = self.config, self.config.finetune, self.config.sd
        self._activate(None)
        mean, std = self._latent_moments(images)
        scale = self.pipe.vae.config.scaling_factor
        prompts = self.prompts(labels)
        cond = self._embed_prompts(prompts).float()
        null = self._embed_prompts([s.negative_prompt])[0].float()
        torch.manual_seed(seed)  # LoRA initialisation
        self._add_adapter()
        params = [p for p in self.unet.parameters() if p.requires_grad]
        for p in params:  # trainable LoRA weights in float32 (mixed precision)
            p.data = p.data.float()
        if previous_adapter is not None:
            # loaded after the upcast: the previous generation's float32 LoRA keeps its
            # precision (loaded into half-precision layers it would be rounded first)
            set_peft_model_state_dict(self.unet, previous_adapter, adapter_name="default")
        n, batch = len(labels), min(f.batch_size, len(labels))
        per_epoch = max(1, math.ceil(n / (batch * s.gradient_accumulation)))
        steps = per_epoch * s.epochs if s.epochs > 0 else f.steps
        opt = torch.optim.AdamW(params, lr=f.learning_rate, weight_decay=1e-2)
        lr_sched = get_scheduler(s.lr_scheduler, opt, num_warmup_steps=s.lr_warmup_steps,
                                 num_training_steps=steps)
        if s.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        gen = torch.Generator().manual_seed(seed)
        T = self.noise_scheduler.config.num_train_timesteps
        autocast = torch.autocast(self.device.type, dtype=self.dtype,
                                  enabled=self.precision != "no")
        # fp16 gradients underflow without loss scaling; bf16 has float32's range
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        order, pos = torch.randperm(n, generator=gen), 0
        self.unet.train()
        losses, lrs = [], []
        t0 = time.perf_counter()
        try:
            with tqdm(total=steps, desc="  finetuning (LoRA)", leave=False,
                      disable=not self.progress) as bar:
                for step in range(steps):
                    total = 0.0
                    for _ in range(s.gradient_accumulation):
                        if pos + batch > n:
                            order, pos = torch.randperm(n, generator=gen), 0
                        idx = order[pos:pos + batch]
                        pos += batch
                        eps = torch.randn(mean[idx].shape, generator=gen)
                        x0 = (mean[idx] + std[idx] * eps.to(self.device)) * scale
                        noise = torch.randn(x0.shape, generator=gen).to(self.device)
                        t = torch.randint(0, T, (len(idx),), generator=gen).to(self.device)
                        drop = (torch.rand(len(idx), generator=gen) < c.design.p_drop)
                        emb = torch.where(drop.to(self.device)[:, None, None], null[None],
                                          cond[idx.to(self.device)])
                        noisy = self.noise_scheduler.add_noise(x0, noise, t)
                        target = (noise if self.prediction_type == "epsilon"
                                  else self.noise_scheduler.get_velocity(x0, noise, t))
                        with autocast:
                            pred = self.unet(noisy.to(self.unet.dtype), t,
                                             emb.to(self.unet.dtype)).sample
                        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"non-finite finetuning loss at step {step}")
                        scaler.scale(loss / s.gradient_accumulation).backward()
                        total += loss.item() / s.gradient_accumulation
                    scaler.unscale_(opt)
                    if s.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                    lrs.append(float(lr_sched.get_last_lr()[0]))
                    scaler.step(opt)      # skips the step if the scaled gradients overflowed
                    scaler.update()
                    lr_sched.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(total)
                    bar.update(1)
        finally:
            self.unet.eval()
            if s.gradient_checkpointing:
                self.unet.disable_gradient_checkpointing()
        #: what the chain records of this generation's finetuning (artifacts/training.json)
        self.last_training = {
            "steps": steps, "batch_size": batch,
            "gradient_accumulation": s.gradient_accumulation,
            "images": n, "lr_scheduler": s.lr_scheduler, "lr_warmup_steps": s.lr_warmup_steps,
            "lora_rank": f.lora_rank, "lora_alpha": f.lora_alpha,
            "mixed_precision": self.precision,
            "seconds": round(time.perf_counter() - t0, 3),
            "loss": losses, "learning_rate": lrs}
        state = {k: v.detach().to("cpu", torch.float32).clone()
                 for k, v in get_peft_model_state_dict(self.unet).items()}
        self._active = id(state)
        return state

    # -- sampling ----------------------------------------------------------------------------
    def _sampler(self):
        return self.sampler_cls.from_config(self.pipe.scheduler.config)

    @torch.no_grad()
    def sample(self, net, labels: np.ndarray, guidance: np.ndarray, seed: int) -> np.ndarray:
        from tqdm.auto import tqdm

        self._activate(net)
        c, s = self.config, self.config.sd
        steps, bs = c.sampler.steps, s.sample_batch_size
        vae, unet = self.pipe.vae, self.unet
        lat_side = s.resolution // self.pipe.vae_scale_factor
        shape = (unet.config.in_channels, lat_side, lat_side)
        gens = per_image_generators(seed, len(labels))
        null = self._embed_prompts([s.negative_prompt])
        out = []
        batches = -(-len(labels) // bs)
        with tqdm(total=steps * batches, desc=f"  sampling {len(labels)} images", leave=False,
                  disable=not self.progress) as bar:
            for b in range(0, len(labels), bs):
                lab, g = labels[b:b + bs], gens[b:b + bs]
                sched = self._sampler()
                sched.set_timesteps(steps, device=self.device)
                takes_gen = "generator" in inspect.signature(sched.step).parameters
                cond = self._embed_prompts(self.prompts(lab))
                unc = null.expand(len(lab), -1, -1)
                x = torch.stack([torch.randn(shape, generator=gi) for gi in g])
                x = x.to(self.device, torch.float32) * sched.init_noise_sigma
                for i, t in enumerate(sched.timesteps):
                    w = float(guidance[min(i, len(guidance) - 1)])
                    xin = sched.scale_model_input(x, t).to(unet.dtype)
                    if w == 1.0:
                        eps = unet(xin, t, cond).sample.float()
                    else:
                        e = unet(torch.cat([xin, xin]), t, torch.cat([unc, cond])).sample
                        e_u, e_c = e.float().chunk(2)
                        eps = e_u + w * (e_c - e_u)
                    kw = {"generator": g} if takes_gen else {}
                    x = sched.step(eps, t, x, **kw).prev_sample.float()
                    bar.update(1)
                check_finite(x, f"latents of images {b}..{b + len(lab) - 1} after sampling")
                img = vae.decode(x.to(vae.dtype) / vae.config.scaling_factor).sample.float()
                check_finite(img, f"decoded images {b}..{b + len(lab) - 1}")
                img = ((img / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
                out.append(img.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)

    # -- traits and metrics ------------------------------------------------------------------
    def features(self, images: np.ndarray, labels: np.ndarray):
        phi = self.extractor.embed(images)
        other = [image_traits_rgb(images)]
        if self.extractor.has_text:
            prompts = self.prompts(np.maximum(np.asarray(labels), -1))
            other.append(self.extractor.clip_score(phi, prompts)[:, None])
        self._last = (phi, other[-1][:, 0] if self.extractor.has_text else None, images)
        return phi, np.concatenate(other, axis=1)

    def metric_inputs(self, images: np.ndarray, phi: np.ndarray, other: np.ndarray) -> dict:
        """What generation_metrics needs of one guided set."""
        d = {"features": phi}
        if self.extractor.has_text:
            d["clip_scores"] = other[:, -1]
        if self.inception is not None:
            d["inception"] = self.inception.embed(images)
        return d

    @property
    def metric_settings(self) -> dict:
        return {"k": self.config.features.prdc_k, "extractor": self.extractor.description,
                "clip_variant": getattr(self.extractor, "clip_variant", "")}

    @staticmethod
    def grid_png(images: np.ndarray, labels: np.ndarray, n: int = 16, tile: int = 128) -> bytes:
        from PIL import Image

        ims = [Image.fromarray(im).resize((tile, tile), Image.BICUBIC) for im in images[:n]]
        cols = min(len(ims), 4)
        rows = -(-len(ims) // cols)
        grid = Image.new("RGB", (cols * tile, rows * tile))
        for i, im in enumerate(ims):
            grid.paste(im, ((i % cols) * tile, (i // cols) * tile))
        buf = io.BytesIO()
        grid.save(buf, format="PNG", optimize=True)
        return buf.getvalue()
