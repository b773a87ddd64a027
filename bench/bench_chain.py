"""Benchmark: the CPU miniature chain, one-time base training and a full chain.

Measures, each in a fresh Python process with its own empty model cache:

1. cold: training the base model and the feature network once (the one-time cost);
2. warm: a full 10-generation chain with the default config (899 guided images plus two
   probe sets of 112 per generation) once the models are cached;
3. baseline: the same number of plain training steps of the same denoiser in a bare
   PyTorch loop (no diffusers scheduler, no peft, no sampling, no I/O), i.e. the least
   the finetuning part of the chain could cost. The ratio chain / baseline shows what
   sampling, traits and the run directory add.

Targets on the 2-core development machine: base training under 3 minutes, the warm chain
under 5 minutes.

    python bench/bench_chain.py [--generations 10]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _measure import measure  # noqa: E402  (bench/ is on sys.path when run as a script)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qtrait-bench-chain-"))
    try:
        cache = tmp / "cache"
        cfg = {"name": "bench", "generations": args.generations,
               "runtime": {"cache_dir": str(cache)}}
        prep = ("from chain_runner.config import config_from_dict\n"
                "from chain_runner.toy.backend import ToyBackend\n"
                f"ToyBackend(config_from_dict({cfg!r}), progress=False).prepare()\n")
        cold = measure(prep)
        chain = measure("from chain_runner.config import config_from_dict\n"
                        "from chain_runner.chain import run_chain\n"
                        f"run_chain(config_from_dict({cfg!r}), {str(tmp / 'run')!r}, "
                        "progress=False)\n")
        from chain_runner.config import ChainConfig

        c = ChainConfig()
        steps = c.finetune.steps * (args.generations - 1)
        baseline = measure(
            "import torch\n"
            "torch.set_num_threads(2)\n"
            "from chain_runner.toy.model import Denoiser\n"
            f"net = Denoiser({c.base.hidden})\n"
            "opt = torch.optim.AdamW(net.parameters(), lr=1e-3)\n"
            "x = torch.randn(899, 64); y = torch.randint(0, 10, (899,))\n"
            f"for _ in range({steps}):\n"
            f"    i = torch.randint(0, 899, ({c.finetune.batch_size},))\n"
            "    t = torch.randint(0, 1000, (len(i),))\n"
            "    loss = ((net(x[i], t, y[i]) - x[i]) ** 2).mean()\n"
            "    opt.zero_grad(); loss.backward(); opt.step()\n")
        print(f"CPU miniature chain, {args.generations} generations, default config "
              f"({c.base.train_steps} base steps, {c.finetune.steps} LoRA steps a generation, "
              f"{c.sampler.steps} sampling steps)\n")
        print(f"{'step':<44}{'wall s':>9}{'peak MiB':>10}{'target s':>10}")
        print(f"{'one-time base + feature network training':<44}{cold['wall_s']:>9.1f}"
              f"{cold['peak_mib']:>10.0f}{180:>10}")
        print(f"{'full chain, models cached':<44}{chain['wall_s']:>9.1f}"
              f"{chain['peak_mib']:>10.0f}{300:>10}")
        print(f"{'baseline: bare training loop, same steps':<44}{baseline['wall_s']:>9.1f}"
              f"{baseline['peak_mib']:>10.0f}{'':>10}")
        print(f"\nchain / baseline time: {chain['wall_s'] / baseline['wall_s']:.1f}x; "
              f"per generation: {chain['wall_s'] / args.generations:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
