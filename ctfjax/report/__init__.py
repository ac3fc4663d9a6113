"""Reports of a run: report.json (schema), markdown / CSV tables, figures.

    from ctfjax import report
    report.schema.write(rep, "runs/x/report.json")   # validated, atomic
    report.tables.markdown(rep)                       # report.md
    report.figures.bounds_figure(rep, "bounds.png")

Nothing here needs a model: every output is drawn from a report dict (and,
for edits.png, arrays of images).
"""

from ctfjax.report import figures, schema, tables
from ctfjax.report.schema import ReportError, validate

__all__ = ["ReportError", "figures", "schema", "tables", "validate"]
