"""Paper-style report of one scale's verdicts: self-contained index.html plus report.md."""

from optclaims.report.build import build_report, collect

__all__ = ["build_report", "collect"]
