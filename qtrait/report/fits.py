"""The fits a report needs: a saved fit that matches is read back, otherwise the model is
fitted now (and saved under the run's ``fits/``, as ``qtrait fit`` and ``qtrait predict``
do). A fit is matched by the path ``qtrait.fit`` gives it: the model, its priors, the
sampler settings, the run id, the generations and the qtrait version, hashed
(``fits/<model>-<hash>.nc``), and the file's own provenance attributes are checked.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..errors import QtraitError
from ..rundir import Run
from ..rundir import layout

#: rough costs on the 2-core development machine (seconds), for the "about N s" message:
#: compilation of a model (once per process and data layout) and sampling per chain pair,
#: iteration and (generation, cell), from the fit times of docs/models.md section 7 and of
#: chain_042 (breeder 1.2e-5 there, 7.5e-5 on sim_tilt_042: the geometry matters more
#: than the size, so this is an order of magnitude, not a prediction)
COMPILE_S = {"breeder": 20.0, "tilt": 45.0, "exact": 300.0}
SAMPLE_S = {"breeder": 3e-5, "tilt": 1e-3, "exact": 2e-3}


def estimate_seconds(model: str, settings, n_generations: int, n_cells: int,
                     compiled: bool) -> int:
    """A rough wall time of one fit on the development machine (2 cores), for a message."""
    pairs = math.ceil(settings.chains / 2)
    sampling = SAMPLE_S.get(model, 4e-4) * pairs * (settings.draws + settings.tune) \
        * n_generations * n_cells
    total = sampling + (0.0 if compiled else COMPILE_S.get(model, 300.0))
    return int(round(max(total, 1.0), -1 if total > 60 else 0))


def _gens_text(gens: list[int]) -> str:
    return f"generations {gens[0]}..{gens[-1]}"


class FitStore:
    """Fits of one report session, each obtained once: from memory, from a saved file that
    matches, or by fitting now. ``log`` receives one line per fit (stderr in the CLI)."""

    def __init__(self, settings, log: Callable[[str], None] = lambda _: None):
        self.settings = settings
        self.log = log
        self._cache: dict = {}
        self._fit = None               # qtrait.fit.fit while serving_fits replaces it
        self.notes: list[str] = []     # what the report should say about its fits

    def get(self, run: Run, model: str, generations: slice | None = None):
        """The fit of ``model`` on ``run`` (generations: a slice of generation numbers)."""
        from ..fit import config_hash, data_key
        from ..models import chain_data, fit_data, get_spec

        spec = get_spec(model)
        fd = fit_data(run, generations)
        key = (str(Path(run.root).resolve()), model,
               json.dumps(data_key(run, fd), default=str))
        if key in self._cache:
            return self._cache[key]
        cd = chain_data([fd])
        spec.check(cd)
        h = config_hash(spec.name, spec.priors, self.settings, [data_key(run, fd)])
        path = layout.fit_path(run.root, spec.name, h)
        result = self._load(path, spec, cd, fd, h) if path.exists() else None
        if result is None:
            result = self._fit_now(run, spec, cd, fd, generations, path)
        self._cache[key] = result
        return result

    def _load(self, path: Path, spec, cd, fd, h):
        import arviz as az

        from ..fit import FitResult, diagnose

        try:
            idata = az.from_netcdf(str(path))
            idata.posterior.load()
            attrs = idata.posterior.attrs
            ok = (attrs.get("model") == spec.name and attrs.get("config_hash") == h
                  and attrs.get("run_id") == fd.run_id
                  and json.loads(attrs.get("generations", "null")) == fd.generations)
        except (OSError, ValueError, KeyError) as exc:
            self.log(f"cannot read the saved fit {path} ({exc}): fitting again")
            return None
        if not ok:
            self.log(f"the saved fit {path} does not match its provenance: fitting again")
            return None
        free = json.loads(idata.posterior.attrs["free_variables"])
        diag, advice = diagnose(idata, free)
        self.log(f"using the saved fit {path} ({spec.name}, {_gens_text(fd.generations)})")
        return FitResult(idata, diag, advice, list(fd.excluded), path, h, spec.name, cd, spec)

    def _fit_now(self, run, spec, cd, fd, generations, path):
        from .. import fit as fitmod

        compiled = any(k[0] == spec.signature(cd) for k in getattr(fitmod, "_COMPILED", {}))
        about = estimate_seconds(spec.name, self.settings, cd.G, cd.J, compiled)
        save = _writable(Path(run.root))
        self.log(f"no saved fit for {spec.name} ({_gens_text(fd.generations)}) in "
                 f"{layout.output_dir(run.root, 'fits')}: fitting now (about {about} s)")
        if not save:
            self.notes.append(f"{run.root} cannot be written: the {spec.name} fit was not "
                              "saved")
        t0 = time.monotonic()
        result = (self._fit or fitmod.fit)(run, spec.name, self.settings, generations,
                                           save=save, progress=False)
        self.log(f"fitted {spec.name} in {time.monotonic() - t0:.0f} s"
                 + (f"; saved to {result.path}" if result.path else ""))
        return result

    def fits(self) -> list:
        """Every fit obtained so far, in order."""
        return list(self._cache.values())

    @contextmanager
    def serving_fits(self):
        """While active, :func:`qtrait.fit.fit` on a whole run answers from this store.

        A workaround: ``qtrait.redifine.redifine_check`` fits its runs itself (breeder for
        both, tilt or exact for the probes), the same fits a report has made already or
        saved earlier; it looks ``fit`` up on :mod:`qtrait.fit` when called, so swapping
        the attribute for the duration avoids fitting the same model twice."""
        from .. import fit as fitmod

        original = fitmod.fit

        def fit(runs, model="breeder", settings=None, generations=None, save=True,
                progress=False, spec=None, upto=None):
            if (isinstance(runs, Run) and spec is None and upto is None
                    and settings == self.settings):
                return self.get(runs, model, generations)
            return original(runs, model, settings or self.settings, generations, save,
                            progress, spec, upto)

        self._fit, fitmod.fit = original, fit
        try:
            yield self
        finally:
            fitmod.fit, self._fit = original, None


def _writable(root: Path) -> bool:
    fits = layout.output_dir(root, "fits")
    target = fits if fits.exists() else root
    return os.access(target, os.W_OK)


def check_model(name: str, cd, what: str) -> None:
    """A single-run model that applies to the data, or a clear error naming the option."""
    from ..models import get_spec

    if name == "hier":
        raise QtraitError(f"{what} hier: a report is per run; hier fits several runs "
                          "jointly (use qtrait fit RUN1 RUN2 --model hier)")
    try:
        get_spec(name).check(cd)
    except QtraitError as exc:
        raise QtraitError(f"{what} {name}: {exc.message}", hint=exc.hint) from None
