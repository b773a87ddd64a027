"""Peak memory of the image traits (chain_runner.features.image_traits_rgb) on 1,000
images of 512 x 512, streamed in chunks, against the unchunked computation measured in
the same run (on 64 images, scaled per image: its work arrays grow linearly with N).

    python bench/bench_trait_memory.py [--images 1000] [--side 512]

Peak: tracemalloc's peak of numpy allocations during the call, above the input images
(numpy reports its allocations to tracemalloc), so the figure is the computation's own.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak(fn, *args) -> tuple[float, float]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    fn(*args)
    seconds = time.perf_counter() - t0
    top = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (top - base) / 2**30, seconds


def main(argv=None) -> int:
    from chain_runner.features import TRAIT_CHUNK, image_traits_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--side", type=int, default=512)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (a.images, a.side, a.side, 3), dtype=np.uint8)
    small = images[:64]
    whole_gb, _ = peak(lambda x: image_traits_rgb(x, chunk=len(x)), small)
    per_image = whole_gb / len(small)
    stream_gb, seconds = peak(image_traits_rgb, images)
    print(f"input: {a.images} images of {a.side} x {a.side} (uint8): "
          f"{images.nbytes / 2**30:.2f} GiB")
    print(f"unchunked (measured on 64 images, scaled to {a.images}): "
          f"{per_image * a.images:.1f} GiB")
    print(f"streamed in chunks of {TRAIT_CHUNK}: {stream_gb:.2f} GiB peak over the input "
          f"({seconds:.0f} s); ratio {per_image * a.images / stream_gb:.0f}x less")
    return 0


if __name__ == "__main__":
    sys.exit(main())
