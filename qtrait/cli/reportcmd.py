"""``qtrait report``: one self-contained HTML page (and Markdown, and CSV tables) per run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import sampler_defaults as defaults
from ..errors import QtraitError
from .fitcmd import (Chains, Draws, FromGenerations, SamplerOpt, Seed, TargetAccept, Tune,
                     settings_of)
from .options import (H2, CalibrationOpt, Concepts, D, Q, R, TMax, Traits,
                      check_theory_options, make_criteria, open_selected)

ReportModel = Annotated[str, typer.Option("--model", help="The model of the trajectories, "
                                          "horizon forecast and prior sensitivity: breeder, "
                                          "tilt or exact (tilt and exact need probes).")]


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)


class _Progress:
    """Progress of one run's report on stderr: a tqdm line on a terminal (the step in
    progress, steps done, time), one plain line per step otherwise (logs, CI)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.t0 = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, file=sys.stderr,
                            bar_format="{desc} [{n_fmt}/{total_fmt} steps, {elapsed}]")
        self.started = False

    def __call__(self, text: str) -> None:
        if self.started:
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
        self.started = True
        if self.bar is not None:
            self.bar.set_description_str(f"{self.label}: {text}")
        else:
            self.log(f"{self.label}: {text} (step {self.done + 1}/{self.total}, "
                     f"{time.monotonic() - self.t0:.0f} s)")

    def log(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            typer.echo(line, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.set_description_str(f"{self.label}: done")
            self.bar.close()
        else:
            self.log(f"{self.label}: done in {time.monotonic() - self.t0:.0f} s")


def _models(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise QtraitError("--compare-models: give at least one model, e.g. breeder,tilt")
    return names


def report_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directory; several give one report "
                                      "each under --out/<run_id>/ and an index."),
    out: Path = typer.Option(..., "--out", help="Folder for report.html, report.md, "
                             "figures/ and tables/ (created; an earlier report there is "
                             "replaced)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Baseline run (constant "
                                            "CFG, no mitigation): adds the ReDiFine check "
                                            "of RUN against it (as qtrait compare)."),
    model: ReportModel = "breeder",
    from_generations: FromGenerations = 3,
    compare_models: Optional[str] = typer.Option(
        None, "--compare-models", help="Models compared by PSIS-LOO, comma-separated "
        "(default: breeder, plus tilt when the run has both probe sets; exact only when "
        "named: it compiles for minutes)."),
    h2: H2 = None,
    calibration: CalibrationOpt = "auto",
    rho: Optional[float] = typer.Option(None, "--rho", help="Effect of condition drop, in "
                                        "[0, 1], for the zero-shot theory and the ReDiFine "
                                        "check (default: measured from the probes by the "
                                        "ReDiFine check, else by a tilt/exact fit)."),
    q: Q = 0.5, d: D = 2.0, r: R = 0.5, t_max: TMax = 50,
    chains: Chains = defaults.CHAINS, draws: Draws = defaults.DRAWS, tune: Tune = defaults.TUNE,
    target_accept: TargetAccept = defaults.TARGET_ACCEPT, seed: Seed = 0,
    sampler: SamplerOpt = None,
    traits: Traits = None, concepts: Concepts = None,
    adequacy: bool = typer.Option(True, "--adequacy/--no-adequacy", help="Check that "
                                  "--model describes the run (one-step PIT by refits, "
                                  "per-generation predictive check; models.md section 11) "
                                  "and show the verdict beside the diagnostics."),
) -> None:
    """Write a report of a run: one HTML page with figures, Markdown, CSV tables.

    Sections: design, trajectories with the posterior predictive and the zero-shot
    theory, selection and inheritance, variance decay, the horizon forecast, diagnostics,
    model comparison, prior sensitivity, the ReDiFine check (--baseline), image grids.
    Saved fits that match (RUN/fits/, as qtrait fit and predict save them) are reused;
    missing ones are fitted first and saved. Progress goes to stderr; the paths written
    go to stdout.
    """
    from ..report import (FitStore, ReportOptions, build_report, plan, prepare_out,
                          write_index, write_report)
    from ..report.build import one_line

    crit = make_criteria(q, d, r, t_max)
    settings = settings_of(chains, draws, tune, target_accept, seed, sampler)
    check_theory_options(h2, calibration)
    if rho is not None and not 0 <= rho <= 1:
        raise QtraitError(f"--rho must be in [0, 1], got {rho}")
    opened = [open_selected(p, traits, concepts) for p in runs]
    ids = [o.run_id for o in opened]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise QtraitError(f"run id(s) {', '.join(dup)} given twice: several runs get one "
                          "folder each, named by run id")
    base = open_selected(baseline, traits, concepts) if baseline is not None else None
    opts = ReportOptions(settings=settings, criteria=crit, model=model,
                         from_generations=from_generations,
                         compare_models=_models(compare_models), h2=h2, rho=rho,
                         adequacy=adequacy, calibration=calibration)
    plans = [plan(o, opts, base) for o in opened]       # every check before any fit
    folder = prepare_out(out)
    folders = [folder] if len(opened) == 1 else [prepare_out(folder / i) for i in ids]
    entries = []
    for run, p, dest in zip(opened, plans, folders):
        total = 1 + len(p.models) + 1 + (base is not None) + 3 + adequacy
        progress = _Progress(f"report {run.run_id}", total)
        store = FitStore(settings, log=progress.log)
        try:
            report = build_report(run, opts, store, base, step=progress)
        finally:
            progress.close()
        paths = write_report(report, dest)
        typer.echo(f"report of {run.run_id} written to {paths['html']} (also "
                   f"{paths['markdown'].name}, figures/, tables/)")
        entries.append({"run_id": run.run_id, "summary": one_line(report)})
    if len(opened) > 1:
        index = write_index(entries, folder, f"qtrait reports: {', '.join(ids)}")
        typer.echo(f"index of {len(opened)} reports: {index['html']}")
