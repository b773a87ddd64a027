"""bench/gpu_chain.py --tiny: the GPU check script rehearsed on CPU (tiny pipeline)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def test_gpu_check_script_rehearses_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_chain.py"), "--tiny",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["preset"] == "tiny" and rec["device"] == "cpu"
    f = rec["figures"]
    assert set(f) == {"s_per_image_batch_1", "images_per_s_batched",
                      "lora_train_steps_per_s", "chain_2_generations_s"}
    assert all(v > 0 for v in f.values())
    # the four numbered figure lines are printed for a person
    assert [line[:2] for line in res.stdout.splitlines() if line[:2] in
            ("1.", "2.", "3.", "4.")] == ["1.", "2.", "3.", "4."]
    # without a GPU (and without --tiny) the script says so and exits with 2
    import torch
    if torch.cuda.is_available():
        return                   # on a GPU machine it would run the real check instead
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_chain.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "needs a CUDA GPU" in res.stderr
