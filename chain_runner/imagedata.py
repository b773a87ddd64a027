"""Image folders with captions: the finetuning set of the SD backend and the generations
read by ``qtrait traits extract``.

Two layouts are read (the first that applies):

1. the Hugging Face ``imagefolder`` convention: ``metadata.jsonl`` (or ``metadata.csv``) in
   the folder (or in its ``train/`` split), one record per image with ``file_name`` and a
   caption column (``text``, ``caption`` or ``prompt``), optionally ``concept`` and ``set``;
2. a plain folder of images with a captions file: the configured one, else
   ``captions.jsonl``, ``captions.csv``, ``captions.tsv`` or ``captions.txt`` (one
   ``file<TAB>caption`` per line), else a ``.txt`` file beside each image.

Without a ``concept`` field every image belongs to the concept ``all``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtrait.errors import QtraitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_KEYS = ("text", "caption", "prompt")


@dataclass
class ImageRecords:
    paths: list[Path]
    captions: list[str]
    concepts: list[str]
    sets: list[str | None]


def _records_from_rows(folder: Path, rows: list[dict], source: str) -> ImageRecords:
    paths, caps, concepts, sets = [], [], [], []
    for i, row in enumerate(rows):
        name = row.get("file_name")
        if not name:
            raise QtraitError(f"{source}: record {i + 1} has no file_name")
        key = next((k for k in CAPTION_KEYS if k in row), None)
        caption = "" if key is None or row[key] is None else str(row[key])
        path = folder / name
        if not path.is_file():
            raise QtraitError(f"{source}: record {i + 1} names a missing image {name}")
        paths.append(path)
        caps.append(caption)
        concepts.append(str(row.get("concept") or "all"))
        sets.append(row.get("set") or None)
    if not paths:
        raise QtraitError(f"{source} lists no images")
    return ImageRecords(paths, caps, concepts, sets)


def _read_table(path: Path) -> list[dict]:
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text("utf-8").splitlines()
                    if line.strip()]
        if path.suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh, delimiter="," if path.suffix == ".csv"
                                           else "\t"))
        rows = []
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                name, _, caption = line.partition("\t")
                rows.append({"file_name": name.strip(), "text": caption.strip()})
        return rows
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise QtraitError(f"cannot read {path}: {exc}") from None


def list_images(folder: str | Path, captions: str = "") -> ImageRecords:
    """The images of ``folder`` with their captions, concepts and sets (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QtraitError(f"no such image folder: {folder}")
    if captions:
        path = folder / captions if not Path(captions).is_absolute() else Path(captions)
        if not path.is_file():
            raise QtraitError(f"no such captions file: {path}")
        return _records_from_rows(path.parent, _read_table(path), str(path))
    for base in (folder, folder / "train"):
        for name in ("metadata.jsonl", "metadata.csv", "captions.jsonl", "captions.csv",
                     "captions.tsv", "captions.txt"):
            if (base / name).is_file():
                return _records_from_rows(base, _read_table(base / name), str(base / name))
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise QtraitError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    caps = []
    for p in images:
        side = p.with_suffix(".txt")
        caps.append(side.read_text("utf-8").strip() if side.is_file() else "")
    return ImageRecords(images, caps, ["all"] * len(images), [None] * len(images))


def load_image(path: Path, resolution: int | None) -> np.ndarray:
    """An RGB uint8 array; resized (shorter side) and centre-cropped to ``resolution``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise QtraitError(f"cannot read image {path}: {exc}") from None
    if resolution:
        w, h = img.size
        s = resolution / min(w, h)
        img = img.resize((max(resolution, round(w * s)), max(resolution, round(h * s))),
                         Image.BICUBIC)
        w, h = img.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    return np.asarray(img, dtype=np.uint8)


def load_images(paths: list[Path], resolution: int | None, progress: bool = False,
                desc: str = "reading images") -> np.ndarray:
    from tqdm.auto import tqdm

    arrays = [load_image(p, resolution) for p in tqdm(paths, desc=desc, leave=False,
                                                        disable=not progress)]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise QtraitError(f"images of different sizes {sorted(shapes)[:3]}; set a resolution")
    return np.stack(arrays)
