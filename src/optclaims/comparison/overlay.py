"""The figures of a comparison, A and B drawn on the same axes in the suite's style (plotting.py):

- per claim, its headline figures (verdict ``measured``): one small panel per figure, A's and B's
  value with their interval bars, titled with the agreement;
- per claim, its table.csv: for each numeric column that differs on some matched row, B's value
  against A's on one axes (a parity plot; on the diagonal, the two sides agree).

The claims' own plots are drawn by their analyze.py from the runs, which a comparison does not
re-run: the report shows each of them from A and from B side by side instead."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from ..plotting import REFERENCE_COLOR, SIDES, axis_label, plt
from .agreement import DIFFER, NO_INTERVAL, interval, number
from .tables import TableComparison

MAX_TABLE_PANELS = 12
VERDICT_COLOR = {DIFFER: SIDES[1].color, NO_INTERVAL: "0.45"}


def save(fig, path: Path) -> Path:
    """PNG (for the HTML and Markdown) and PDF beside it (for papers), as the claims' figures."""
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)
    return path


def _bar(fig: dict) -> tuple[float, list[list[float]]] | None:
    """(value, xerr) of a figure, the error bar only over the finite part of its interval."""
    v = fig.get("value")
    if not number(v) or not math.isfinite(v):
        return None
    iv = interval(fig)
    if iv is None:
        return v, [[0.0], [0.0]]
    lo, hi = iv
    return v, [[v - lo if math.isfinite(lo) else 0.0], [hi - v if math.isfinite(hi) else 0.0]]


def _window(row: dict, least: float = 0.1) -> tuple[float, float]:
    """x limits holding both values and the finite parts of their intervals, at least ``least`` of the
    largest |value| wide: a difference in the seventh digit must not fill the panel."""
    xs = []
    for key in ("a_figure", "b_figure"):
        f = row.get(key) or {}
        bar = _bar(f)
        if bar:
            xs += [bar[0], bar[0] - bar[1][0][0], bar[0] + bar[1][1][0]]
    lo, hi = min(xs), max(xs)
    width = max(hi - lo, least * max(abs(x) for x in xs), 1e-12)
    mid = (lo + hi) / 2
    half = width / 2 * 1.15
    return mid - half, mid + half


def headline_plot(rows: list[dict], labels: tuple[str, str], path: Path) -> Path | None:
    """One panel per headline figure of a claim (rows of kind "figure", with ``a_figure``/``b_figure``);
    None when no figure has a number on either side."""
    shown = [r for r in rows if _bar(r.get("a_figure") or {}) or _bar(r.get("b_figure") or {})]
    if not shown:
        return None
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols, 1.45 * nrows + 0.3), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, shown):
        for y, (side, key) in zip((1, 0), zip(SIDES, ("a_figure", "b_figure"))):
            bar = _bar(r.get(key) or {})
            if bar is None:
                ax.text(0.02, y, "not measured", transform=ax.get_yaxis_transform(), va="center", fontsize=6,
                        color="0.4")
                continue
            value, xerr = bar
            ax.errorbar([value], [y], xerr=xerr, fmt=side.marker, color=side.color, capsize=3, ms=5)
        ax.set_xlim(*_window(r))
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.set_ylim(-0.7, 1.7)
        ax.set_yticks([1, 0], list(labels))
        unit = (r.get("a_figure") or r.get("b_figure") or {}).get("unit")
        ax.set_xlabel(axis_label("value", unit or "no unit given"), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(axis="y", visible=False)
        title = "\n".join(textwrap.wrap(str(r["name"]), 48)[:2])
        ax.set_title(f"{title}\n{r['verdict']}", fontsize=7, color=VERDICT_COLOR.get(r["verdict"], "black"))
    return save(fig, path)


def table_plot(table: TableComparison, labels: tuple[str, str], path: Path) -> Path | None:
    """B against A for each numeric column of table.csv that differs somewhere (the largest relative
    differences first, at most MAX_TABLE_PANELS); None when none does."""
    cols = sorted((c for c in table.differing if c.kind == "number" and c.max_abs is not None),
                  key=lambda c: -(c.max_rel or 0.0))[:MAX_TABLE_PANELS]
    if not cols:
        return None
    ncols = min(4, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 2.7 * nrows), squeeze=False, constrained_layout=True)
    for ax in axes.flat[len(cols):]:
        ax.set_visible(False)
    for ax, c in zip(axes.flat, cols):
        x, y = table.pairs[c.name]
        ok = np.isfinite(x) & np.isfinite(y)
        same = ok & (x == y)
        ax.scatter(x[same], y[same], s=10, color="0.6", marker="o", label="equal")
        ax.scatter(x[ok & ~same], y[ok & ~same], s=14, color=SIDES[1].color, marker=SIDES[1].marker, label="differ")
        lo, hi = float(min(x[ok].min(), y[ok].min())), float(max(x[ok].max(), y[ok].max()))
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 0.05
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.axline((lo, lo), slope=1, color=REFERENCE_COLOR, lw=0.8, ls="--", zorder=0.5)
        ax.set_xlabel(axis_label(f"{labels[0]}: {c.name}", "as in table.csv"), fontsize=7)
        ax.set_ylabel(axis_label(f"{labels[1]}: {c.name}", "as in table.csv"), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(f"{c.name}: {c.n_differ} of {c.n} rows differ", fontsize=7)
    return save(fig, path)
