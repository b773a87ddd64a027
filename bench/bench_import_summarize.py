"""Benchmark: `qtrait import` and `qtrait summarize` on a large long table.

The table is 20 generations x 3 sets x 1,000 images x 16 traits (60,000 rows), written
as CSV and as Parquet. Each step runs in a fresh Python process, which reports its wall
time and peak resident memory. Baselines measured in the same run give the ratios:

* import baseline: pandas reads the same table (the least any importer must do);
* summarize baseline: pandas groupby mean/var over the same rows (the least any
  per-generation statistic costs), after reading the run's tables with pandas;
* memory baseline: a Python process that imports pandas and reads the table.

    python bench/bench_import_summarize.py [--images 1000] [--traits 16] [--generations 20]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from _measure import measure  # noqa: E402  (bench/ is on sys.path when run as a script)



def make_table(generations: int, images: int, traits: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for g in range(generations):
        for s in ("guided", "probe_w1", "probe_uncond"):
            x = rng.normal(0, 0.97 ** g, size=(images, traits))
            df = pd.DataFrame(x, columns=[f"trait_{k:02d}" for k in range(traits)])
            df.insert(0, "concept", rng.choice(["cat", "dog", "car", "tree"], size=images))
            df.insert(0, "set", s)
            df.insert(0, "generation", g)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--traits", type=int, default=16)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="qtrait-bench-"))
    try:
        table = make_table(args.generations, args.images, args.traits)
        csv, pq = tmp / "traits.csv", tmp / "traits.parquet"
        table.to_csv(csv, index=False)
        table.to_parquet(pq)
        print(f"table: {len(table):,} rows x {args.traits} traits "
              f"({args.generations} generations x 3 sets x {args.images} images); "
              f"CSV {csv.stat().st_size / 2**20:.1f} MiB, Parquet {pq.stat().st_size / 2**20:.1f} MiB")
        meta = "--name bench --cfg-scale 3 --cfg-schedule constant --p-drop 0 --anchor base"

        rows = []
        for fmt, path in (("CSV", csv), ("Parquet", pq)):
            base = measure(f"import pandas as pd; pd.read_{'csv' if fmt == 'CSV' else 'parquet'}"
                           f"({str(path)!r})")
            out = tmp / f"run_{fmt}"
            argv = ["import", str(path), "--out", str(out), *meta.split()]
            imp = measure(f"from qtrait.cli.main import main; assert main({argv!r}) == 0")
            rows.append((f"import ({fmt})", imp, base))

        run = tmp / "run_CSV"
        base = measure(
            "import pandas as pd, glob\n"
            f"fs = sorted(glob.glob({str(run)!r} + '/generations/*/*.csv'))\n"
            "df = pd.concat([pd.read_csv(f).assign(file=f) for f in fs])\n"
            "num = df.select_dtypes('number').columns\n"
            "df.groupby(['file', 'concept'])[list(num)].agg(['mean', 'var'])\n")
        summ = measure("import contextlib, io\nfrom qtrait.cli.main import main\n"
                       "with contextlib.redirect_stdout(io.StringIO()):\n"
                       f"    assert main(['summarize', {str(run)!r}, '--json']) == 0\n")
        rows.append(("summarize --json", summ, base))
        val = measure(f"from qtrait.cli.main import main; assert main(['validate', {str(run)!r}]) == 0")
        rows.append(("validate", val, base))

        print(f"\n{'step':<20}{'wall s':>9}{'peak MiB':>10}{'baseline s':>12}"
              f"{'baseline MiB':>14}{'time ratio':>12}{'mem ratio':>11}")
        for name, m, b in rows:
            print(f"{name:<20}{m['wall_s']:>9.2f}{m['peak_mib']:>10.0f}{b['wall_s']:>12.2f}"
                  f"{b['peak_mib']:>14.0f}{m['wall_s'] / b['wall_s']:>12.1f}"
                  f"{m['peak_mib'] / b['peak_mib']:>11.2f}")
        print("\nbaselines: import = pandas reads the table; summarize/validate = pandas reads "
              "the run's CSV files and computes groupby mean/var; each in a fresh process.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
