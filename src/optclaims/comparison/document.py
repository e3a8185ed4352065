"""The side-by-side report both comparisons render: `optclaims compare` (compare.md, compare.html)
and the nightly regression check (report.md, report.html). A report is a title and a list of blocks
(headings, paragraphs, bullet lists, tables of rows, figures); ``markdown`` and ``html`` render the
same blocks, the HTML self-contained (images inlined as data URIs, like the scale's report).

Text in paragraphs and bullets may use two pieces of inline Markdown, ``**bold**`` and
```code```, and backslash escapes; table cells are plain text (numbers formatted here)."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..report.build import IMAGE_MIME, fmt_num


@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str | None = None


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list]
    marks: list[str | None] | None = None   # per row: what it is (e.g. "fail", "differ"), an HTML class
    digits: int = 7


@dataclass
class Image:
    path: Path
    label: str = ""


@dataclass
class Figure:
    """One figure or a row of them side by side (A's and B's), with a caption."""

    images: list[Image]
    caption: str = ""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> "Document":
        self.blocks.extend(b for b in blocks if b is not None)
        return self


# ---------------------------------------------------------------- rows

def row_table(rows: list[dict], columns: list[tuple[str, str]], mark_of=None, digits: int = 7) -> Table:
    """A table of comparison rows: ``columns`` is [(header, row key)]; ``mark_of(row)`` names the
    row's kind for the HTML (by default its verdict)."""
    mark_of = mark_of or (lambda r: r.get("verdict"))
    return Table([h for h, _ in columns], [[r.get(k) for _, k in columns] for r in rows],
                 [mark_of(r) for r in rows], digits)


# ---------------------------------------------------------------- Markdown

def plain_cell(x, digits: int = 7) -> str:
    """A table cell's text: None as an em dash, numbers to ``digits`` significant digits."""
    if x is None:
        return "—"
    return fmt_num(x, digits) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


_CELL_SPECIAL = re.compile(r"(\|)|<(?=[A-Za-z/!?])")


def cell(x, digits: int = 7) -> str:
    """A Markdown table cell: ``plain_cell`` with '|' (a cell border) and '<' before a tag escaped."""
    return _CELL_SPECIAL.sub(lambda m: "\\" + m.group(0), plain_cell(x, digits))


def markdown_table(header: list[str], rows: list[list], digits: int = 7) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c, digits) for c in r) + " |" for r in rows]


def markdown(doc: Document, out_dir: Path | None = None) -> str:
    """The document as Markdown; images link relative to ``out_dir`` (where the file is written)."""
    parts = [f"# {doc.title}"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Paragraph):
            parts.append(b.text)
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {i}" for i in b.items))
        elif isinstance(b, Table):
            parts.append("\n".join(markdown_table(b.header, b.rows, b.digits)))
        elif isinstance(b, Figure):
            links = " ".join(f"![{_alt(i.label or Path(i.path).stem)}]({_link(i.path, out_dir)})" for i in b.images)
            parts.append(links + (f"\n\n*{b.caption}*" if b.caption else ""))
        else:
            raise TypeError(f"not a block: {b!r}")
    return "\n\n".join(parts) + "\n"


def _alt(text: str) -> str:
    return str(text).replace("[", "\\[").replace("]", "\\]")


def _link(path: Path, out_dir: Path | None) -> str:
    path = Path(path)
    if out_dir is not None:
        path = Path(os.path.relpath(path.resolve(), Path(out_dir).resolve()))
    return path.as_posix().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


# ---------------------------------------------------------------- HTML

_INLINE = re.compile(r"\\(.)|`([^`]+)`|\*\*(.+?)\*\*|\*(.+?)\*")


def inline_html(text: str) -> str:
    """Paragraph text with its inline Markdown (escapes, `code`, **bold**, *emphasis*) as HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        escaped, code, bold, em = m.groups()
        if escaped is not None:
            out.append(html.escape(escaped))
        elif code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        else:
            out.append(f"<em>{inline_html(em)}</em>")
        pos = m.end()
    return "".join(out) + html.escape(text[pos:])


def data_uri(path: Path) -> str:
    path = Path(path)
    mime = IMAGE_MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


STYLE = """
body { font-family: Georgia, 'Times New Roman', serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.8rem 0; font-family: system-ui, sans-serif; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.45rem; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td, tr.differ td, tr.flipped td { background: #fde4d8; }
tr.new td, tr.only-in-a td, tr.only-in-b td { background: #eef3fb; }
tr.no-interval td { background: #f6f6f6; color: #555; }
code { font-size: 0.9em; background: #f4f4f4; padding: 0 0.2em; }
figure { margin: 1rem 0; } figure .row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
figure .row div { flex: 1 1 30rem; } figure img { max-width: 100%; height: auto; }
figure .label { font-family: system-ui, sans-serif; font-size: 0.8rem; font-weight: bold; }
figcaption { font-size: 0.85rem; color: #444; margin-top: 0.3rem; }
.missing { color: #a33; font-style: italic; }
"""


def _css_class(mark) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(mark).lower()).strip("-") if mark else ""


def _html_cell(x, digits: int) -> str:
    text = html.escape(plain_cell(x, digits))
    numeric = isinstance(x, (int, float)) and not isinstance(x, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def html_page(doc: Document) -> str:
    """The document as one self-contained HTML page."""
    body = [f"<h1>{inline_html(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            body.append(f"<h{b.level}{anchor}>{inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            marks = b.marks or [None] * len(b.rows)
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join((f'<tr class="{_css_class(m)}">' if m else "<tr>")
                           + "".join(_html_cell(c, b.digits) for c in r) + "</tr>" for r, m in zip(b.rows, marks))
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Figure):
            cells = []
            for i in b.images:
                label = f'<div class="label">{html.escape(i.label)}</div>' if i.label else ""
                img = (f'<img src="{data_uri(i.path)}" alt="{html.escape(i.label or Path(i.path).stem)}">'
                       if Path(i.path).is_file() else f'<p class="missing">{html.escape(str(i.path))} not found</p>')
                cells.append(f"<div>{label}{img}</div>")
            caption = f"<figcaption>{inline_html(b.caption)}</figcaption>" if b.caption else ""
            body.append(f'<figure><div class="row">{"".join(cells)}</div>{caption}</figure>')
        else:
            raise TypeError(f"not a block: {b!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(_plain(doc.title))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text.replace("**", "").replace("`", ""))
