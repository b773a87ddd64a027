"""Reports: one page per run with the design, trajectories, selection and inheritance,
variance decay, the horizon forecast, diagnostics, model comparison, prior sensitivity,
the ReDiFine check and the run's images (``qtrait report``; docs/cli.md section 14).

* :mod:`.build` checks a request and computes the content (:func:`build_report`);
* :mod:`.sections` builds each section from a run, its fits and forecast (pure);
* :mod:`.sensitivity` power-scaling prior sensitivity and the criteria grid;
* :mod:`.figures` matplotlib figures (Agg canvas) as PNG bytes;
* :mod:`.fits` saved fits read back, or fitted now;
* :mod:`.writer` self-contained HTML, Markdown with figure files, CSV tables.
"""

from .build import ReportOptions, build_report, plan
from .document import Figure, Report, Section, Table, Text
from .fits import FitStore
from .writer import prepare_out, write_index, write_report

__all__ = ["Figure", "FitStore", "Report", "ReportOptions", "Section", "Table", "Text",
           "build_report", "plan", "prepare_out", "write_index", "write_report"]
