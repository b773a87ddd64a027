"""Property tests: writing a run and reading it back gives identical data."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtrait.rundir import RunWriter, make_manifest, open_run
from qtrait.rundir.layout import RESERVED_NAMES, SETS

from tests.helpers import DESIGN

names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl",
                                                                          "Zp")),
                min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s not in RESERVED_NAMES and s != "")
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def runs(draw):
    traits = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    concepts = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    n_gen = draw(st.integers(1, 3))
    gens = []
    for _ in range(n_gen):
        sets = ["guided"] + [s for s in SETS[1:] if draw(st.booleans())]
        tables = {}
        for s in sets:
            rows = []
            for c in concepts:
                n = draw(st.integers(2, 4))
                for _ in range(n):
                    rows.append({"concept": c, **{t: draw(finite) for t in traits}})
            df = pd.DataFrame(rows, columns=["concept", *traits])
            if draw(st.booleans()):
                df.insert(0, "image_id", [f"img {i}" for i in range(len(df))])
            tables[s] = df
        gens.append(tables)
    return traits, gens


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_write_then_read_gives_identical_data(data):
    traits, gens = data
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        manifest = make_manifest("prop", DESIGN, traits, producer_name="tests")
        writer = RunWriter.create(root, manifest)
        for g, tables in enumerate(gens):
            writer.write_generation(g, tables)
        run = open_run(root)
        assert run.generations == list(range(len(gens)))
        assert run.manifest == manifest
        for g, tables in enumerate(gens):
            assert run.sets(g) == [s for s in SETS if s in tables]
            for s, written in tables.items():
                got = run.table(g, s)
                assert list(got.columns) == ["image_id", "concept", *traits]
                assert got["concept"].tolist() == written["concept"].tolist()
                if "image_id" in written:
                    assert got["image_id"].tolist() == written["image_id"].tolist()
                # bit-identical floats (including -0.0 and subnormals)
                a = got[traits].to_numpy(dtype=np.float64)
                b = written[traits].to_numpy(dtype=np.float64)
                assert a.tobytes() == b.tobytes()


def test_long_table_matches_per_set_tables(tiny_run):
    run = open_run(tiny_run)
    long = run.long_table()
    assert list(long.columns[:4]) == ["generation", "set", "image_id", "concept"]
    for g in run.generations:
        for s in run.sets(g):
            part = long[(long.generation == g) & (long.set == s)].reset_index(drop=True)
            pd.testing.assert_frame_equal(part.drop(columns=["generation", "set"]),
                                          run.table(g, s), check_exact=True)
