"""The report as LaTeX, beside index.html: ``report.tex`` (a standalone, appendix-style document),
``references.bib`` (every source the claims cite, from reproductions/sources.yaml), ``tables/``
(``verdicts.tex``, one row per claim, and ``<claim>.tex``, its measured figures with intervals:
booktabs tables that ``\\input`` into any document loading booktabs, array and amssymb) and
``figures/<claim>/`` (each figure's vector PDF, which the analysis saves beside its PNG).
``build_pdf`` turns report.tex into report.pdf with latexmk, or pdflatex and bibtex.

Every text goes through ``escape``: LaTeX's special characters, and the non-ASCII characters the
claims write (Greek, arrows, relations, dashes, super- and subscripts) as pdflatex macros, so the
document needs no Unicode engine; a character it does not know is written as "?" and named in the
report's warnings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..atomic import write_text
from .build import STATUS_LABELS, TEMPLATES, fmt_num

TABLES, FIGURES, BIB = "tables", "figures", "references.bib"
VERDICT_TABLE = "verdicts.tex"  # \input{tables/verdicts} in report.tex
TEX_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "texlive-fonts-recommended", "latexmk")
INSTALL_HINT = ("install a TeX distribution with pdflatex and bibtex: on Debian or Ubuntu `apt-get install "
                f"--no-install-recommends {' '.join(TEX_PACKAGES)}`, on macOS MacTeX, on Windows MiKTeX or TeX Live")

_ASCII = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
          "%": r"\%", "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
          "<": r"\ensuremath{<}", ">": r"\ensuremath{>}", "|": r"\ensuremath{|}"}
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "varepsilon", "ϵ": "epsilon",
          "ζ": "zeta", "η": "eta", "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu",
          "µ": "mu", "ν": "nu", "ξ": "xi", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "varsigma", "τ": "tau",
          "υ": "upsilon", "φ": "phi", "ϕ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
          "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "Λ": "Lambda", "Ξ": "Xi", "Π": "Pi", "Σ": "Sigma",
          "Υ": "Upsilon", "Φ": "Phi", "Ψ": "Psi", "Ω": "Omega"}
_MATH = {"±": r"\pm", "·": r"\cdot", "×": r"\times", "÷": r"\div", "−": "-", "√": r"\surd", "∝": r"\propto",
         "∞": r"\infty", "≈": r"\approx", "≠": r"\neq", "≤": r"\leq", "≥": r"\geq", "≪": r"\ll", "≫": r"\gg",
         "≲": r"\lesssim", "≳": r"\gtrsim", "∼": r"\sim", "≡": r"\equiv", "→": r"\rightarrow",
         "←": r"\leftarrow", "↔": r"\leftrightarrow", "⇒": r"\Rightarrow", "↦": r"\mapsto", "∇": r"\nabla",
         "∂": r"\partial", "∈": r"\in", "∉": r"\notin", "∪": r"\cup", "∩": r"\cap", "∑": r"\sum",
         "∏": r"\prod", "∫": r"\int", "‖": r"\|", "⊤": r"\top", "ℝ": r"\mathbb{R}", "½": r"\tfrac{1}{2}",
         "¼": r"\tfrac{1}{4}", "¾": r"\tfrac{3}{4}", "°": r"^{\circ}", "ᵀ": r"^{\top}", "′": r"'",
         "✓": r"\checkmark", "✗": r"\times", "∅": r"\emptyset", "ℓ": r"\ell"}
_SUPER = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-"))
_SUB = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋", "0123456789+-"))
_TEXT = {"§": r"\S{}", "–": "--", "—": "---", "“": "``", "”": "''", "‘": "`", "’": "'", "…": r"\ldots{}",
         "\u00a0": "~", "\u2009": r"\,", "\u202f": r"\,", "•": r"\textbullet{}", "†": r"\dag{}", "‡": r"\ddag{}"}
# combining accents (m̂, v̄, and the decomposed form of é, ü, ...) as text accents on the character before
_ACCENTS = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u",
            "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c"}


def _char(ch: str, unknown: set[str] | None) -> str:
    if ch in _ASCII:
        return _ASCII[ch]
    if ord(ch) < 128:
        return ch
    if ch in _GREEK:
        return rf"\ensuremath{{\{_GREEK[ch]}}}"
    if ch in _MATH:
        return rf"\ensuremath{{{_MATH[ch]}}}"
    if ch in _SUPER:
        return rf"\ensuremath{{^{{{_SUPER[ch]}}}}}"
    if ch in _SUB:
        return rf"\ensuremath{{_{{{_SUB[ch]}}}}}"
    if ch in _TEXT:
        return _TEXT[ch]
    if unicodedata.category(ch).startswith("Z"):
        return " "
    if unknown is not None:
        unknown.add(ch)
    return "?"


def _decomposed(text: str):
    """Each character, an accented letter without a macro of its own (é) as letter + accent; ≠ and
    the other mapped characters stay whole."""
    for ch in unicodedata.normalize("NFC", text):
        known = ch in _ASCII or ch in _GREEK or ch in _MATH or ch in _SUPER or ch in _SUB or ch in _TEXT
        yield from (ch if known or ord(ch) < 128 else unicodedata.normalize("NFD", ch))


def escape(text, unknown: set[str] | None = None) -> str:
    """``text`` as LaTeX that prints it literally under pdflatex (T1 or OT1). Unknown characters
    become "?" and are added to ``unknown``."""
    out: list[str] = []
    for ch in _decomposed(" ".join(str(text).split())):
        if ch in _ACCENTS and out:
            out[-1] = rf"\{_ACCENTS[ch]}{{{out[-1]}}}"
        elif unicodedata.combining(ch):
            _char(ch, unknown)  # an accent with no macro: left out, named
        else:
            token = _char(ch, unknown)
            # "--", "``", "''" and ",," would be ligatures (a dash, a quote): "{}" keeps them apart
            if out and token[:1] in "-`'," and out[-1].endswith(token[0]):
                token = "{}" + token
            out.append(token)
    return "".join(out)


_E_NOTATION = re.compile(r"^(-?[\d.]+)e([+-])0*(\d+)$")


def tex_num(x, digits: int = 4) -> Markup:
    """A number as LaTeX: 4 significant digits, 1.2e-05 as 1.2\\times10^{-5}, None as an en dash."""
    if x is None:
        return Markup("--")
    text = fmt_num(x, digits)
    m = _E_NOTATION.match(text)
    if m:
        sign = "-" if m.group(2) == "-" else ""
        return Markup(rf"\ensuremath{{{m.group(1)}\times10^{{{sign}{m.group(3)}}}}}")
    if re.fullmatch(r"-[\d.]+", text):
        return Markup(rf"\ensuremath{{{text}}}")  # a minus sign, not a hyphen
    return Markup(escape(text))


# ---------------------------------------------------------------- bibliography

def bibtex_entry(entry: dict) -> str:
    """One @article (an arXiv preprint) or @misc (a blog post or repository) entry."""
    authors = " and ".join(escape(a) for a in entry["authors"])
    fields = [("author", authors), ("title", "{" + escape(entry["title"]) + "}"), ("year", str(entry["year"]))]
    if entry.get("eprint"):
        fields += [("journal", f"arXiv preprint arXiv:{entry['eprint']}"), ("eprint", entry["eprint"]),
                   ("archivePrefix", "arXiv")]
    elif entry.get("url"):
        fields.append(("url", entry["url"]))
    notes = []
    if entry.get("date"):
        fields.append(("date", entry["date"]))
        notes.append(f"Posted {entry['date']}")
    if entry.get("language"):
        fields.append(("language", entry["language"]))
        notes.append(f"in {entry['language']}, title translated")
    if entry.get("note"):
        notes.append(escape(entry["note"]))
    if notes:
        fields.append(("note", "; ".join(notes)))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{entry['type']}{{{entry['key']},\n{body}\n}}\n"


def render_bib(bibliography: dict) -> str:
    head = ("% Every source the claims cite, written by optclaims report from reproductions/sources.yaml;\n"
            "% do not edit by hand.\n\n")
    return head + "\n".join(bibtex_entry(e) for e in bibliography.values())


# ---------------------------------------------------------------- rendering

def cite(sources: list[dict]) -> Markup:
    """One \\cite of the sources' keys: what a table or caption cites (any bibliography package;
    natbib prints "Su (2025a); Liu et al. (2025)")."""
    return Markup(rf"\cite{{{','.join(s['key'] for s in sources)}}}") if sources else Markup("")


def cite_each(sources: list[dict]) -> Markup:
    """natbib's \\citet[where]{key} for each source, its note after it: "Liu et al. (2025, §2.2);
    Jordan (2024), counter-evidence" (report.tex, which loads natbib)."""
    parts = []
    for s in sources:
        where = f"[{escape(s['where'])}]" if s.get("where") else ""
        parts.append(rf"\citet{where}{{{s['key']}}}" + (f", {escape(s['note'])}" if s.get("note") else ""))
    return Markup("; ".join(parts))


def _breakable(name) -> Markup:
    """An identifier with a break allowed after each underscore (a claim id in a narrow column)."""
    return Markup(escape(name).replace(r"\_", r"\_\allowbreak{}"))


_SAFE_NAME = re.compile(r"[A-Za-z0-9_./-]+")


def _raw(name) -> Markup:
    """A claim id or a relative path, as it is (for \\input, \\label, \\includegraphics)."""
    if not _SAFE_NAME.fullmatch(str(name)):
        raise ValueError(f"{name!r} cannot be a LaTeX file name or label (letters, digits and _ . / - only)")
    return Markup(str(name))


def _environment(unknown: set[str]) -> jinja2.Environment:
    def finalize(value):
        return value if isinstance(value, Markup) else Markup(escape(value, unknown))

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False, finalize=finalize,
        block_start_string=r"\BLOCK{", block_end_string="}", variable_start_string=r"\VAR{",
        variable_end_string="}", comment_start_string=r"\#{", comment_end_string="}",
        line_statement_prefix="%%", line_comment_prefix="%#", trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=tex_num, cite=cite, cite_each=cite_each, cite_key=lambda key: cite([{"key": key}]),
                       breakable=_breakable, label=lambda s: STATUS_LABELS.get(s, str(s)), raw=_raw)
    return env


def _figure_files(claims: list[dict], out_dir: Path, warnings: list[str]) -> dict[tuple[str, int], str]:
    """Copy each figure's PDF (the analysis saves one beside each PNG) into figures/<claim>/; a
    figure without one is copied as its PNG, with a warning. {(claim, number): path from out_dir}."""
    paths = {}
    for c in claims:
        for f in c["figures"]:
            if not f["exists"]:
                continue
            src = Path(f["path"]).with_suffix(".pdf")
            if not src.is_file():
                warnings.append(f"claim {c['claim']}: figure {f['file']} has no PDF beside it (the LaTeX report "
                                "shows the PNG)")
                src = Path(f["path"])
            rel = Path(FIGURES) / c["claim"] / src.name
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out_dir / rel)
            paths[(c["claim"], f["number"])] = rel.as_posix()
    return paths


def write_latex(report: dict, out_dir: Path) -> dict[str, Path]:
    """report.tex, references.bib, tables/verdicts.tex, tables/<claim>.tex and figures/<claim>/*.pdf
    under ``out_dir``; returns the paths of the first three ({"tex", "bib", "verdicts"})."""
    out_dir = Path(out_dir)
    warnings = report["warnings"]
    if (out_dir / FIGURES).is_dir():
        shutil.rmtree(out_dir / FIGURES)  # figures of an earlier report, perhaps of claims since removed
    (out_dir / FIGURES).mkdir(parents=True)
    figures = _figure_files(report["claims"], out_dir, warnings)
    unknown: set[str] = set()
    env = _environment(unknown)
    written: dict[str, Path] = {}
    verdicts = env.get_template("verdicts.tex").render(r=report)
    measured = {c["claim"]: env.get_template("measured.tex").render(r=report, c=c) for c in report["claims"]}
    document = env.get_template("report.tex").render(r=report, figures=figures, tables=TABLES)
    if unknown:  # named in the report's warnings, the LaTeX's own included
        warnings.append("LaTeX: characters without a macro, printed as '?': "
                        + " ".join(f"{ch} (U+{ord(ch):04X})" for ch in sorted(unknown)))
        document = env.get_template("report.tex").render(r=report, figures=figures, tables=TABLES)
    (out_dir / TABLES).mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / TABLES).glob("*.tex"):
        stale.unlink()
    written["verdicts"] = out_dir / TABLES / VERDICT_TABLE
    write_text(written["verdicts"], verdicts)
    for claim, text in measured.items():
        write_text(out_dir / TABLES / f"{claim}.tex", text)
    written["bib"] = out_dir / BIB
    write_text(written["bib"], render_bib(report["bibliography"]))
    written["tex"] = out_dir / "report.tex"
    write_text(written["tex"], document)
    return written


# ---------------------------------------------------------------- the PDF

class TexMissingError(FileNotFoundError):
    """pdflatex or bibtex is not installed."""


def tex_tools() -> dict[str, str | None]:
    return {tool: shutil.which(tool) for tool in ("latexmk", "pdflatex", "bibtex")}


def build_pdf(report_dir: Path, timeout: float = 600) -> Path:
    """report.pdf from report_dir/report.tex: latexmk -pdf where installed, else pdflatex, bibtex and
    pdflatex twice. A TeX error raises RuntimeError with the end of report.log."""
    report_dir = Path(report_dir)
    if not (report_dir / "report.tex").is_file():
        raise FileNotFoundError(f"no {report_dir / 'report.tex'}: build the report first (optclaims report, "
                                "or make report)")
    tools = tex_tools()
    missing = [t for t in ("pdflatex", "bibtex") if not tools[t]]
    if missing:
        raise TexMissingError(f"{' and '.join(missing)} not found: {INSTALL_HINT}")
    flags = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error"]
    if tools["latexmk"]:
        steps = [["latexmk", "-pdf", "-bibtex", *flags, "report.tex"]]
    else:
        steps = [["pdflatex", *flags, "report.tex"], ["bibtex", "report"],
                 ["pdflatex", *flags, "report.tex"], ["pdflatex", *flags, "report.tex"]]
    for cmd in steps:
        done = subprocess.run(cmd, cwd=report_dir, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = report_dir / "report.log"
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else done.stdout[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}) in {report_dir}:\n{tail}")
    return report_dir / "report.pdf"
