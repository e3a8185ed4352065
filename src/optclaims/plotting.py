"""Figure setup shared by every claim's analysis: a backend that needs no display, and one style
for the whole suite (seaborn's paper context, a colour-blind-safe palette). Import ``plt`` and
``sns`` from here rather than setting them up in each analyze.py."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(context="paper", style="whitegrid", palette="colorblind")

__all__ = ["plt", "sns"]
