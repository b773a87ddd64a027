"""The Chain of Diffusion loop: explicit, resumable, atomic per generation.

Generation 0: the real finetuning set D_0 is the guided set; the probes come from the base
model. Generation t >= 1: a LoRA adapter (fresh on the base for anchor = base, continued
from generation t-1 for anchor = previous) is finetuned on D_{t-1} with condition drop
p_drop, then D_t is sampled with the same labels under the guidance schedule, plus a w = 1
probe and an unconditional probe. Every generation is written through qtrait's run
directory; the training images and adapter go to the run's private resume state first, so
a chain killed at any point resumes from its last complete generation and gives the same
result as an uninterrupted run (per-generation seeds, fixed threads, deterministic ops).
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from qtrait.errors import QtraitError
from qtrait.rundir import RunWriter, make_manifest
from qtrait.rundir import io as rio
from qtrait.rundir import layout
from qtrait.theory.schedules import GuidanceSchedule

from .config import ChainConfig, config_from_dict, set_dotted
from .traits import fit_basis, project, trait_names

#: Significant digits kept for per-image trait values (far below sampling noise; keeps the
#: shipped runs small).
DIGITS = 7


def generation_seed(seed: int, generation: int, stream: int) -> int:
    """Independent, reproducible seeds per (run seed, generation, purpose)."""
    return int(np.random.SeedSequence([seed, generation, stream]).generate_state(1)[0])


def make_backend(config: ChainConfig, progress: bool):
    if config.backend == "toy":
        from .toy.backend import ToyBackend

        return ToyBackend(config, progress)
    if config.backend == "sd":
        from .sd.backend import SDBackend

        return SDBackend(config, progress)
    raise QtraitError(f"unknown backend {config.backend!r}")


# Optional backend hooks (the toy backend has none: its labels are its concepts).
def _concepts(backend, labels: np.ndarray) -> np.ndarray:
    """The concept of each label (the SD backend's labels are prompt ids)."""
    f = getattr(backend, "concept_of", None)
    return labels if f is None else f(labels)


def _probe_labels(backend, concepts: np.ndarray) -> np.ndarray:
    f = getattr(backend, "probe_labels", None)
    return concepts if f is None else f(concepts)


#: Private resume-state files of the chain runner (chain_state/gen_0000/), besides
#: qtrait.rundir.layout's STATE_IMAGES and STATE_ADAPTER.
BACKEND_STATE = "backend_{}"
REFERENCE_FEATURES = "reference_features.npz"
#: Per-generation metrics (artifact of each generation, for backends that have them).
METRICS_ARTIFACT = "metrics.json"
#: per-generation finetuning record of a backend that keeps one (losses, learning rates,
#: steps, seconds; docs/run-directory.md)
TRAINING_ARTIFACT = "training.json"


def _guidance(config: ChainConfig) -> np.ndarray:
    d = config.design
    return GuidanceSchedule(d.cfg_schedule, d.cfg_scale, end=d.cfg_end).values(
        config.sampler.steps)


def _probe_concepts(labels: np.ndarray, n: int) -> np.ndarray:
    """``n`` probe labels spread evenly over the concepts (each gets n // C or one more)."""
    classes = np.unique(labels)
    return np.sort(classes[np.arange(n) % len(classes)])


def _export(config: ChainConfig, backend, g: int, guided: tuple, probes: dict) -> dict:
    """{artifact name: bytes} of the generation's images as an imagefolder
    (chain_runner.export), when the SD config asks for it; else {}. ``guided``: (images,
    labels, sampling seed or None for the real data); ``probes``: _probes' output."""
    if config.backend != "sd" or not config.sd.export_images:
        return {}
    from .export import IMAGES_FOLDER, imagefolder_files
    from .sd.backend import per_image_seeds

    def seeds(seed, n):
        return None if seed is None else per_image_seeds(seed, n)
    images, labels, seed = guided
    sets = {"guided": (images, backend.prompts(labels), _concepts(backend, labels),
                       seeds(seed, len(labels)))}
    for s, (imgs, plabels, concepts) in probes.items():
        prompt_labels = np.full(len(plabels), backend.null_label) if s == "probe_uncond" \
            else plabels
        sets[s] = (imgs, backend.prompts(prompt_labels), concepts,
                   seeds(generation_seed(config.seed, g, PROBE_STREAMS[s]), len(plabels)))
    return {f"{IMAGES_FOLDER}/{k}": v for k, v in imagefolder_files(sets, g).items()}


#: the seed stream of each probe set (generation_seed(seed, g, stream))
PROBE_STREAMS = {"probe_w1": 3, "probe_uncond": 4}


def _probes(backend, net, labels, n_probe: int, config: ChainConfig, g: int) -> dict:
    """The w = 1 probe (the model's learned conditional) and the unconditional probe (the
    empty prompt; its images are assigned evenly to the concepts whose statistics they
    serve, e.g. the distance of a concept's mean to the unconditional mean)."""
    ones = np.ones(config.sampler.steps)
    concepts = _probe_concepts(_concepts(backend, labels), n_probe)
    plabels = _probe_labels(backend, concepts)
    w1 = backend.sample(net, plabels, ones,
                        generation_seed(config.seed, g, PROBE_STREAMS["probe_w1"]))
    un = backend.sample(net, np.full(n_probe, backend.null_label), ones,
                        generation_seed(config.seed, g, PROBE_STREAMS["probe_uncond"]))
    # (images, labels the traits are computed with, concepts of the rows)
    return {"probe_w1": (w1, plabels, concepts), "probe_uncond": (un, plabels, concepts)}


def _round(a: np.ndarray) -> np.ndarray:
    return np.array([float(f"{v:.{DIGITS}g}") for v in a.ravel()]).reshape(a.shape)


def _table(features: tuple, concepts, basis, names) -> pd.DataFrame:
    """The set table from the backend's (features, other traits) of its images."""
    phi, other = features
    values = np.concatenate([project(phi, concepts, basis), other], axis=1)
    df = pd.DataFrame(_round(values), columns=names)
    df.insert(0, "concept", [str(c) for c in concepts])
    return df


def _save_state(root: Path, g: int, images, labels, adapter: bytes | None) -> None:
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels)
    rio.atomic_write_bytes(layout.state_dir(root, g) / layout.STATE_IMAGES, buf.getvalue())
    if adapter is not None:
        rio.atomic_write_bytes(layout.state_dir(root, g) / layout.STATE_ADAPTER, adapter)


def _metrics(backend, root: Path, g: int, images, phi, other) -> bytes:
    """metrics.json of a generation's guided set against generation 0's (kept in the
    private state at generation 0)."""
    import json

    from .metrics import generation_metrics

    cur = backend.metric_inputs(images, phi, other)
    path = layout.state_dir(root, 0) / REFERENCE_FEATURES
    if g == 0:
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in cur.items() if k != "clip_scores"})
        rio.atomic_write_bytes(path, buf.getvalue())
    with np.load(path) as z:
        ref = {k: z[k] for k in z.files}
    st = backend.metric_settings
    m = generation_metrics(ref["features"], cur["features"], k=st["k"],
                           extractor=st["extractor"], clip_scores=cur.get("clip_scores"),
                           clip_variant=st["clip_variant"],
                           reference_inception=ref.get("inception"),
                           inception=cur.get("inception"))
    return json.dumps({"generation": g, **m}, indent=1, allow_nan=False).encode()


def _failed(exc: BaseException, g: int, root: Path) -> QtraitError | None:
    """A clear error for a generation that failed (out of memory, NaN loss)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        why = "out of memory"
        hint = ("lower sd.sample_batch_size or finetune.batch_size (raise "
                "sd.gradient_accumulation), or enable sd.gradient_checkpointing / "
                "sd.mixed_precision; then `qtrait chain resume " + str(root) + "`")
    elif isinstance(exc, FloatingPointError):
        why = f"numerical failure ({exc})"
        hint = ("lower finetune.learning_rate, or use sd.mixed_precision = \"bf16\" instead "
                "of fp16; then `qtrait chain resume " + str(root) + "`")
    else:
        return None
    done = f"generations 0..{g - 1} are complete and valid" if g else "no generation is complete"
    return QtraitError(f"generation {g} failed: {why}; {done}", hint=hint)


def _prune_state(root: Path, g: int) -> None:
    """Once generation ``g`` is complete, drop the images of generation g-1's resume state
    (hundreds of MB at SD sizes): a resume needs the last complete generation's images, and
    generation 0's state (the real data, the metrics' reference, the backend's files).
    Adapters are kept (small; anchor = previous continues from them)."""
    if g - 1 >= 1:
        (layout.state_dir(root, g - 1) / layout.STATE_IMAGES).unlink(missing_ok=True)


def _load_state(root: Path, g: int):
    path = layout.state_dir(root, g) / layout.STATE_IMAGES
    if not path.exists():
        raise QtraitError(f"cannot resume: the resume state of generation {g} is missing "
                          f"({layout.relative(root, path)})",
                          hint="example runs ship without resume state; start a new chain")
    with np.load(path) as z:
        images, labels = z["images"], z["labels"]
    adapter = layout.state_dir(root, g) / layout.STATE_ADAPTER
    return images, labels, (adapter.read_bytes() if adapter.exists() else None)


def run_chain(config: ChainConfig, out: str | Path, progress: bool = True) -> Path:
    """Start a new chain at ``out`` (which must not exist or be empty)."""
    config.check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QtraitError(f"{out} already exists and is not empty",
                          hint="use `qtrait chain resume RUN` to continue a chain")
    backend = make_backend(config, progress)
    images0, labels0 = backend.real_data()
    n = len(labels0)
    n_probe = int(round(config.design.probe_fraction * n / 2))
    concepts0 = _concepts(backend, labels0)
    n_concepts = len(np.unique(concepts0))
    if 0 < n_probe < 2 * n_concepts:
        raise QtraitError(f"design.probe_fraction = {config.design.probe_fraction} gives "
                          f"{n_probe} probe images per set for {n_concepts} concepts; each "
                          "concept needs at least 2 (raise it, or set 0 for no probes)")
    backend.prepare()
    base = backend.base_model()
    probes = {}
    if n_probe:
        probes = _probes(backend, base, labels0, n_probe, config, 0)
    # features of generation 0's sets, computed once: they fix the basis and give the traits
    feats = {"guided": (backend.features(images0, labels0), concepts0)}
    feats.update({s: (backend.features(imgs, plabels), concepts)
                  for s, (imgs, plabels, concepts) in probes.items()})
    phi_u = feats["probe_uncond"][0][0] if "probe_uncond" in feats else None
    basis = fit_basis(feats["guided"][0][0], concepts0, phi_u, config.traits.pca_axes)
    names = trait_names(basis) + list(backend.other_traits)
    d = config.design
    design = {"name": config.name, **backend.describe(n), "cfg_scale": float(d.cfg_scale),
              "cfg_schedule": d.cfg_schedule, "cfg_schedule_params": {"end": d.cfg_end},
              "p_drop": float(d.p_drop), "anchor": d.anchor, "images_per_generation": n,
              "probe_sizes": {"probe_w1": n_probe, "probe_uncond": n_probe},
              "sampler": (backend.sampler_description()
                          if hasattr(backend, "sampler_description") else
                          {"scheduler": config.sampler.scheduler,
                           "steps": config.sampler.steps, "prediction_type": "v_prediction"}),
              "seeds": {"run": config.seed, "base": config.base.seed}}
    manifest = make_manifest(
        config.name, design, names, producer_name=f"chain_runner ({config.backend})",
        axes=trait_names(basis),
        basis={"kind": "pca+concept", "file": layout.BASIS, "k": config.traits.pca_axes,
               "units": "generation-0 standard deviations"},
        extra={"chain_config": config.to_dict(), "config_hash": config.hash()},
        extra_packages=("torch", "diffusers", "peft"))
    writer = RunWriter.create(out, manifest, basis=basis)
    _save_state(out, 0, images0, labels0, None)
    for name, blob in getattr(backend, "state_files", dict)().items():
        rio.atomic_write_bytes(layout.state_dir(out, 0) / BACKEND_STATE.format(name), blob)
    tables = {s: _table(f, concepts, basis, names) for s, (f, concepts) in feats.items()}
    artifacts = {"grid.png": backend.grid_png(images0, labels0),
                 **_export(config, backend, 0, (images0, labels0, None), probes)}
    if getattr(backend, "has_metrics", False):
        artifacts[METRICS_ARTIFACT] = _metrics(backend, out, 0, images0, *feats["guided"][0])
    writer.write_generation(0, tables, artifacts)
    _continue(writer, config, backend, basis, names, progress)
    return out


#: settings a resume may change (``qtrait chain resume --set KEY=VALUE``): how the chain is
#: computed, not what it is. The guided images do not depend on the sampling batch (each
#: image has its own noise generator); precision, batch size and gradient accumulation of
#: finetuning change the numbers within floating-point and optimisation noise, which is why
#: each override is recorded in the manifest (extra.resume_overrides).
RESUME_OVERRIDABLE = ("sd.sample_batch_size", "sd.mixed_precision",
                      "sd.gradient_checkpointing", "sd.gradient_accumulation", "sd.device",
                      "sd.deterministic", "finetune.batch_size", "features.batch_size",
                      "features.device", "runtime.threads")


def apply_overrides(raw: dict, overrides: dict[str, object]) -> tuple[dict, dict]:
    """(the chain config ``raw`` with ``overrides`` (dotted keys) applied, {key: [old,
    new]} of what changed). QtraitError for a key that is not a run-time setting."""
    bad = [k for k in overrides if k not in RESUME_OVERRIDABLE]
    if bad:
        raise QtraitError(f"cannot change {', '.join(bad)} on resume: only run-time settings "
                          f"can be ({', '.join(RESUME_OVERRIDABLE)}); the design stays as "
                          "the chain began")
    out = copy.deepcopy(raw)
    changed = {}
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        old = out.get(section, {}).get(name)
        if old != value:
            changed[key] = [old, value]
        set_dotted(out, key, value)
    return out, changed


def resume_chain(run: str | Path, progress: bool = True,
                 overrides: dict[str, object] | None = None) -> Path:
    """Continue a chain from its last complete generation; ``overrides`` change run-time
    settings (:data:`RESUME_OVERRIDABLE`), recorded in the manifest."""
    writer = RunWriter.resume(run)
    extra = writer.manifest.get("extra", {})
    if "chain_config" not in extra:
        raise QtraitError(f"{run} was not written by the chain runner (no chain config in its "
                          "manifest)")
    raw, changed = apply_overrides(extra["chain_config"], overrides or {})
    config = config_from_dict(raw)
    if not writer.complete_generations:
        raise QtraitError(f"{run} has no complete generation; start it again")
    if writer.next_generation >= config.generations:
        return Path(run)  # nothing left to do
    _load_state(writer.root, writer.next_generation - 1)  # refuse before touching anything
    for g in writer.incomplete_generations:
        writer.discard_incomplete(g)
    if changed:
        from qtrait.rundir.manifest import utc_now

        record = {"from_generation": writer.next_generation, "changes": changed,
                  "at": utc_now()}
        writer.update_manifest(extra={**extra, "chain_config": config.to_dict(),
                                      "resume_overrides": [*extra.get("resume_overrides", []),
                                                           record]})
    from qtrait.rundir import open_run

    basis = open_run(run).basis()
    backend = make_backend(config, progress).prepare()
    if hasattr(backend, "restore_state"):
        d = layout.state_dir(writer.root, 0)
        backend.restore_state({p.name[len(BACKEND_STATE.format("")):]: p.read_bytes()
                               for p in d.glob(BACKEND_STATE.format("*"))})
    _continue(writer, config, backend, basis, writer.traits, progress)
    return Path(run)


def _continue(writer: RunWriter, config: ChainConfig, backend, basis, names, progress) -> None:
    from tqdm.auto import tqdm

    root = writer.root
    guidance = _guidance(config)
    start = writer.next_generation
    n_probe = writer.manifest["design"]["probe_sizes"]["probe_w1"]
    with tqdm(total=config.generations, initial=start, desc=f"chain {config.name}",
              disable=not progress) as bar:
        for g in range(start, config.generations):
            prev_images, labels, prev_adapter = _load_state(root, g - 1)
            previous = (backend.load_adapter(prev_adapter)
                        if config.design.anchor == "previous" and prev_adapter else None)
            # the generation's folder exists from here on; its completion record is written
            # only when the block ends without error (a crash leaves it incomplete, and
            # resume discards and redoes it)
            try:
                with writer.generation(g) as gw:
                    _generation(gw, backend, config, g, prev_images, labels, previous,
                                guidance, basis, names, n_probe)
                _prune_state(root, g)
            except Exception as exc:
                error = _failed(exc, g, root)
                if error is None:
                    raise
                raise error from exc
            bar.update(1)


def _generation(gw, backend, config, g, prev_images, labels, previous, guidance, basis,
                names, n_probe) -> None:
    root = gw.run.root
    net = backend.finetune(prev_images, labels, generation_seed(config.seed, g, 0), previous)
    training = getattr(backend, "last_training", None)
    if training is not None:     # the backend records its finetuning (SD: losses, lr, time)
        gw.write_artifact(TRAINING_ARTIFACT, json.dumps(training).encode())
    seed = generation_seed(config.seed, g, 1)
    images = backend.sample(net, labels, guidance, seed)
    feats = backend.features(images, labels)
    gw.write_set("guided", _table(feats, _concepts(backend, labels), basis, names))
    probes = _probes(backend, net, labels, n_probe, config, g) if n_probe else {}
    for s, (imgs, plabels, concepts) in probes.items():
        gw.write_set(s, _table(backend.features(imgs, plabels), concepts, basis, names))
    for name, blob in _export(config, backend, g, (images, labels, seed), probes).items():
        gw.write_artifact(name, blob)
    gw.write_artifact("grid.png", backend.grid_png(images, labels))
    for name, blob in getattr(backend, "artifacts", lambda n: {})(net).items():
        gw.write_artifact(name, blob)
    if getattr(backend, "has_metrics", False):
        gw.write_artifact(METRICS_ARTIFACT, _metrics(backend, root, g, images, *feats))
    _save_state(root, g, images, labels, backend.adapter_bytes(net))
