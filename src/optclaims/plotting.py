"""The one figure style of the suite, set here and nowhere else: a backend that needs no display,
seaborn's paper context, a colour-blind-safe palette, a fixed colour and marker for each optimizer,
parametrization and Muon scaling, one look for published values (reference lines and bands), and
units on every axis. Import ``plt`` and ``sns`` from here rather than setting them up in each
analyze.py, and take colours from ``style``/``palette`` rather than choosing them by hand.

Rules a reader can rely on across claims:

- AdamW is always blue circles, Muon orange squares, SGD brown triangles; SP vermilion diamonds,
  μP purple downward triangles; Muon's update scalings (spectral, Moonlight's, Keller's) have colours
  of their own. Where a figure's groups cross an optimizer with a parametrization (μP-Adam,
  Muon-spectral, ...), the colour is the parametrization's and the marker the optimizer's.
- Ordered quantities (widths, β1, sizes, layers) run through one sequential colour-blind-safe map
  (``sequential``).
- A published or predicted value is a dark grey dashed line (``reference_line``; several on one axes
  get one line style each, ``reference_lines``); a range a criterion accepts is a grey band
  (``reference_band``).
- Every axis label names its unit in parentheses: ``axis_label("final val loss", NATS)``.
  ``ClaimContext.save_figure`` refuses a figure with a labelled axis that has none
  (``missing_units``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"        # seaborn's colour-blind-safe qualitative palette (10 colours)
SEQUENTIAL = "viridis"        # perceptually uniform and colour-blind-safe, for ordered quantities

sns.set_theme(context="paper", style="whitegrid", palette=PALETTE)
COLORS = sns.color_palette(PALETTE)


@dataclass(frozen=True)
class Style:
    """How one optimizer, parametrization or comparison side is drawn in every figure."""

    label: str
    color: tuple
    marker: str

    def kwargs(self) -> dict:
        """color, marker and label, for ``ax.plot``/``ax.scatter``/``ax.errorbar``."""
        return {"color": self.color, "marker": self.marker, "label": self.label}


OPTIMIZERS = {
    "adamw": Style("AdamW", COLORS[0], "o"),
    "muon": Style("Muon", COLORS[1], "s"),
    "sgd": Style("SGD", COLORS[5], "^"),
}
PARAMETRIZATIONS = {
    "sp": Style("SP", COLORS[3], "D"),
    "mup": Style("μP", COLORS[4], "v"),
}
MUON_SCALES = {  # Muon's update scaling plays the parametrization's part for Muon's matrices
    "spectral": Style("spectral", COLORS[9], "P"),
    "moonlight": Style("Moonlight", COLORS[2], "X"),
    "keller": Style("Keller", COLORS[6], "*"),
}
STYLES = {**OPTIMIZERS, **PARAMETRIZATIONS, **MUON_SCALES}
# Other spellings the claims use for the same things.
ALIASES = {"adam": "adamw", "control": "sgd", "μp": "mup", "standard": "sp"}
# The two sides of a comparison (`optclaims compare`, the nightly): near-black circles, vermilion diamonds.
SIDES = (Style("A", (0.15, 0.15, 0.15), "o"), Style("B", COLORS[3], "D"))

REFERENCE_COLOR = "0.25"
REFERENCE_LINESTYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
BAND_COLOR, BAND_ALPHA = "0.5", 0.15


def style(key: str, fallback: Style | None = None) -> Style:
    """The style of an optimizer, parametrization or Muon scaling (``"adamw"``, ``"mup"``, ...), or
    of a combination of both (``"mup_adam"``, ``"muon_spectral"``, ``"SP-Adam"``): the colour of its
    parametrization, the marker of its optimizer. A key that names none of them is a KeyError, or
    ``fallback`` where one is given."""
    name = _canonical(key)
    if name in STYLES:
        return STYLES[name]
    parts = [_canonical(p) for p in re.split(r"[-_ /]+", name) if p]
    opt = next((OPTIMIZERS[p] for p in parts if p in OPTIMIZERS), None)
    par = next((STYLES[p] for p in parts if p in PARAMETRIZATIONS or p in MUON_SCALES), None)
    if opt is None and par is None:
        if fallback is not None:
            return fallback
        raise KeyError(f"no fixed style for {key!r}: known are {', '.join(STYLES)} (and their combinations)")
    return Style(str(key), (par or opt).color, (opt or par).marker)


def _canonical(key) -> str:
    k = str(key).strip().lower()
    return ALIASES.get(k, k)


def palette(keys) -> dict:
    """{key: colour} for seaborn's ``palette=`` (each key's fixed colour)."""
    return {k: style(k).color for k in keys}


def markers(keys) -> dict:
    """{key: marker} for seaborn's ``markers=``."""
    return {k: style(k).marker for k in keys}


def sequential(values) -> dict:
    """{value: colour} for an ordered quantity (widths, β1, sizes, layers), in the order given."""
    values = list(dict.fromkeys(values))
    return dict(zip(values, sns.color_palette(SEQUENTIAL, len(values))))


def reference_line(ax, value: float, label: str | None = None, *, axis: str = "y", index: int = 0,
                   color=None, **kwargs):
    """A published or predicted value: a dashed dark grey line across the axes (``axis="x"``: a
    vertical line at x = value); ``index`` picks the line style when several share one axes, and
    ``color`` ties it to a group drawn in that colour."""
    line = ax.axhline if axis == "y" else ax.axvline
    opts = {"color": REFERENCE_COLOR if color is None else color, "lw": 1.0,
            "ls": REFERENCE_LINESTYLES[index % len(REFERENCE_LINESTYLES)], "zorder": 1.5, **kwargs}
    return line(value, label=label, **opts)


def reference_lines(ax, values: dict, *, axis: str = "y", **kwargs) -> None:
    """Several published values ({label: value}) on one axes, one line style each."""
    for i, (name, value) in enumerate(values.items()):
        reference_line(ax, value, name, axis=axis, index=i, **kwargs)


def reference_band(ax, low: float, high: float, label: str | None = None, *, axis: str = "y", color=None,
                   alpha: float = BAND_ALPHA, **kwargs):
    """A range a criterion accepts (or a published range): a grey band across the axes."""
    span = ax.axhspan if axis == "y" else ax.axvspan
    return span(low, high, color=BAND_COLOR if color is None else color, alpha=alpha, lw=0, label=label,
                zorder=0.5, **kwargs)


# ------------------------------------------------------------------ units

NATS = "nats/token"
TOKENS = "tokens"
STEPS = "optimizer steps"
LOG2 = "log2"
DIMENSIONLESS = "dimensionless"
PARAMS = "parameters"
DIMENSIONS = "dimensions"
NORM = "L2 norm"
TIMES = "×"
LAYERS = "layers"


def axis_label(quantity: str, unit: str) -> str:
    """An axis label with its unit: ``axis_label("final val loss", NATS)`` → "final val loss (nats/token)"."""
    return f"{quantity} ({unit})"


_UNIT = re.compile(r"\([^()]+\)\s*$|\[[^\[\]]+\]\s*$")


def has_unit(text: str) -> bool:
    """A label ends with its unit in parentheses or brackets."""
    return bool(_UNIT.search(text))


def missing_units(fig) -> list[str]:
    """The labels of the figure's visible axes that name no unit, each once (empty labels, e.g. a
    shared axis labelled once, are fine)."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for which, text in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            if text.strip() and not has_unit(text) and f"{which}: {text!r}" not in out:
                out.append(f"{which}: {text!r}")
    return out


__all__ = ["plt", "sns", "COLORS", "Style", "STYLES", "OPTIMIZERS", "PARAMETRIZATIONS", "MUON_SCALES", "SIDES",
           "style", "palette", "markers", "sequential", "reference_line", "reference_lines", "reference_band",
           "axis_label", "has_unit", "missing_units", "NATS", "TOKENS", "STEPS", "LOG2", "DIMENSIONLESS", "PARAMS",
           "DIMENSIONS", "LAYERS", "NORM", "TIMES"]
