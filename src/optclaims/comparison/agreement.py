"""When two measurements of one figure agree, defined once: for `optclaims compare` (two results
folders side by side) and for the nightly check (which asks the same of a baseline and a rerun, with
a tolerance in place of the intervals).

Two estimates **agree when their intervals overlap**. An interval is a figure's reported [low, high]
(widened to hold its value, should a bootstrap put the value outside); a missing bound of a one-sided
interval is unbounded on that side; a figure with neither bound is the point [value, value]. So:

- both with intervals: agree iff the intervals overlap (for symmetric intervals, iff |a − b| is at
  most the sum of the two half-widths);
- one with an interval: agree iff the other value lies inside it;
- neither with one: equal values agree, unequal ones are shown but not judged (``no interval``);
- a value that is missing (not measurable: null) agrees only with another missing one; text and
  other non-numbers agree only when equal.

Overlap is the lenient reading on purpose: the comparison reports, it does not gate. Two 95%
intervals that do not even overlap differ at well beyond 95%; two that overlap may still differ a
little, which the Δ column shows.
"""

from __future__ import annotations

import math

AGREE, DIFFER, NO_INTERVAL = "agree", "differ", "no interval"
SAME, FLIPPED = "same", "flipped"
ONLY_A, ONLY_B = "only in A", "only in B"

RULE = ("two figures agree when their intervals overlap (a figure without an interval counts as its value "
        "alone; two without intervals agree only when equal, else they are shown as *no interval*, not judged)")


def number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def within(a, b, tol) -> bool:
    """The nightly's rule: numbers within ``tol`` of each other (b finite); anything else (None, e.g.
    an unbounded multiplier, or text) must be equal."""
    if not (number(a) and number(b)):
        return a == b
    return math.isfinite(b) and abs(b - a) <= tol


def delta(a, b):
    """b − a where both are numbers, else None."""
    return b - a if number(a) and number(b) else None


def interval(fig: dict) -> tuple[float, float] | None:
    """A figure's (low, high), widened to hold its value; a one-sided interval is unbounded on its
    missing side; None when the figure reports neither bound (or has no numeric value)."""
    value, low, high = fig.get("value"), fig.get("low"), fig.get("high")
    if not number(value) or (not number(low) and not number(high)):
        return None
    low = min(low, value) if number(low) else -math.inf
    high = max(high, value) if number(high) else math.inf
    return low, high


def agreement(a: dict, b: dict) -> tuple[str, str]:
    """(verdict, note) for one figure measured on two sides (``{"value", "low", "high", "unit"}`` each);
    figures in different units differ, whatever their numbers."""
    va, vb = a.get("value"), b.get("value")
    if a.get("unit") != b.get("unit"):
        return DIFFER, f"units differ: {a.get('unit')!r} in A, {b.get('unit')!r} in B"
    if not (number(va) and number(vb)):
        if va == vb:
            return AGREE, "neither side measurable" if va is None else "identical"
        if va is None or vb is None:
            return DIFFER, f"not measurable in {'A' if va is None else 'B'}"
        return DIFFER, ""
    ia, ib = interval(a), interval(b)
    if ia is None and ib is None:
        return (AGREE, "identical; no interval") if va == vb else (NO_INTERVAL, "neither side has an interval")
    note = "" if ia is not None and ib is not None else f"no interval in {'A' if ia is None else 'B'}"
    (la, ha), (lb, hb) = ia or (va, va), ib or (vb, vb)
    if la <= hb and lb <= ha:
        return AGREE, note
    return DIFFER, "; ".join(n for n in (note, "intervals disjoint") if n)


def paired(a: dict, b: dict):
    """(name, a's, b's) over the names of ``a`` in its order, then those only ``b`` has; a missing side
    is None."""
    for name, x in a.items():
        yield name, x, b.get(name)
    for name, y in b.items():
        if name not in a:
            yield name, None, y
