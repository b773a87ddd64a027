"""What a report is made of: sections of paragraphs, tables and figures (no I/O here).

The builders in :mod:`qtrait.report.sections` return these plain objects; the writers
in :mod:`qtrait.report.writer` turn one :class:`Report` into HTML, Markdown and CSV. A
table keeps its full data (written as CSV) apart from what the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Text:
    """A paragraph. ``kind``: ``p`` (plain), ``note`` (what could not be done and why),
    ``warn`` (a failed check and what to do)."""

    text: str
    kind: str = "p"


@dataclass
class Table:
    """A table: ``data`` goes to ``tables/<name>.csv`` in full; the page shows ``shown``
    (default: ``data``), at most ``max_rows`` rows. ``status`` names a column of ``shown``
    whose values ``pass``/``fail`` colour the rows."""

    name: str
    caption: str
    data: pd.DataFrame
    shown: pd.DataFrame | None = None
    status: str | None = None
    max_rows: int = 60

    @property
    def view(self) -> pd.DataFrame:
        return self.data if self.shown is None else self.shown


@dataclass
class Figure:
    """An image: a matplotlib figure rendered to PNG, or an image file of the run.
    ``name`` is its file name in ``figures/`` without the suffix."""

    name: str
    caption: str
    data: bytes
    suffix: str = "png"
    alt: str = ""

    @property
    def mime(self) -> str:
        return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                "webp": "image/webp"}.get(self.suffix, "image/png")


@dataclass
class Section:
    """One ``<section id="...">`` with an ``<h2>`` title."""

    id: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self

    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


@dataclass
class Report:
    """One report: its title, the lines under the title and the sections in order. The
    writers (:mod:`qtrait.report.writer`) turn it into HTML, Markdown and CSV files."""
    title: str
    meta: list[str]                 # lines under the title (what, when, with what)
    sections: list[Section]

    def section(self, section_id: str) -> Section:
        for s in self.sections:
            if s.id == section_id:
                return s
        raise KeyError(section_id)

    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables()]

    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures()]
