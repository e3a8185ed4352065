"""One side of a comparison: a results folder read as what a comparison needs (each claim's verdict,
its headline figures, its table.csv and its figure files), whichever layout it has:

- a scale's results, ``results/<scale>/claims/<claim>/verdict.json`` (+ table.csv, figures/);
- committed references, ``results/reference/gpu/<claim>/verdict.json`` (the same files, one folder
  per claim, reference/layout.py).

The scale is read from the verdicts (every claim of one side must share it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..atomic import read_json
from ..reference import layout
from ..report.build import load_verdict

RESULTS, REFERENCE = "results", "reference"


@dataclass
class Claim:
    verdict: dict
    dir: Path

    @property
    def name(self) -> str:
        return self.verdict["claim"]

    def figures(self) -> dict[str, dict]:
        """The headline figures (verdict ``measured``), each as {value, low, high, unit, interval,
        timing}; a bare number is a figure without interval, a nested group is flattened to
        "group · name"."""
        return headline_figures(self.verdict.get("measured"))

    def sub_claims(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.verdict.get("sub_claims") or []}

    def table(self) -> pd.DataFrame | None:
        path = self.dir / "table.csv"
        if not path.is_file() or path.stat().st_size == 0:
            return None
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            return None
        except pd.errors.ParserError as e:
            raise ValueError(f"{path}: not a readable CSV ({e})") from e

    def figure_files(self) -> list[dict]:
        """The claim's own figures: {file, caption, path, exists}."""
        return [{"file": f["file"], "caption": f.get("caption", ""), "path": self.dir / f["file"],
                 "exists": (self.dir / f["file"]).is_file()} for f in self.verdict.get("figures") or []]


@dataclass
class Side:
    path: Path
    kind: str                 # RESULTS or REFERENCE
    scale: str
    claims: dict[str, Claim] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def describe(self) -> str:
        what = "reference folder" if self.kind == REFERENCE else "results folder"
        return f"{what} of {self.scale} scale, {len(self.claims)} claim{'s' * (len(self.claims) != 1)}"

    def commits(self) -> list[str]:
        """The code versions the side was made with (provenance.json; a reference's per claim)."""
        found = []
        sources = [self.provenance] if self.kind == RESULTS else [
            _read_optional(c.dir / layout.PROVENANCE) for c in self.claims.values()]
        for p in sources:
            for c in [p.get("git_commit"), *(p.get("git_commits") or [])]:
                if c and c not in found:
                    found.append(c)
        return found


def headline_figures(measured) -> dict[str, dict]:
    if not isinstance(measured, dict):
        return {} if measured is None else {"": _figure(measured)}
    if "value" in measured:
        return {"": _figure(measured)}
    out = {}
    for name, m in measured.items():
        if isinstance(m, dict) and "value" not in m:
            out.update({f"{name} · {k}": v for k, v in headline_figures(m).items()})
        else:
            out[name] = _figure(m)
    return out


def _figure(m) -> dict:
    if isinstance(m, dict):
        return {"value": m.get("value"), "low": m.get("low"), "high": m.get("high"), "unit": m.get("unit"),
                "interval": m.get("interval"), "timing": bool(m.get("timing"))}
    return {"value": m, "low": None, "high": None, "unit": None, "interval": None, "timing": False}


def _read_optional(path: Path) -> dict:
    try:
        return read_json(path) if path.is_file() else {}
    except ValueError:
        return {}


def layout_of(path: Path) -> tuple[str, list[Path]]:
    """(kind, verdict paths) of a folder, or a ValueError saying what it is not."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    scale_verdicts = sorted(path.glob("claims/*/verdict.json"))
    if scale_verdicts:
        return RESULTS, scale_verdicts
    reference_verdicts = [d / layout.VERDICT for d in layout.claim_dirs(path)]
    if reference_verdicts:
        return REFERENCE, reference_verdicts
    hint = ""
    inner = sorted({p.parts[len(path.parts)] for p in path.glob("*/claims/*/verdict.json")}
                   | {p.parts[len(path.parts)] for p in path.glob(f"*/*/{layout.VERDICT}")})
    if inner:
        hint = " (did you mean " + " or ".join(str(path / i) for i in inner) + "?)"
    raise ValueError(f"{path} is not a results folder: it has neither claims/<claim>/verdict.json (results/<scale>) "
                     f"nor <claim>/verdict.json (results/reference/gpu){hint}")


def read_side(path: Path) -> Side:
    """Read one side; every verdict is checked against the contract (report.build.load_verdict)."""
    path = Path(path)
    kind, verdict_paths = layout_of(path)
    claims = {}
    for p in verdict_paths:
        v = load_verdict(p)
        claims[v["claim"]] = Claim(v, p.parent)
    scales = sorted({str(c.verdict["scale"]) for c in claims.values()})
    if len(scales) != 1:
        raise ValueError(f"{path}: its verdicts are of several scales ({', '.join(scales)}): a results folder is one scale")
    prov = _read_optional(path / "provenance.json") if kind == RESULTS else {}
    return Side(path, kind, scales[0], dict(sorted(claims.items())), prov)


def read_pair(a: Path, b: Path) -> tuple[Side, Side]:
    """Both sides, refused when their scales differ (a smoke run says nothing about a gpu reference)."""
    sa, sb = read_side(a), read_side(b)
    if sa.scale != sb.scale:
        raise ValueError(f"cannot compare folders of different scales: A {a} is {sa.describe()}, "
                         f"B {b} is {sb.describe()}; compare two folders of the same scale")
    return sa, sb
