"""A claim's table.csv on two sides, row by row: which rows match, and per column how many matched
rows differ and by how much. Rows are matched by a key: ``run_id`` where both tables have it unique,
else the shortest run of leading text and integer columns that is unique on both sides (the tables
lead with what a row is: arm, init, width, ...), else by position when both have as many rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Column:
    name: str
    kind: str                      # "number" or "text"
    n: int                         # matched rows compared
    n_differ: int
    max_abs: float | None = None   # largest |B − A| over rows finite on both sides
    max_rel: float | None = None   # ... relative to max(|A|, |B|)


@dataclass
class TableComparison:
    key: list[str] | None          # None: rows paired by position (or not matched: see problem)
    n_a: int
    n_b: int
    n_matched: int = 0
    columns: list[Column] = field(default_factory=list)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # numeric columns: A, B values
    only_a: list[str] = field(default_factory=list)   # columns only one side has
    only_b: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def differing(self) -> list[Column]:
        return [c for c in self.columns if c.n_differ]

    def summary(self) -> str:
        if self.problem:
            return self.problem
        how = f"matched by {', '.join(self.key)}" if self.key else "paired by position"
        text = f"{self.n_matched} rows {how} (A {self.n_a}, B {self.n_b} rows)"
        if self.only_a or self.only_b:
            text += "; columns only in A: " + (", ".join(self.only_a) or "none") + \
                    ", only in B: " + (", ".join(self.only_b) or "none")
        d = self.differing
        return text + (f"; {len(d)} of {len(self.columns)} columns differ on some row" if d
                       else f"; all {len(self.columns)} compared columns identical on every matched row")


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def row_key(a: pd.DataFrame, b: pd.DataFrame) -> list[str] | None:
    common = [c for c in a.columns if c in b.columns]
    if "run_id" in common and a["run_id"].is_unique and b["run_id"].is_unique:
        return ["run_id"]
    key = []
    for c in common:
        if pd.api.types.is_float_dtype(a[c]) or pd.api.types.is_float_dtype(b[c]) or pd.api.types.is_bool_dtype(a[c]):
            break
        key.append(c)
        if not a.duplicated(key).any() and not b.duplicated(key).any():
            return key
    return None


def compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> TableComparison:
    out = TableComparison(None, len(a), len(b))
    out.only_a = [c for c in a.columns if c not in b.columns]
    out.only_b = [c for c in b.columns if c not in a.columns]
    key = row_key(a, b)
    if key is not None:
        ka, kb = a[key].astype(str).agg("\x1f".join, axis=1), b[key].astype(str).agg("\x1f".join, axis=1)
        shared = ka[ka.isin(set(kb))]
        left = a.loc[shared.index].reset_index(drop=True)
        right = b.set_index(kb).loc[shared.to_numpy()].reset_index(drop=True)
        out.key = key
    elif len(a) == len(b):
        left, right = a.reset_index(drop=True), b.reset_index(drop=True)
    else:
        out.problem = (f"rows not matched: no leading key columns are unique on both sides, and the row counts "
                       f"differ (A {len(a)}, B {len(b)})")
        return out
    out.n_matched = len(left)
    for c in [c for c in a.columns if c in b.columns and c not in (key or [])]:
        x, y = left[c], right[c]
        if _numeric(x) and _numeric(y):
            xf, yf = x.to_numpy(float), y.to_numpy(float)
            same = (xf == yf) | (np.isnan(xf) & np.isnan(yf))
            finite = np.isfinite(xf) & np.isfinite(yf)
            diff = np.abs(yf - xf)[finite]
            scale = np.maximum(np.abs(xf), np.abs(yf))[finite]
            rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
            out.columns.append(Column(c, "number", len(x), int((~same).sum()),
                                      float(diff.max()) if diff.size else None, float(rel.max()) if rel.size else None))
            out.pairs[c] = (xf, yf)
        else:
            same = x.fillna("").astype(str).to_numpy() == y.fillna("").astype(str).to_numpy()
            out.columns.append(Column(c, "text", len(x), int((~same).sum())))
    return out
