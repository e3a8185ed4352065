"""Two results side by side: ``optclaims compare A B`` (report.py) and the machinery the nightly
regression report shares with it: when two figures agree (agreement.py) and the side-by-side
report, rendered as Markdown and self-contained HTML (document.py)."""
