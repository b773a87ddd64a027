"""Writers: one :class:`~qtrait.report.document.Report` as a self-contained HTML page
(figures embedded as base64, no external resources), as Markdown (figures as files in
``figures/``) and its tables as CSV in ``tables/``."""

from __future__ import annotations

import base64
import html
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import QtraitError
from ..rundir.io import atomic_write_bytes
from .document import Figure, Report, Table, Text

#: what a report folder holds; a rewrite replaces exactly these
OUTPUTS = ("report.html", "report.md", "figures", "tables")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1em 2em 4em; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em;
margin-top: 2em; }
p.meta { color: #57606a; margin: 0.1em 0; font-size: 0.92em; }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.4em 0 1.2em; }
th, td { border: 1px solid #d0d7de; padding: 0.2em 0.5em; text-align: right; }
th { background: #f6f8fa; } td.text { text-align: left; }
tr.pass td { background: #dafbe1; } tr.fail td { background: #ffebe9; }
figure { margin: 0.6em 0 1.4em; } figcaption { color: #57606a; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
.note { background: #f6f8fa; border-left: 4px solid #8c959f; padding: 0.4em 0.8em; }
.warn { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 0.4em 0.8em; }
.grids { display: flex; flex-wrap: wrap; gap: 1em; }
.grids figure { width: 210px; margin: 0; }
"""


def fmt(v) -> str:
    """A cell as text: 4 significant digits for floats, '-' for missing values."""
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):.4g}"
    return str(v)


def _shown(t: Table) -> pd.DataFrame:
    return t.view.head(t.max_rows)


def _cut_note(t: Table) -> str:
    n = len(t.view)
    return f" (first {t.max_rows} of {n} rows)" if n > t.max_rows else ""


# --- HTML ------------------------------------------------------------------------------

def _html_table(t: Table) -> str:
    df = _shown(t)
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cls = ""
        if t.status is not None and row[t.status] in ("pass", "fail"):
            cls = f' class="{row[t.status]}"'
        cells = "".join(
            f'<td class="text">{e(fmt(v))}</td>' if isinstance(v, str) else f"<td>{e(fmt(v))}</td>"
            for v in row.values)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return (f'<figure class="table" id="table-{e(t.name)}"><figcaption>{e(t.caption)}'
            f'{e(_cut_note(t))} (CSV: <a href="tables/{e(t.name)}.csv">tables/{e(t.name)}.csv'
            f"</a>)</figcaption><table><thead><tr>{head}</tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table></figure>")


def _html_figure(f: Figure) -> str:
    e = html.escape
    b64 = base64.b64encode(f.data).decode("ascii")
    return (f'<figure id="fig-{e(f.name)}"><img src="data:{f.mime};base64,{b64}" '
            f'alt="{e(f.alt or f.caption)}" data-figure="{e(f.name)}">'
            f"<figcaption>{e(f.caption)}</figcaption></figure>")


def to_html(report: Report) -> str:
    """The report as one self-contained HTML page: figures embedded as base64 PNG, nothing
    loaded from outside the page."""
    e = html.escape
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(report.title)}</title><style>{CSS}</style></head><body>",
           f"<header><h1>{e(report.title)}</h1>"]
    out += [f'<p class="meta">{e(line)}</p>' for line in report.meta]
    out.append("<nav><ul>" + "".join(f'<li><a href="#{e(s.id)}">{e(s.title)}</a></li>'
                                      for s in report.sections) + "</ul></nav></header><main>")
    for s in report.sections:
        out.append(f'<section id="{e(s.id)}"><h2>{e(s.title)}</h2>')
        grids = []
        for b in s.blocks:
            if isinstance(b, Figure) and b.name.startswith("images-"):
                grids.append(_html_figure(b))
                continue
            if grids:
                out.append('<div class="grids">' + "".join(grids) + "</div>")
                grids = []
            if isinstance(b, Text):
                cls = "" if b.kind == "p" else f' class="{b.kind}"'
                out.append(f"<p{cls}>{e(b.text)}</p>")
            elif isinstance(b, Table):
                out.append(_html_table(b))
            elif isinstance(b, Figure):
                out.append(_html_figure(b))
        if grids:
            out.append('<div class="grids">' + "".join(grids) + "</div>")
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


# --- Markdown ----------------------------------------------------------------------------

def _md_cell(v) -> str:
    return fmt(v).replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    df = _shown(t)
    lines = [f"*{t.caption}{_cut_note(t)} (CSV: [tables/{t.name}.csv](tables/{t.name}.csv))*",
             "", "| " + " | ".join(_md_cell(c) for c in df.columns) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    for _, row in df.iterrows():
        cells = [_md_cell(v) for v in row.values]
        if t.status is not None and row[t.status] == "fail":
            cells = [c if c != "fail" else "**FAIL**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    """The report as Markdown: the same text and tables, figures linked as
    ``figures/<name>.<suffix>``."""
    out = [f"# {report.title}", ""]
    out += [f"{line}  " for line in report.meta]
    out += ["", "Sections: " + ", ".join(f"[{s.title}](#{s.id})" for s in report.sections), ""]
    for s in report.sections:
        out += [f'<a id="{s.id}"></a>', "", f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                prefix = {"note": "> Note: ", "warn": "> **Warning:** "}.get(b.kind, "")
                out += [prefix + b.text, ""]
            elif isinstance(b, Table):
                out += [_md_table(b), ""]
            elif isinstance(b, Figure):
                out += [f"![{b.alt or b.caption}](figures/{b.name}.{b.suffix})", "",
                        f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


# --- files -------------------------------------------------------------------------------

def check_names(report: Report) -> None:
    """Table and figure names are file names: unique within a report."""
    for kind, names in (("table", [t.name for t in report.tables()]),
                        ("figure", [f.name for f in report.figures()])):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate {kind} name(s) in the report: {dup}")


def prepare_out(out: Path) -> Path:
    """Create the output folder (and parents) and make sure it can be written; a folder
    that already holds files other than a previous report's is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QtraitError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir()
                        if p.name not in OUTPUTS and not _is_run_report(p))
        if others:
            raise QtraitError(f"--out {out}: the folder holds other files ({', '.join(others[:5])}"
                              f"{' ...' if len(others) > 5 else ''})",
                              hint="give a new or empty folder, or the folder of an earlier "
                              "report (its report files are replaced)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".qtrait-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise QtraitError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def _is_run_report(p: Path) -> bool:
    """A per-run subfolder or the index of a several-run report."""
    if p.name in ("index.html", "index.md"):
        return True
    return p.is_dir() and (p / "report.html").exists()


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``figures/*`` and ``tables/*.csv`` into ``out``
    (an existing folder), replacing an earlier report there. Returns the paths."""
    check_names(report)
    out = Path(out)
    for name in ("figures", "tables"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        (out / name).mkdir()
    for t in report.tables():
        atomic_write_bytes(out / "tables" / f"{t.name}.csv",
                           t.data.to_csv(index=False).encode("utf-8"))
    for f in report.figures():
        atomic_write_bytes(out / "figures" / f"{f.name}.{f.suffix}", f.data)
    atomic_write_bytes(out / "report.md", to_markdown(report).encode("utf-8"))
    atomic_write_bytes(out / "report.html", to_html(report).encode("utf-8"))
    return {"html": out / "report.html", "markdown": out / "report.md",
            "figures": out / "figures", "tables": out / "tables"}


def write_index(entries: list[dict], out: Path, title: str) -> dict[str, Path]:
    """The index of a several-run report: one line per run, linking its report."""
    e = html.escape
    items = "".join(f'<li><a href="{e(x["run_id"])}/report.html">{e(x["run_id"])}</a>: '
                    f'{e(x["summary"])}</li>' for x in entries)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}'
            f"</title><style>{CSS}</style></head><body><h1>{e(title)}</h1>"
            f'<section id="runs"><h2>Runs</h2><ul>{items}</ul></section></body></html>\n')
    md = "\n".join([f"# {title}", "", *(f"- [{x['run_id']}]({x['run_id']}/report.md): "
                                        f"{x['summary']}" for x in entries)]) + "\n"
    atomic_write_bytes(out / "index.html", page.encode("utf-8"))
    atomic_write_bytes(out / "index.md", md.encode("utf-8"))
    return {"html": out / "index.html", "markdown": out / "index.md"}
