"""GPU check of the Stable Diffusion chain: the four figures a first real run needs.

Builds a pipeline with the Stable Diffusion 1.5 architecture from config (random weights:
throughput does not depend on the weights; nothing is downloaded) and measures, in the
precision a chain uses by default (bf16 where the GPU supports it, else fp16):

1. seconds per 512 px image at 50 DDIM steps, batch 1, with classifier-free guidance (the
   chain's own sampling loop: two UNet passes per step);
2. images per second at 25 steps, batched (``--large-batch``, default 32), with guidance;
3. LoRA training steps per second at 512 px (rank 4 on to_q/to_k/to_v/to_out.0, batch 4,
   autocast);
4. a 2-generation chain end to end (``qtrait chain run`` on that pipeline saved to a
   folder: 16 images of two concepts, probes, 25 sampling steps, 50 finetuning steps,
   the offline EfficientNet-Lite0 features), in seconds.

Budget: under 8 minutes on one GPU. Usage::

    python bench/gpu_chain.py [--json gpu.json]   # on a CUDA machine: the four figures
    python bench/gpu_chain.py --full             # also fp16/bf16 x compile x batch matrix
    python bench/gpu_chain.py --tiny             # rehearsal on CPU: tiny pipeline, 32 px

Without CUDA (and without --tiny) it exits with status 2 and says so. ``--tiny`` runs the
same four measurements on the tiny preset on CPU (a test runs it): it proves the script,
not a throughput.
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
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
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


def bench_chain(preset: str, device, resolution: int, folder: Path) -> dict:
    """A 2-generation SD chain end to end on the preset's pipeline (random weights, saved
    to ``folder``), 16 generated-looking images of two concepts as D_0."""
    import numpy as np
    from PIL import Image

    from chain_runner.chain import run_chain
    from chain_runner.config import config_from_dict
    from chain_runner.sd.build import save_pipeline

    pipe = save_pipeline(folder / "pipeline", preset, seed=0)
    data = folder / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for concept, colour in (("red square", (220, 40, 40)), ("blue disc", (40, 60, 220))):
        for i in range(8):
            img = rng.integers(60, 200, (resolution, resolution, 3)).astype(np.uint8)
            c = resolution // 2
            r = resolution // (4 + i % 3)
            img[c - r:c + r, c - r:c + r] = colour
            name = f"{concept.split()[1]}_{i}.png"
            Image.fromarray(img).save(data / name)
            rows.append({"file_name": name, "text": f"a {concept}", "concept": concept})
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tiny = preset == "tiny"
    raw = {"backend": "sd", "name": "gpu-check", "generations": 2, "seed": 1,
           "design": {"cfg_scale": 7.5, "probe_fraction": 0.5},
           "sampler": {"scheduler": "ddim", "steps": 2 if tiny else 25},
           "finetune": {"steps": 2 if tiny else 50, "batch_size": 4},
           "traits": {"pca_axes": 3},
           "sd": {"model": str(pipe), "data": str(data), "resolution": resolution,
                  "device": str(device), "sample_batch_size": 8, "lr_warmup_steps": 0},
           "features": {"extractor": "efficientnet_lite0", "device": str(device)}}
    t0 = time.perf_counter()
    run_chain(config_from_dict(raw), folder / "run", progress=False)
    return {"seconds": time.perf_counter() - t0, "generations": 2, "images": 16}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", "--smoke", action="store_true",
                    help="tiny pipeline, 32 px, on CPU: rehearses the script")
    ap.add_argument("--full", action="store_true",
                    help="also the fp16/bf16 x compile x steps x batch matrix")
    ap.add_argument("--large-batch", type=int, default=32)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    import tempfile

    import torch

    from chain_runner.sd.build import build_pipeline

    device = torch.device("cpu" if args.tiny else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu_chain.py needs a CUDA GPU (none found); for a CPU rehearsal of the "
              "script run it with --tiny", file=sys.stderr)
        return 2
    preset, resolution = ("tiny", 32) if args.tiny else ("sd15", 512)
    if device.type == "cpu":
        dname, dtype = "fp32", torch.float32
    elif torch.cuda.is_bf16_supported():
        dname, dtype = "bf16", torch.bfloat16
    else:
        dname, dtype = "fp16", torch.float16
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    t_start = time.perf_counter()
    pipe = build_pipeline(preset).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    big = 2 if args.tiny else args.large_batch
    one = bench_generation(pipe, device, dtype, 2 if args.tiny else 50, 1, False, resolution)
    many = bench_generation(pipe, device, dtype, 2 if args.tiny else 25, big, False,
                            resolution)
    train = bench_training(pipe, device, dtype, 1 if args.tiny else 4, resolution)
    del pipe
    with tempfile.TemporaryDirectory() as tmp:
        chain = bench_chain(preset, device, resolution, Path(tmp))
    figures = {"s_per_image_batch_1": one["s_per_image"],
               "images_per_s_batched": many["images_per_s"],
               "lora_train_steps_per_s": train["steps_per_s"],
               "chain_2_generations_s": chain["seconds"]}
    settings = {"steps_batch_1": 2 if args.tiny else 50, "steps_batched": 2 if args.tiny
                else 25, "batched": big, "train_batch": train["batch"],
                "chain_images": chain["images"]}
    lines = [f"device {name}, {preset} ({resolution} px), {dname}, torch {torch.__version__}",
             f"1. {one['s_per_image']:.3f} s per image at 50 steps, batch 1 (CFG)",
             f"2. {many['images_per_s']:.3f} images/s at 25 steps, batch {big} (CFG)",
             f"3. {train['steps_per_s']:.3f} LoRA training steps/s, batch "
             f"{train['batch']}, {resolution} px",
             f"4. {chain['seconds']:.1f} s for a 2-generation chain of 16 images end to end"]
    if args.tiny:
        lines[0] += " (tiny rehearsal: the figures prove the script, not a GPU)"
        lines = [lines[0]] + [x.replace("50 steps", "2 steps").replace("25 steps",
                                                                       "2 steps")
                              for x in lines[1:]]
    print("\n".join(lines), flush=True)
    rows = []
    if args.full and not args.tiny:
        rows = full_matrix(device, preset, resolution, args.large_batch)
    out = {"device": name, "preset": preset, "resolution": resolution, "precision": dname,
           "torch": torch.__version__, "figures": figures, "settings": settings,
           "seconds_total": time.perf_counter() - t_start, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


def full_matrix(device, preset, resolution, large_batch) -> list[dict]:
    """Generation at fp16 and bf16, with and without torch.compile, 25 and 50 steps, batch
    1 and large; LoRA training per precision."""
    import torch

    from chain_runner.sd.build import build_pipeline

    rows = []
    for dname, dtype in {"fp16": torch.float16, "bf16": torch.bfloat16}.items():
        pipe = build_pipeline(preset).to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        for compiled in (False, True):
            for steps in (25, 50):
                for batch in (1, large_batch):
                    r = bench_generation(pipe, device, dtype, steps, batch, compiled,
                                         resolution)
                    rows.append({"what": "generation", "dtype": dname, "compile": compiled,
                                 "steps": steps, "batch": batch, **r})
                    print(f"generate {dname} compile={compiled!s:5} steps={steps:3} "
                          f"batch={batch:3}: {r['images_per_s']:8.3f} img/s", flush=True)
        r = bench_training(pipe, device, dtype, 4, resolution)
        rows.append({"what": "lora_training", "dtype": dname, **r})
        del pipe
    return rows


if __name__ == "__main__":
    sys.exit(main())
