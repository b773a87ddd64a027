"""The priors learned on the benchmark's seed-1 chains are copied by hand into
qtrait/models/breeder.py (the package does not read analyses/); this checks each copy
against what the records in analyses/benchmark give today, to the two decimals written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from qtrait.models.breeder import DEFAULT_PRIORS, MEAN_OFFSET_PRIOR, MOMENTUM_PRIOR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location(
        "analysis_benchmark", ROOT / "analyses" / "benchmark" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("key, learned", [
    ("gen_shock_sd", "shock_prior"), ("first_step", "first_prior"),
    ("mean_offset_sd", "offset_prior"), ("mean_momentum", "momentum_prior")])
def test_the_breeder_priors_are_the_ones_the_records_give(benchmark, key, learned):
    written = (DEFAULT_PRIORS | MEAN_OFFSET_PRIOR | MOMENTUM_PRIOR)[key]
    assert tuple(round(x, 2) for x in getattr(benchmark, learned)()) == written
