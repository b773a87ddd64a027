"""Commands on run directories: ``import``, ``validate``, ``summarize``, ``migrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import QtraitError
from ..rundir import SETS, import_table, open_run, validate_run
from ..rundir.io import atomic_write_bytes
from ..rundir.migrate_run import migrate_run
from ..rundir.table import load_meta
from .common import GENERATIONS_HELP, JSON_HELP, parse_generations, print_json


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("validate")(validate_cmd)
    app.command("summarize")(summarize_cmd)
    app.command("migrate")(migrate_cmd)


def import_cmd(
    table: Path = typer.Argument(..., help="Per-image long table, CSV or Parquet."),
    out: Path = typer.Option(..., "--out", help="New run directory to create."),
    meta: Optional[Path] = typer.Option(None, "--meta", help="TOML or JSON file of design "
                                        "fields (name, cfg_scale, cfg_schedule, p_drop, "
                                        "anchor, ...)."),
    name: Optional[str] = typer.Option(None, help="Run name (also its run id)."),
    cfg_scale: Optional[float] = typer.Option(None, help="Nominal CFG scale w."),
    cfg_schedule: Optional[str] = typer.Option(None, help="constant, linear, cosine, step, "
                                               "interval or custom."),
    p_drop: Optional[float] = typer.Option(None, help="Condition-drop rate in finetuning."),
    anchor: Optional[str] = typer.Option(None, help="'base' or 'previous'."),
    base_model: Optional[str] = typer.Option(None, help="Base model (hub id or path)."),
    dataset: Optional[str] = typer.Option(None, help="Finetuning data set."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Turn a per-image long table into a run directory.

    Columns: generation (int >= 0, required), set (guided | probe_w1 | probe_uncond,
    default guided), concept and image_id (optional); every other column is a numeric
    trait. Options override the --meta file.
    """
    fields = load_meta(meta) if meta is not None else {}
    options = {"name": name, "cfg_scale": cfg_scale, "cfg_schedule": cfg_schedule,
               "p_drop": p_drop, "anchor": anchor, "base_model": base_model,
               "dataset": dataset}
    fields.update({k: v for k, v in options.items() if v is not None})
    run = import_table(table, out, fields)
    info = {"run": str(run.root), "run_id": run.run_id, "generations": run.generations,
            "traits": run.traits,
            "sets": [s for s in SETS if any(s in run.sets(g) for g in run.generations)]}
    if json_out:
        print_json(info)
    else:
        typer.echo(f"imported {table} -> {run.root}: {len(run.generations)} generations, "
                   f"{len(run.traits)} traits, sets {', '.join(info['sets'])}")


def validate_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check a run directory and report every problem, one line each.

    Exit status 0 when the run is valid (notices, such as an incomplete last generation
    that readers ignore, do not count), 1 when it has errors. Never modifies the run.
    """
    problems = validate_run(run)
    errors = [p for p in problems if p.severity == "error"]
    if json_out:
        print_json({"run": str(run), "valid": not errors,
                    "problems": [{"severity": p.severity, "file": p.file,
                                  "generation": p.generation, "column": p.column,
                                  "message": p.message} for p in problems]})
    else:
        for p in problems:
            typer.echo(p.format(), err=p.severity == "error")
        notices = len(problems) - len(errors)
        verdict = "valid" if not errors else "INVALID"
        typer.echo(f"{run}: {verdict} ({len(errors)} error(s), {notices} notice(s))")
    raise typer.Exit(1 if errors else 0)


def migrate_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would change."),
) -> None:
    """Upgrade a run directory to the current schema version (keeps the old manifest)."""
    typer.echo(migrate_run(run, dry_run=dry_run))


def summarize_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    generations: Optional[str] = typer.Option(None, "--generations", help=GENERATIONS_HELP),
    ci: float = typer.Option(0.90, help="Coverage of the intervals."),
    save: bool = typer.Option(False, "--save", help="Also write the tables as CSV into "
                              "the run's summaries/ folder."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Per-generation statistics: N, mean, variance and excess kurtosis with intervals
    per set, concept and trait; selection quantities and realized heritability from the
    probes; set-level diversity."""
    from ..stats import summarize

    if not 0.0 < ci < 1.0:
        raise QtraitError(f"--ci must be in (0, 1), got {ci}")
    opened = open_run(run)
    summary = summarize(opened, ci=ci, generations=parse_generations(generations))
    if save:
        folder = opened.output_dir("summaries")
        for name in ("traits", "selection", "heritability", "diversity"):
            atomic_write_bytes(folder / f"{name}.csv",
                               getattr(summary, name).to_csv(index=False).encode("utf-8"))
    if json_out:
        print_json(summary.to_dict())
        return
    typer.echo(format_summary(opened, summary))
    if save:
        typer.echo(f"\ntables written to {opened.output_dir('summaries')}")


def format_summary(run, summary) -> str:
    """The human view of ``qtrait summarize``: a few tables a person reads top-down."""
    d = run.design
    pct = int(round(summary.ci * 100))
    concepts = sorted(summary.traits["concept"].unique())
    shown = sorted(summary.traits["generation"].unique())
    first = shown[0]
    subset = "" if len(shown) == len(run.generations) else \
        f"; showing generations {shown[0]}..{shown[-1]}"
    lines = [
        f"run {run.run_id}  (schema {run.schema_version}, {len(run.generations)} generations"
        f", {len(run.traits)} traits, {len(concepts)} concept(s){subset})",
        f"design: w = {d.get('cfg_scale')}, schedule {d.get('cfg_schedule')}, "
        f"p_drop = {d.get('p_drop')}, anchor = {d.get('anchor')}",
    ]
    if run.incomplete:
        lines.append(f"ignored incomplete generation(s): {run.incomplete}")

    div = summary.diversity
    lines += ["", f"Diversity over the {len(run.axes)} trait axes, per set ({pct}% intervals)"]
    for label, col in (("total variance tr(S)", "total_var"),
                       ("bias-corrected log generalized variance", "logdet")):
        table = div.assign(v=[_ci(getattr(r, col), getattr(r, col + "_lo"),
                                  getattr(r, col + "_hi")) for r in div.itertuples()])
        table = table.pivot(index="generation", columns="set", values="v")
        table = table[[s for s in SETS if s in table.columns]]
        lines += [f"{label}:", table.fillna("-").rename_axis("gen").rename_axis(None, axis=1)
                  .to_string()]

    guided = summary.traits[summary.traits["set"] == "guided"]
    agg = "" if len(concepts) == 1 else f" (median over {len(concepts)} concepts)"
    v = guided.pivot_table(index="generation", columns="trait", values="var",
                           aggfunc="median", sort=False)
    m = guided.pivot_table(index="generation", columns="trait", values="mean",
                           aggfunc="median", sort=False)
    v, m = v[run.traits], m[run.traits]
    lines += ["", f"Guided set: variance relative to generation {first}, V_t/V_{first}{agg}",
              (v / v.iloc[0]).round(3).rename_axis("gen").to_string(),
              "", f"Guided set: mean shift from generation {first} in generation-{first} SD "
              f"units{agg}",
              ((m - m.iloc[0]) / np.sqrt(v.iloc[0])).round(3).rename_axis("gen").to_string()]

    sel = summary.selection
    if not sel.empty:
        r = sel.pivot_table(index="generation", columns="trait", values="var_ratio",
                            aggfunc="median", sort=False)[run.traits]
        s = sel.pivot_table(index="generation", columns="trait", values="S",
                            aggfunc="median", sort=False)[run.traits]
        lines += ["", f"Selection: variance ratio guided / w=1 probe{agg}",
                  r.round(3).rename_axis("gen").to_string(),
                  "", f"Selection differential S = mean(guided) - mean(w=1 probe){agg}",
                  s.round(3).rename_axis("gen").to_string()]
    h = summary.heritability
    if not h.empty:
        method = h["method"].iloc[0]
        lines += ["", f"Realized heritability ({method.replace('_', ' ')}; anchor = "
                  f"{summary.anchor}; {pct}% intervals)"]
        h = h.assign(**{"h2 (interval)": [_ci(r.h2, r.h2_lo, r.h2_hi)
                                          for r in h.itertuples()]})
        lines.append(h.pivot(index="trait", columns="concept", values="h2 (interval)")
                     .loc[run.traits].to_string())
    for note in summary.notes:
        lines.append(f"note: {note}")
    lines += ["", "All statistics per set and concept: qtrait summarize --json, or --save "
              "for CSV tables."]
    return "\n".join(lines)


def _ci(est: float, lo: float, hi: float) -> str:
    if not np.isfinite(est):
        return "-"
    return f"{est:.3g} [{lo:.3g}, {hi:.3g}]"
