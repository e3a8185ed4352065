"""Paper-style report of one scale's verdicts: self-contained index.html plus report.md, and the
LaTeX report beside them (report.tex, references.bib, tables/, figures/; report.pdf by report-pdf)."""

from optclaims.report.build import build_report, collect

__all__ = ["build_report", "collect"]
