"""Generated images in a layout other tools read: a Hugging Face ``imagefolder``.

With ``sd.export_images = true`` every generation of an SD chain writes its images under
``generations/gen_NNNN/artifacts/images/``: PNG files in ``guided/``, ``probe_w1/`` and
``probe_uncond/`` and one ``metadata.jsonl`` beside them, a record per image with
``file_name`` (relative to the folder, as the imagefolder convention wants), ``text``
(the prompt; empty for the unconditional probe), ``concept``, ``set``, ``generation`` and
``seed`` (the image's own noise seed; none for generation 0's real images). The folder
loads with ``datasets.load_dataset("imagefolder", data_dir=...)`` and with
``qtrait traits extract`` (given the run directory, or any folder of such generations).
"""

from __future__ import annotations

import io
import json

import numpy as np

#: the folder of a generation's exported images, under its artifacts/
IMAGES_FOLDER = "images"


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def imagefolder_files(sets: dict[str, tuple], generation: int) -> dict[str, bytes]:
    """{path under the images folder: bytes} of an imagefolder holding ``sets``: {set:
    (images (N, H, W, 3) uint8, prompts, concepts, seeds or None)}."""
    files, rows = {}, []
    for set_name, (images, prompts, concepts, seeds) in sets.items():
        for i, image in enumerate(images):
            name = f"{set_name}/{i:06d}.png"
            files[name] = png_bytes(image)
            rows.append({"file_name": name, "text": str(prompts[i]),
                         "concept": str(concepts[i]), "set": set_name,
                         "generation": int(generation),
                         "seed": None if seeds is None else int(seeds[i])})
    files["metadata.jsonl"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return files
