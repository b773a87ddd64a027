"""Shared by the benchmarks: run a snippet in a fresh Python process and measure it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_MEASURE = """
import json, resource, sys, time
t0 = time.perf_counter()
exec(compile(sys.argv[1], "<bench>", "exec"))
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
print("BENCH " + json.dumps({"wall_s": wall, "peak_mib": peak}))
"""


def measure(code: str, timeout: float | None = None, env: dict | None = None) -> dict:
    """Wall time (s) and peak resident memory (MiB) of ``code`` in a fresh interpreter
    (``env``: variables added to this process's environment for it);
    ``{"timed_out": seconds}`` when it runs past ``timeout`` (it is killed)."""
    try:
        res = subprocess.run([sys.executable, "-c", _MEASURE, code], capture_output=True,
                             text=True, cwd=ROOT, timeout=timeout,
                             env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"timed_out": timeout}
    if res.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{res.stderr[-3000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    return json.loads(line[6:])
