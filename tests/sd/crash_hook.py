"""A Ray worker setup hook for the sweep tests: the chain whose name contains
$QTRAIT_TEST_CRASH_CHAIN crashes in generation 1, once (a marker file remembers)."""

from __future__ import annotations

import os
from pathlib import Path


def install() -> None:
    import chain_runner.chain as chain

    target = os.environ.get("QTRAIT_TEST_CRASH_CHAIN")
    marker = Path(os.environ.get("QTRAIT_TEST_CRASH_MARKER", "/nonexistent/marker"))
    original = chain._generation

    def crashing(gw, backend, config, g, *args, **kwargs):
        if target and target in config.name and g == 1 and not marker.exists():
            marker.write_text("crashed once\n")
            raise RuntimeError("injected crash in generation 1")
        return original(gw, backend, config, g, *args, **kwargs)

    chain._generation = crashing
