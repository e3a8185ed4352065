"""`optclaims compare A B`: two results folders of one scale side by side (yours and
``results/reference/gpu``, two machines' smoke runs, before and after a change). For every claim:
its status and its sub-claims' statuses (a flip is named), each headline figure with both values and
whether they agree within their intervals (agreement.py), its table.csv row by row (tables.py), and
the figures of both overlaid (overlay.py) or, for the claims' own plots, side by side.

Writes ``compare.md``, ``compare.html`` (self-contained) and ``compare.json`` with ``figures/``
(PNG and PDF) into the out folder. A comparison reports; it does not gate."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_json, write_text
from ..report.build import STATUS_LABELS, escape_markdown, fmt_measured, fmt_num
from . import overlay
from .agreement import (AGREE, DIFFER, FLIPPED, NO_INTERVAL, ONLY_A, ONLY_B, RULE, SAME, agreement, delta, paired)
from .document import Bullets, Document, Figure, Heading, Image, Paragraph, Table, html_page, markdown, row_table
from .sides import Side, read_pair
from .tables import compare_tables

LABELS = ("A", "B")
STATUS_KINDS = ("status", "sub-claim")
COLUMNS = [("kind", "kind"), ("name", "name"), ("A", "a_text"), ("B", "b_text"), ("Δ (B − A)", "delta"),
           ("unit", "unit"), ("agreement", "verdict"), ("note", "note")]
FLIP_COLUMNS = [("claim", "claim"), ("kind", "kind"), ("name", "name"), ("A", "a_text"), ("B", "b_text"),
                ("note", "note")]
SHIFT_COLUMNS = [("claim", "claim"), ("name", "name"), ("A", "a_text"), ("B", "b_text"), ("Δ (B − A)", "delta"),
                 ("unit", "unit"), ("note", "note")]


def estimate_text(fig: dict | None) -> str | None:
    """"value [low, high]" (4 significant digits), or None for a side without the figure."""
    if fig is None:
        return None
    text = fmt_num(fig.get("value"), 4)
    if fig.get("low") is not None or fig.get("high") is not None:
        text += f" [{fmt_num(fig.get('low'), 4)}, {fmt_num(fig.get('high'), 4)}]"
    return text


def _row(kind, claim, name, a_text, b_text, verdict, note="", **extra) -> dict:
    return {"kind": kind, "claim": claim, "name": name, "a_text": a_text, "b_text": b_text, "delta": None,
            "unit": None, "verdict": verdict, "note": note, **extra}


def _status_verdict(a, b) -> str:
    return ONLY_B if a is None else ONLY_A if b is None else SAME if a == b else FLIPPED


def _label(status) -> str | None:
    return None if status is None else STATUS_LABELS.get(status, str(status))


def claim_rows(claim: str, a, b) -> list[dict]:
    """Every row of one claim (``a``/``b``: sides.Claim, or None where a side lacks the claim)."""
    va, vb = (a.verdict if a else None), (b.verdict if b else None)
    sa, sb = (va or {}).get("status"), (vb or {}).get("status")
    verdict = _status_verdict(sa, sb)
    note = {ONLY_A: "claim not in B", ONLY_B: "claim not in A", FLIPPED: "status flipped"}.get(verdict, "")
    rows = [_row("status", claim, "claim", _label(sa), _label(sb), verdict, note)]
    if a is None or b is None:
        return rows
    for name, x, y in paired(a.sub_claims(), b.sub_claims()):
        verdict = _status_verdict(x and x["status"], y and y["status"])
        note = ""
        if verdict == FLIPPED:
            note = (f"status flipped; measured in A: {fmt_measured(x.get('measured', ''))}; "
                    f"in B: {fmt_measured(y.get('measured', ''))}")
        rows.append(_row("sub-claim", claim, name, _label(x and x["status"]), _label(y and y["status"]), verdict, note))
    for name, x, y in paired(a.figures(), b.figures()):
        if x is None or y is None:
            verdict, note = (ONLY_B, "figure not in A") if x is None else (ONLY_A, "figure not in B")
        else:
            verdict, note = agreement(x, y)
        if (x or y or {}).get("timing"):
            note = "; ".join(n for n in (note, "rests on wall time") if n)
        rows.append(_row("figure", claim, name, estimate_text(x), estimate_text(y), verdict, note,
                         delta=delta((x or {}).get("value"), (y or {}).get("value")),
                         unit=(x or y or {}).get("unit"), a_figure=x, b_figure=y))
    return rows


def compare(a: Side, b: Side) -> dict:
    """The comparison of two sides (read_pair): its rows and their counts."""
    if a.scale != b.scale:
        raise ValueError(f"cannot compare folders of different scales: A {a.path} is {a.describe()}, "
                         f"B {b.path} is {b.describe()}")
    names = list(a.claims) + [c for c in b.claims if c not in a.claims]
    rows = [r for c in names for r in claim_rows(c, a.claims.get(c), b.claims.get(c))]
    figures = [r for r in rows if r["kind"] == "figure"]
    flips = [r for r in rows if r["kind"] in STATUS_KINDS and r["verdict"] == FLIPPED]
    counts = {v: sum(r["verdict"] == v for r in figures) for v in (AGREE, DIFFER, NO_INTERVAL, ONLY_A, ONLY_B)}
    return {"scale": a.scale, "sides": {"A": _side_info(a), "B": _side_info(b)}, "claims": names, "rows": rows,
            "flips": flips, "shifts": [r for r in figures if r["verdict"] == DIFFER], "figure_counts": counts,
            "n_figures": len(figures),
            "only": {"A": [c for c in a.claims if c not in b.claims], "B": [c for c in b.claims if c not in a.claims]}}


def _side_info(side: Side) -> dict:
    return {"path": str(side.path), "kind": side.kind, "scale": side.scale, "describe": side.describe(),
            "commits": side.commits()}


# ---------------------------------------------------------------- the report

def _summary(result: dict) -> list[str]:
    flips, c, n = result["flips"], result["figure_counts"], result["n_figures"]
    items = []
    for label, info in result["sides"].items():
        commits = ", ".join(f"`{x[:12]}`" for x in info["commits"]) or "not recorded"
        items.append(f"**{label}**: `{info['path']}`, {info['describe']}; code {commits}")
    n_claims = sum(r["kind"] == "status" for r in flips)
    items.append("Verdict flips: " + (f"**{len(flips)}** ({n_claims} claim status{'es' * (n_claims != 1)}, "
                                      f"{len(flips) - n_claims} sub-claim{'s' * (len(flips) - n_claims != 1)})"
                                      if flips else "none"))
    items.append(f"Headline figures: {c[AGREE]} of {n} agree, **{c[DIFFER]} differ**, {c[NO_INTERVAL]} without "
                 f"an interval on either side (shown, not judged)"
                 + (f", {c[ONLY_A] + c[ONLY_B]} on one side only" if c[ONLY_A] + c[ONLY_B] else ""))
    items.append("Agreement: " + RULE)
    for label, only in result["only"].items():
        if only:
            items.append(f"Claims only in {label}: " + ", ".join(only))
    return items


def _caption_figures(claim: str) -> str:
    return (f"Headline figures of {escape_markdown(claim)}: A (near-black circles) and B (vermilion diamonds) with "
            "their reported intervals; each panel's title gives the agreement.")


def overview(result: dict) -> Table:
    """One line per claim: its status on both sides, its sub-claim flips and how its figures compare."""
    lines, marks = [], []
    for claim in result["claims"]:
        rows = [r for r in result["rows"] if r["claim"] == claim]
        status = rows[0]
        subs = [r for r in rows if r["kind"] == "sub-claim"]
        figs = [r for r in rows if r["kind"] == "figure"]
        count = lambda v: sum(r["verdict"] == v for r in figs)  # noqa: E731
        flipped = sum(r["verdict"] == FLIPPED for r in subs)
        lines.append([claim, status["a_text"], status["b_text"], f"{flipped} of {len(subs)}",
                      f"{count(AGREE)} agree, {count(DIFFER)} differ, {count(NO_INTERVAL)} no interval"
                      + (f", {count(ONLY_A) + count(ONLY_B)} one side only" if count(ONLY_A) + count(ONLY_B) else "")])
        marks.append(FLIPPED if status["verdict"] == FLIPPED or flipped else
                     DIFFER if count(DIFFER) else status["verdict"] if status["verdict"] in (ONLY_A, ONLY_B) else None)
    return Table(["claim", "status in A", "status in B", "sub-claims flipped", "headline figures"], lines, marks)


def build_document(result: dict, a: Side, b: Side, out_dir: Path) -> Document:
    """The report, drawing the overlaid figures into ``out_dir/figures``."""
    doc = Document(f"Comparison at {result['scale']} scale: A against B")
    doc.add(Bullets(_summary(result)))
    doc.add(Heading("Claims"), overview(result))
    doc.add(Heading("Verdict flips"))
    doc.add(row_table(result["flips"], FLIP_COLUMNS) if result["flips"] else
            Paragraph("None: every claim and sub-claim has the same status on both sides."))
    doc.add(Heading("Figures that differ"))
    doc.add(row_table(result["shifts"], SHIFT_COLUMNS, digits=4) if result["shifts"] else
            Paragraph("None: every headline figure measured on both sides agrees within its interval or has none."))
    figures_dir = Path(out_dir) / "figures"
    for claim in result["claims"]:
        ca, cb = a.claims.get(claim), b.claims.get(claim)
        rows = [r for r in result["rows"] if r["claim"] == claim]
        title = (ca or cb).verdict.get("title", "")
        doc.add(Heading(f"{escape_markdown(claim)}: {escape_markdown(title)}", anchor=claim))
        doc.add(row_table(rows, COLUMNS, digits=4))
        if ca is None or cb is None:
            continue
        plot = overlay.headline_plot([r for r in rows if r["kind"] == "figure"], LABELS,
                                     figures_dir / f"{claim}-headline.png")
        if plot:
            doc.add(Figure([Image(plot)], _caption_figures(claim)))
        doc.add(Heading("table.csv", 3))
        doc.add(*_table_blocks(claim, ca, cb, figures_dir))
        doc.add(Heading("The claim's figures, A and B", 3))
        doc.add(*_claim_figure_blocks(ca, cb))
    return doc


def _table_blocks(claim: str, a, b, figures_dir: Path) -> list:
    ta, tb = a.table(), b.table()
    if ta is None or tb is None:
        missing = " and ".join(s for s, t in zip(LABELS, (ta, tb)) if t is None)
        return [Paragraph(f"No table.csv in {missing}.")]
    cmp = compare_tables(ta, tb)
    blocks = [Paragraph(escape_markdown(cmp.summary()) + ".")]
    if cmp.differing:
        blocks.append(Table(["column", "kind", "rows compared", "rows differing", "max |Δ|", "max relative Δ"],
                            [[c.name, c.kind, c.n, c.n_differ, c.max_abs,
                              None if c.max_rel is None else f"{c.max_rel:.2%}"] for c in cmp.differing],
                            [DIFFER] * len(cmp.differing), 4))
        plot = overlay.table_plot(cmp, LABELS, figures_dir / f"{claim}-table.png")
        if plot:
            blocks.append(Figure([Image(plot)], f"table.csv of {escape_markdown(claim)}: B's value against A's for "
                                 "each numeric column that differs on some matched row (grey: equal rows; dashed: "
                                 f"B = A; at most {overlay.MAX_TABLE_PANELS} columns, the largest relative "
                                 "differences first)."))
    return blocks


def _claim_figure_blocks(a, b) -> list:
    fa = {f["file"]: f for f in a.figure_files()}
    fb = {f["file"]: f for f in b.figure_files()}
    blocks = []
    for file in list(fa) + [f for f in fb if f not in fa]:
        images = [Image(side[file]["path"], label) for label, side in zip(LABELS, (fa, fb)) if file in side]
        only = "" if file in fa and file in fb else f" (only in {'A' if file in fa else 'B'})"
        caption = escape_markdown((fa.get(file) or fb[file])["caption"])
        blocks.append(Figure(images, f"{escape_markdown(file)}{only}: {caption}"))
    return blocks or [Paragraph("The claim lists no figures.")]


def _json_rows(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("a_figure", "b_figure")} | {"a": r.get("a_figure"), "b": r.get("b_figure")}
            if r["kind"] == "figure" else r for r in rows]


def write_comparison(a_path: Path, b_path: Path, out_dir: Path) -> tuple[Path, Path, dict]:
    """Compare two folders; write compare.md, compare.html, compare.json and figures/ into ``out_dir``."""
    a, b = read_pair(Path(a_path), Path(b_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = compare(a, b)
    doc = build_document(result, a, b, out_dir)
    md, page = out_dir / "compare.md", out_dir / "compare.html"
    write_text(md, markdown(doc, out_dir))
    write_text(page, html_page(doc))
    write_json(out_dir / "compare.json", {**result, "rows": _json_rows(result["rows"]), "flips": _json_rows(result["flips"]),
                                          "shifts": _json_rows(result["shifts"])})
    return md, page, result
