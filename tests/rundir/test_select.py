"""Run.select and the --traits/--concepts options: a fit on part of a run."""

from __future__ import annotations

import numpy as np
import pytest

from qtrait.errors import QtraitError
from qtrait.fit import SamplerSettings, config_hash, data_key
from qtrait.models import fit_data
from qtrait.rundir import open_run

RUN = "data/runs/chain_042"


@pytest.fixture(scope="module")
def run():
    return open_run(RUN)


def test_select_restricts_traits_and_concepts(run):
    sub = run.select(["pc_2", "pc_1"], ["3", "7"])
    assert sub.traits == ["pc_1", "pc_2"]            # the run's order, not the request's
    assert sub.run_id == run.run_id and sub.generations == run.generations
    for g in (0, run.generations[-1]):
        for s in run.sets(g):
            full, part = run.table(g, s), sub.table(g, s)
            assert set(part["concept"].astype(str)) == {"3", "7"}
            assert [c for c in part.columns if c in run.traits] == ["pc_1", "pc_2"]
            want = full[full["concept"].astype(str).isin(["3", "7"])]
            np.testing.assert_array_equal(part["pc_2"].to_numpy(), want["pc_2"].to_numpy())
    fd = fit_data(sub)
    assert fd.traits == ["pc_1", "pc_2"] and [str(c) for c in fd.concepts] == ["3", "7"]
    # the sufficient statistics of the selection equal those cells of the full run's
    full = fit_data(run)
    ci = [list(map(str, full.concepts)).index(c) for c in ("3", "7")]
    ki = [full.traits.index(t) for t in ("pc_1", "pc_2")]
    np.testing.assert_allclose(fd.sets["guided"].var,
                               full.sets["guided"].var[:, ci][:, :, ki])
    assert run.traits != sub.traits                   # the original run is untouched
    assert run.select() is run


def test_selection_changes_the_fit_hash(run):
    settings = SamplerSettings()
    keys = [data_key(r, fit_data(r)) for r in (run, run.select(["pc_1"]),
                                               run.select(["pc_1"], ["3"]))]
    hashes = {config_hash("breeder", {}, settings, [k]) for k in keys}
    assert len(hashes) == 3


def test_unknown_names_are_clear_errors(run, cli):
    with pytest.raises(QtraitError, match="no trait pc_99"):
        run.select(["pc_99"])
    with pytest.raises(QtraitError, match="no concept zebra"):
        run.select(None, ["zebra"])
    res = cli("predict", RUN, "--traits", "pc_1,nope")
    assert res.code == 2 and "no trait nope" in res.err and "its traits: pc_1" in res.err
    assert "Traceback" not in res.err
    res = cli("fit", RUN, "--concepts", " , ")
    assert res.code == 2 and "at least one name" in res.err
