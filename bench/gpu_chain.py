"""GPU throughput of the Stable Diffusion chain: guided generation and LoRA training.

Builds a pipeline with the Stable Diffusion 1.5 architecture from config (random weights:
throughput does not depend on the weights; nothing is downloaded) and measures

- guided generation, images per second: 512 px, 25 and 50 DDIM steps, batch 1 and a large
  batch, fp16 and bf16, with and without ``torch.compile`` of the UNet (the chain's own
  sampling loop, two UNet passes per step for classifier-free guidance);
- LoRA training steps per second (rank 8 on to_q/to_k/to_v/to_out.0, batch 4, 512 px,
  fp16/bf16 autocast).

Usage (on a CUDA machine)::

    python bench/gpu_chain.py                 # everything, prints a table and JSON
    python bench/gpu_chain.py --quick         # batch 1 and 8, 25 steps, no compile
    python bench/gpu_chain.py --device cpu --smoke   # tiny pipeline on CPU: proves the path

Without CUDA (and without --device cpu --smoke) it exits with status 2 and says so.
Reference: a stock PyTorch 2 SD 1.5 pipeline takes about 1.4 s per 512 px image at 50
steps, batch 1, on an H100 PCIe.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_generation(pipe, device, dtype, steps, batch, compiled, resolution, repeats=2):
    import torch

    unet, vae = pipe.unet, pipe.vae
    if compiled:
        unet = torch.compile(unet)
    ids = pipe.tokenizer(["a photo"] * batch, padding="max_length", max_length=77,
                         return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        cond = pipe.text_encoder(ids)[0]
        unc = pipe.text_encoder(pipe.tokenizer([""] * batch, padding="max_length",
                                               max_length=77, return_tensors="pt"
                                               ).input_ids.to(device))[0]
    side = resolution // pipe.vae_scale_factor
    times = []
    for r in range(repeats + 1):  # the first run warms up (and compiles)
        sched = pipe.scheduler
        sched.set_timesteps(steps, device=device)
        x = torch.randn((batch, 4, side, side), device=device, dtype=dtype)
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            for t in sched.timesteps:
                e = unet(torch.cat([x, x]), t, torch.cat([unc, cond])).sample
                e_u, e_c = e.chunk(2)
                x = sched.step(e_u + 7.5 * (e_c - e_u), t, x).prev_sample
            vae.decode(x / vae.config.scaling_factor)
        _sync(device)
        if r:
            times.append(time.perf_counter() - t0)
    best = min(times)
    return {"images_per_s": batch / best, "s_per_image": best / batch}


def bench_training(pipe, device, dtype, batch, resolution, steps=5):
    import torch
    from peft import LoraConfig

    unet = pipe.unet
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=1e-4)
    side = resolution // pipe.vae_scale_factor
    cross = unet.config.cross_attention_dim
    unet.train()
    times = []
    for i in range(steps + 1):
        x = torch.randn((batch, 4, side, side), device=device, dtype=dtype)
        emb = torch.randn((batch, 77, cross), device=device, dtype=dtype)
        t = torch.randint(0, 1000, (batch,), device=device)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss = (unet(x, t, emb).sample.float() - x.float()).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    unet.eval()
    unet.unload_lora()
    return {"steps_per_s": 1.0 / min(times), "batch": batch}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny pipeline, 32 px (CPU check)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large-batch", type=int, default=32)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    import torch

    from chain_runner.sd.build import build_pipeline

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu_chain.py needs a CUDA GPU (none found); for a CPU check of the code "
              "path run it with --device cpu --smoke", file=sys.stderr)
        return 2
    preset, resolution = ("tiny", 32) if args.smoke else ("sd15", 512)
    dtypes = {"fp32": torch.float32} if device.type == "cpu" else {
        "fp16": torch.float16, "bf16": torch.bfloat16}
    steps_list = [2] if args.smoke else ([25] if args.quick else [25, 50])
    batches = [1, 2] if args.smoke else ([1, 8] if args.quick else [1, args.large_batch])
    compile_opts = [False] if (args.smoke or args.quick) else [False, True]
    rows = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for dname, dtype in dtypes.items():
        pipe = build_pipeline(preset).to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        for compiled in compile_opts:
            for steps in steps_list:
                for batch in batches:
                    r = bench_generation(pipe, device, dtype, steps, batch, compiled,
                                         resolution)
                    rows.append({"what": "generation", "dtype": dname, "compile": compiled,
                                 "steps": steps, "batch": batch, **r})
                    print(f"generate {dname} compile={compiled!s:5} steps={steps:3} "
                          f"batch={batch:3}: {r['images_per_s']:8.3f} img/s "
                          f"({r['s_per_image']:.3f} s/img)", flush=True)
        r = bench_training(pipe, device, dtype, 1 if args.smoke else 4, resolution)
        rows.append({"what": "lora_training", "dtype": dname, **r})
        print(f"LoRA train {dname} batch={r['batch']}: {r['steps_per_s']:.3f} steps/s",
              flush=True)
        del pipe
    out = {"device": name, "preset": preset, "resolution": resolution,
           "torch": torch.__version__, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
