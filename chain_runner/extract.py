"""``qtrait traits extract``: traits of a chain run with any tool, from its images.

CHAIN_DIR is a run directory whose chain exported its images (``sd.export_images``:
``generations/gen_NNNN/artifacts/images/``, :mod:`chain_runner.export`), or holds one
folder per generation, named by its number (``gen_0000``, ``gen_3``,
``generation_12``, ``7``; the last run of digits is the generation). A generation folder is
either an image folder (see :mod:`chain_runner.imagedata`; a ``set`` field in its metadata
labels probe images, default ``guided``) or holds sub-folders ``guided/``, ``probe_w1/``,
``probe_uncond/``, each an image folder. Generation 0 (the real data) fixes the trait basis.
The same extractors, image traits and metrics as the SD backend are used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from qtrait.errors import QtraitError
from qtrait.rundir import RunWriter, make_manifest
from qtrait.rundir import layout

from .config import FeaturesConfig
from .features import RGB_TRAITS, image_traits_rgb, make_extractor
from .imagedata import ImageRecords, list_images, load_images
from .metrics import generation_metrics
from .traits import fit_basis, project, trait_names

_NUM = re.compile(r"(\d+)$")
#: images read at a time by traits extract (memory: pixels of one batch, features of all)
STREAM = 64


def discover(chain_dir: str | Path) -> dict[int, dict[str, tuple[list[Path], list[str],
                                                                  list[str]]]]:
    """{generation: {set: (image paths, captions, concepts)}}."""
    root = Path(chain_dir)
    if not root.is_dir():
        raise QtraitError(f"no such chain folder: {root}")
    gens = {}
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    run_dir = (root / "manifest.json").is_file() and (root / "generations").is_dir()
    if run_dir:       # a run directory whose chain exported its images (sd.export_images)
        folders = sorted(p / "artifacts" / "images"
                         for p in (root / "generations").iterdir() if p.is_dir())
        missing = [p.parents[1].name for p in folders if not p.is_dir()]
        if missing:
            raise QtraitError(f"{root} is a run directory, but generation folder(s) "
                              f"{', '.join(missing)} hold no exported images "
                              "(artifacts/images/)", hint="run the chain with "
                              "sd.export_images = true, or give a folder of image folders")
    for d in folders:
        m = _NUM.search(d.parents[1].name if run_dir else d.name)
        if m is None:
            continue
        g = int(m.group(1))
        if g in gens:
            raise QtraitError(f"two folders of generation {g} in {root}")
        sets: dict[str, tuple[list, list, list]] = {}
        subs = [s for s in layout.SETS if (d / s).is_dir()]
        own_metadata = any((d / m).is_file() for m in ("metadata.jsonl", "metadata.csv"))
        if subs and not own_metadata:     # one image folder per set
            for s in subs:
                rec = list_images(d / s)
                sets[s] = (rec.paths, rec.captions, rec.concepts)
        else:
            _split(list_images(d), sets, d)
        if "guided" not in sets:
            raise QtraitError(f"{d} has no guided images")
        gens[g] = sets
    if not gens:
        raise QtraitError(f"{root} holds no generation folders (named gen_0000, gen_1, ...)")
    if 0 not in gens:
        raise QtraitError(f"{root} has no generation 0 (the real data fixes the trait basis)")
    return dict(sorted(gens.items()))


def _split(rec: ImageRecords, sets: dict, where: Path) -> None:
    for path, cap, con, s in zip(rec.paths, rec.captions, rec.concepts, rec.sets):
        s = s or "guided"
        if s not in layout.SETS:
            raise QtraitError(f"{where}: unknown set {s!r} (expected {', '.join(layout.SETS)})")
        entry = sets.setdefault(s, ([], [], []))
        entry[0].append(path)
        entry[1].append(cap)
        entry[2].append(con)


def extract_traits(chain_dir: str | Path, out: str | Path, features: FeaturesConfig,
                   *, pca_axes: int = 8, resolution: int = 0, design: dict | None = None,
                   progress: bool = True) -> Path:
    from tqdm.auto import tqdm

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QtraitError(f"{out} already exists and is not empty")
    gens = discover(chain_dir)
    extractor = make_extractor(features)
    use_text = extractor.has_text and any(any(c for c in caps) for sets in gens.values()
                                          for _, caps, _ in sets.values())
    computed: dict[int, dict] = {}
    incep: dict[int, np.ndarray] = {}
    inception = None
    if features.inception_weights:      # Inception FID/KID, comparable with the literature
        from .features import InceptionExtractor

        inception = InceptionExtractor(features.inception_weights, extractor.device,
                                       features.batch_size)
    total = sum(len(s) for s in gens.values())
    with tqdm(total=total, desc="extracting traits", disable=not progress) as bar:
        for g, sets in gens.items():
            computed[g] = {}
            for s, (paths, caps, concepts) in sets.items():
                # streamed: STREAM images are read and reduced to features at a time,
                # so memory holds features, not a set's pixels
                phis, others, incs = [], [], []
                for b in range(0, len(paths), STREAM):
                    imgs = load_images(paths[b:b + STREAM], resolution or None)
                    phi_b = extractor.embed(imgs)
                    other = [image_traits_rgb(imgs)]
                    if use_text:
                        other.append(extractor.clip_score(phi_b, caps[b:b + STREAM])[:, None])
                    if inception is not None and s == "guided":
                        incs.append(inception.embed(imgs))
                    phis.append(phi_b)
                    others.append(np.concatenate(other, axis=1))
                if incs:
                    incep[g] = np.concatenate(incs)
                computed[g][s] = (np.concatenate(phis), np.concatenate(others),
                                  np.array(concepts, dtype=str), [p.name for p in paths])
                bar.update(1)
    phi0, _, concepts0, _ = computed[0]["guided"]
    k = min(pca_axes, len(phi0) - 1)
    phi_u = computed[0]["probe_uncond"][0] if "probe_uncond" in computed[0] else None
    basis = fit_basis(phi0, concepts0, phi_u, k)
    names = trait_names(basis) + list(RGB_TRAITS) + (["clip_score"] if use_text else [])
    fields = {"name": Path(chain_dir).resolve().name, "cfg_scale": 0.0,
              "cfg_schedule": "constant", "p_drop": 0.0, "anchor": "base",
              **(design or {})}
    manifest = make_manifest(
        str(fields["name"]), {**fields, "feature_extractor": extractor.description},
        names, producer_name="chain_runner (traits extract)", axes=trait_names(basis),
        basis={"kind": "pca+concept", "file": layout.BASIS, "k": k,
               "units": "generation-0 standard deviations"},
        extra={"source": str(Path(chain_dir).resolve())}, extra_packages=("torch",))
    writer = RunWriter.create(out, manifest, basis=basis)
    variant = getattr(extractor, "clip_variant", "")
    for g, sets in computed.items():
        tables = {}
        for s, (phi, other, concepts, ids) in sets.items():
            values = np.concatenate([project(phi, concepts, basis), other], axis=1)
            df = pd.DataFrame(values, columns=names)
            df.insert(0, "concept", concepts)
            df.insert(0, "image_id", ids)
            tables[s] = df
        phi, other = sets["guided"][0], sets["guided"][1]
        m = generation_metrics(phi0, phi, k=features.prdc_k, extractor=extractor.description,
                               clip_scores=other[:, -1] if use_text else None,
                               clip_variant=variant, reference_inception=incep.get(0),
                               inception=incep.get(g))
        writer.write_generation(g, tables, {"metrics.json": json.dumps(
            {"generation": g, **m}, indent=1).encode()})
    return out
