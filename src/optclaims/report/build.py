"""Turn one scale's results into a paper-style report: `index.html` (self-contained) + `report.md`,
and its LaTeX twin (report.tex, references.bib, tables/, figures/: report/latex.py).

`collect(scale_dir)` reads everything the report shows into plain dicts and lists;
`build_report` renders that through the jinja2 templates beside this module.
Inputs (all under `results/<scale>/`): claims/*/verdict.json, table.csv, figures/;
runs/*/summary.json, config.json; data/*/corpus/manifest.json, tokens/shards.json;
benchmarks/<rule>/**/*.tsv (Snakemake `benchmark:` files); provenance.json (optional); and the
bibliography the verdicts' sources name, reproductions/sources.yaml.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path

import jinja2

from ..atomic import write_text

STATUS_LABELS = {
    "reproduced": "reproduced",
    "partially_reproduced": "partially reproduced",
    "not_reproduced": "not reproduced",
    "inconclusive": "inconclusive",
}
# The verdict.json contract (DESIGN.md); summary, figures, sub_claims and notes are optional.
REQUIRED_KEYS = ("claim", "title", "source", "scale", "evidential", "status",
                 "expected", "measured", "criteria", "runs")
MAX_TABLE_ROWS = 60
IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".gif": "image/gif", ".svg": "image/svg+xml", ".webp": "image/webp"}
TEMPLATES = Path(__file__).parent / "templates"

# A CSV cell written from a Python/pandas float: has a '.', a signed exponent, or is inf/nan.
# Stricter than float() on purpose: a hex run id such as "1234e5678901" must stay text.
_FLOAT_CELL = re.compile(
    r"[+-]?(\d+\.\d*(e[+-]\d+)?|\.\d+(e[+-]\d+)?|\d+e[+-]\d+|inf(inity)?|nan)", re.I)


# ---------------------------------------------------------------- formatting

def fmt_num(x, digits: int = 4) -> str:
    """A number to `digits` significant digits; None -> an em dash; text passes through."""
    if x is None:
        return "—"
    if isinstance(x, (bool, int, str)):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.{digits}g}"
    return str(x)


def fmt_measured(m) -> str:
    """`{"value", "low", "high", "unit", "interval"}` -> "value [low, high] unit (what the interval is)";
    nested dicts -> "k: v; ..."."""
    if isinstance(m, dict) and "value" in m:
        text = fmt_num(m["value"])
        if m.get("low") is not None or m.get("high") is not None:
            text += f" [{fmt_num(m.get('low'))}, {fmt_num(m.get('high'))}]"
        if m.get("unit"):
            text += f" {m['unit']}"
        if m.get("interval"):
            text += f" ({m['interval']})"
        return text
    if isinstance(m, dict):
        return "; ".join(f"{k}: {fmt_measured(v)}" for k, v in m.items())
    if isinstance(m, (list, tuple)):
        return ", ".join(fmt_measured(v) for v in m)
    return fmt_num(m)


def regime_parts(regime: dict | None) -> dict | None:
    """The regime a verdict speaks for (analysis.regime) as display text: {"params": "0.12M–1.1M",
    "tokens_per_param": "2.5–8.1", "seeds": "2 seeds", "corpus": ... or None}; None without one."""
    if not regime:
        return None
    def span(v, fmt):
        if not v:
            return "?"
        lo, hi = fmt(v["min"]), fmt(v["max"])
        return lo if lo == hi else f"{lo}–{hi}"
    millions = lambda x: f"{x / 1e6:.3g}M"  # noqa: E731
    return {"params": span(regime.get("non_embedding_params"), millions),
            "tokens_per_param": span(regime.get("tokens_per_param"), lambda x: f"{x:.3g}"),
            "seeds": f"{regime.get('seeds', '?')} seed{'s' if regime.get('seeds') != 1 else ''}",
            "corpus": regime.get("corpus") or None}


def fmt_regime(regime: dict | None) -> str:
    """"0.12M–1.1M non-embedding params · 2.5–8.1 tokens/param · 2 seeds · corpus pycode-…": the
    regime a verdict speaks for (analysis.regime), in one line; "" for a verdict without one."""
    r = regime_parts(regime)
    if r is None:
        return ""
    parts = [f"{r['params']} non-embedding params", f"{r['tokens_per_param']} tokens/param", r["seeds"]]
    if r["corpus"]:
        parts.append(f"corpus {r['corpus']}")
    return " · ".join(parts)


def fmt_cell(cell: str) -> str:
    """Round float-looking CSV cells to 4 significant digits; leave ints and text alone."""
    s = cell.strip()
    return fmt_num(float(s)) if _FLOAT_CELL.fullmatch(s) else cell


def _fmt_int(x) -> str:
    return f"{int(x):,}" if isinstance(x, (int, float)) and math.isfinite(x) else fmt_num(x)


def _fmt_fixed(x, places: int) -> str:
    return f"{x:.{places}f}" if isinstance(x, (int, float)) and math.isfinite(x) else fmt_num(x)


# ---------------------------------------------------------------- reading

def subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*") if p.is_dir())


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def load_verdict(path: Path) -> dict:
    """Read and check one verdict.json; a broken contract raises ValueError naming file and key."""
    v = _read_json(path)
    if not isinstance(v, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for key in REQUIRED_KEYS:
        if key not in v:
            raise ValueError(f"{path}: missing required key '{key}'")
    if v["status"] not in STATUS_LABELS:
        raise ValueError(f"{path}: key 'status' is {v['status']!r}, not one of {list(STATUS_LABELS)}")
    if not isinstance(v["evidential"], bool):
        raise ValueError(f"{path}: key 'evidential' must be true or false")
    for key in ("criteria", "runs", "figures", "sub_claims", "notes", "sources"):
        if v.get(key) is not None and not isinstance(v[key], list):
            raise ValueError(f"{path}: key '{key}' must be a list")
    for i, fig in enumerate(v.get("figures") or []):
        if not isinstance(fig, dict) or "file" not in fig:
            raise ValueError(f"{path}: key 'figures[{i}].file' is missing")
    for i, sub in enumerate(v.get("sub_claims") or []):
        if not isinstance(sub, dict) or "name" not in sub or "status" not in sub:
            raise ValueError(f"{path}: key 'sub_claims[{i}]' needs 'name' and 'status'")
    if v.get("headline") is not None and not (isinstance(v["headline"], dict) and v["headline"].get("measured")):
        raise ValueError(f"{path}: key 'headline.measured' is missing")
    return v


def _measured_rows(measured) -> list[dict]:
    """One row per measured quantity, with the display text beside the raw numbers."""
    if not isinstance(measured, dict) or "value" in measured:
        measured = {"": measured}
    rows = []
    for name, m in measured.items():
        row = {"name": name, "text": fmt_measured(m), "value": m,
               "low": None, "high": None, "unit": None, "interval": None}
        if isinstance(m, dict) and "value" in m:
            row.update(value=m["value"], low=m.get("low"), high=m.get("high"), unit=m.get("unit"),
                       interval=m.get("interval"), text=fmt_measured({**m, "unit": None}))
        rows.append(row)
    return rows


def headline_of(v: dict) -> tuple[str, object] | None:
    """(name, measured figure) of a verdict's headline: the figure claim.yaml's headline names (None
    when it was not measured), or, for a verdict without one, its first measured figure."""
    measured = v.get("measured")
    h = v.get("headline")
    if isinstance(h, dict) and h.get("measured"):
        return h["measured"], measured.get(h["measured"]) if isinstance(measured, dict) else None
    if isinstance(measured, dict) and measured and "value" not in measured:
        return next(iter(measured.items()))
    return None


def fmt_published(p: dict | None) -> str:
    """"≈ 0.229", "≤ 1", "≈ 1.927 ×" or "—" (the source gives no number): a headline's published value."""
    if not p or p.get("value") is None:
        return "—"
    text = f"{p.get('relation', '')} {fmt_num(p['value'])}".strip()
    return text + (f" {p['unit']}" if p.get("unit") else "")


def _headline(v: dict, warnings: list[str]) -> dict | None:
    """The verdict table's figure: claim.yaml's headline (the measured figure it names, the
    published value beside it); None for a verdict made without one."""
    h = v.get("headline")
    if not isinstance(h, dict):
        return None
    name, m = headline_of(v)
    if m is None:
        warnings.append(f"claim {v['claim']}: its headline figure {name!r} is not among its measured figures")
    row = {"name": name, "value": None, "low": None, "high": None, "unit": None, "interval": None,
           "text": "not measured" if m is None else fmt_measured(m)}
    if isinstance(m, dict) and "value" in m:
        row.update(value=m["value"], low=m.get("low"), high=m.get("high"), unit=m.get("unit"),
                   interval=m.get("interval"), text=fmt_measured({**m, "unit": None, "interval": None}))
    published = dict(h.get("published") or {})
    return {**row, "published": {**published, "text": fmt_published(published)}}


def read_table(path: Path, max_rows: int = MAX_TABLE_ROWS) -> dict | None:
    """A CSV as {columns, rows (formatted, capped), n_rows, truncated}; None if absent or empty."""
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))
    if not records:
        return None
    columns, body = records[0], records[1:]
    return {"columns": columns,
            "rows": [[fmt_cell(c) for c in r] for r in body[:max_rows]],
            "n_rows": len(body),
            "truncated": len(body) > max_rows}


def collect_claims(verdict_paths, warnings: list[str]) -> list[dict]:
    loaded = [(load_verdict(p), p.parent) for p in verdict_paths]
    claims, fig_number = [], 0  # figures are numbered through the whole report, as in a paper
    for v, claim_dir in sorted(loaded, key=lambda pair: str(pair[0]["claim"])):
        figures = []
        for fig in v.get("figures") or []:
            fig_number += 1
            path = claim_dir / fig["file"]
            if not path.is_file():
                warnings.append(f"claim {v['claim']}: figure {fig['file']} not found")
            figures.append({"number": fig_number, "file": fig["file"],
                            "caption": fig.get("caption", ""), "path": path,
                            "exists": path.is_file()})
        subs = [{"name": s["name"], "status": s["status"],
                 "expected": fmt_measured(s.get("expected", "")),
                 "measured": fmt_measured(s.get("measured", "")),
                 "criterion": s.get("criterion", "")}
                for s in v.get("sub_claims") or []]
        claims.append({
            **v,
            "short_title": v.get("short_title") or v["title"],
            "headline": _headline(v, warnings),
            "sources": [s for s in v.get("sources") or [] if isinstance(s, dict) and s.get("key")],
            "regime_parts": regime_parts(v.get("regime")),
            "summary": v.get("summary", ""),
            "expected": fmt_measured(v["expected"]),
            "measured": _measured_rows(v["measured"]),
            "sub_claims": subs,
            "notes": v.get("notes") or [],
            "regime": fmt_regime(v.get("regime")),
            "figures": figures,
            "table": read_table(claim_dir / "table.csv"),
            "dir": claim_dir,
            "run_anchor_prefix": "",  # a reference report stores runs per claim: "<claim>-"
            "stale": None,            # a reference report: {"changed": [...]} when the code moved on
            "reference": None,        # a reference report: the claim's provenance, for display
        })
    return claims


def collect_runs(run_dirs, warnings: list[str], claim: str | None = None) -> list[dict]:
    """Each run's summary and config; ``claim`` names the claim a reference stores them under."""
    runs = []
    for run_dir in run_dirs:
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            warnings.append(f"run {run_dir.name}: no summary.json (skipped)")
            continue
        s = _read_json(summary_path)
        config_path = run_dir / "config.json"
        config = _read_json(config_path) if config_path.is_file() else {}
        rid = s.get("run_id", run_dir.name)
        runs.append({
            **s,
            "run_id": rid,
            "claim": claim,
            "anchor": f"{claim}-{rid}" if claim else rid,
            "config": config,
            "config_json": json.dumps(config, sort_keys=True),
            "cells": {
                "status": s.get("status", "—"),
                "n_params": _fmt_int(s.get("n_params")),
                "final_val_loss": _fmt_fixed(s.get("final_val_loss"), 4),
                "val_bpb": _fmt_fixed(s.get("val_bpb"), 4),
                "tokens": _fmt_int(s.get("tokens")),
                "tokens_per_s": _fmt_int(s.get("tokens_per_s")),
                "mfu": f"{100 * s['mfu']:.3g}%" if isinstance(s.get("mfu"), (int, float)) else "—",
                "wall_seconds": _fmt_fixed(s.get("wall_seconds"), 1),
            },
        })
    return runs


def collect_data(data_dirs) -> list[dict]:
    datasets = []
    for data_dir in data_dirs:
        manifest_path = data_dir / "corpus" / "manifest.json"
        shards_path = data_dir / "tokens" / "shards.json"
        manifest = _read_json(manifest_path) if manifest_path.is_file() else {}
        shards = _read_json(shards_path) if shards_path.is_file() else {}
        if not manifest and not shards:
            continue
        splits = shards.get("splits", {})
        spec = manifest.get("spec")
        datasets.append({
            "data_id": data_dir.name,
            "spec": spec if isinstance(spec, str) or spec is None else json.dumps(spec, sort_keys=True),
            "hash": manifest.get("hash"),
            "n_files": _fmt_int(manifest.get("n_files")),
            "n_bytes": _fmt_int(manifest.get("n_bytes")),
            "vocab_size": _fmt_int(shards.get("vocab_size")),
            "train_tokens": _fmt_int(splits.get("train", {}).get("n_tokens")),
            "val_tokens": _fmt_int(splits.get("val", {}).get("n_tokens")),
        })
    return datasets


def benchmark_seconds(path: Path) -> float:
    """Mean of the `s` column: several rows in one file are repeats of one job."""
    with path.open(newline="", encoding="utf-8") as f:
        values = [float(row["s"]) for row in csv.DictReader(f, delimiter="\t")]
    if not values:
        raise ValueError("no rows")
    return sum(values) / len(values)


def _collect_stages(scale_dir: Path, warnings: list[str]) -> list[dict]:
    """Wall time per Snakemake rule: benchmarks/<rule>/... -> (jobs, summed seconds)."""
    root = scale_dir / "benchmarks"
    seconds, jobs = defaultdict(float), defaultdict(int)
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else path.stem
        try:
            seconds[rule] += benchmark_seconds(path)
        except (KeyError, ValueError, TypeError) as e:
            warnings.append(f"benchmark {rel}: unreadable ({e!r}), skipped")
            continue
        jobs[rule] += 1
    return [{"rule": r, "jobs": jobs[r], "seconds": seconds[r], "seconds_text": f"{seconds[r]:.1f}"}
            for r in sorted(seconds)]


def _collect_provenance(prov: dict, runs: list[dict]) -> dict:
    """Union of code/library/device versions over provenance.json and every run's summary."""
    commits, devices, versions = [], [], defaultdict(set)

    def add(seq, x):
        if x and x not in seq:
            seq.append(x)

    for source in [prov, *runs]:
        add(commits, source.get("git_commit"))
        add(devices, source.get("device"))
        for name, version in (source.get("versions") or {}).items():
            versions[name].add(str(version))
    config = prov.get("config")
    short = [c[:12] + ("-dirty" if c.endswith("-dirty") else "") for c in map(str, commits)]
    return {
        "git_commits": commits,
        "commit_short": ", ".join(short) or None,  # for the title block
        "config_hash": prov.get("config_hash"),
        "started": prov.get("started"),
        "devices": devices,
        "versions": [{"name": n, "version": ", ".join(sorted(vs))} for n, vs in sorted(versions.items())],
        "config_json": json.dumps(config, indent=2, sort_keys=True) if config is not None else None,
    }


def _abstract(scale: str, claims: list[dict], runs: list[dict], stages: list[dict]) -> str:
    counts = {s: sum(c["status"] == s for c in claims) for s in STATUS_LABELS}
    tally = ", ".join(f"{n} {STATUS_LABELS[s]}" for s, n in counts.items() if n) or "no verdicts"
    n_ok = sum(r.get("status") == "ok" for r in runs)
    tokens = sum(r.get("tokens") or 0 for r in runs)
    text = (f"We test {len(claims)} published claim{'s' * (len(claims) != 1)} about LLM optimisers "
            f"and parametrisation at {scale} scale, using {len(runs)} training run"
            f"{'s' * (len(runs) != 1)} ({n_ok} finished, {len(runs) - n_ok} diverged; "
            f"{_fmt_int(tokens)} tokens in all). Verdicts: {tally}.")
    if stages:
        text += f" The pipeline took {sum(s['seconds'] for s in stages):.0f} s of summed job wall time."
    return text


def _banner(scale: str, claims: list[dict]) -> str | None:
    non_evidential = [c for c in claims if not c["evidential"]]
    if claims and not non_evidential:
        return None
    overridden = sorted({f for c in claims for f in c.get("protocol_overrides") or []})
    if overridden:
        return (f"run_overrides changed {', '.join(overridden)} from the {scale} scale's protocol: the runs "
                "measure something other than the criteria were written for, so no verdict below is evidence.")
    if len(non_evidential) == len(claims):
        return (f"{scale} scale: a plumbing check, not evidence. The models are too small and the runs "
                "too short to bear on any claim; the verdicts below only show that the pipeline "
                "ran end to end.")
    return (f"{len(non_evidential)} of {len(claims)} verdicts are not evidential at {scale} scale "
            "(marked “no” below): read those as plumbing checks only.")


def collect(scale_dir: Path | str, sources: Path | str | None = None) -> dict:
    """Everything the report shows, read from one results/<scale> folder (and the bibliography,
    default reproductions/sources.yaml)."""
    scale_dir = Path(scale_dir)
    warnings: list[str] = []
    claims = collect_claims(sorted((scale_dir / "claims").glob("*/verdict.json")), warnings)
    runs = collect_runs(subdirs(scale_dir / "runs"), warnings)
    stages = _collect_stages(scale_dir, warnings)
    prov_path = scale_dir / "provenance.json"
    prov = _read_json(prov_path) if prov_path.is_file() else {}
    scale = prov.get("scale") or next((c["scale"] for c in claims), None) or scale_dir.name
    return assemble(scale_dir, scale, claims, runs, collect_data(subdirs(scale_dir / "data")), stages, prov,
                    warnings, sources=Path(sources) if sources is not None else None)


def cite_label(entry: dict) -> str:
    """"Su 2025", "Yang and Simon 2023", "Liu et al. 2025": a source in words, as natbib cites it."""
    family = [a.split()[-1] for a in entry["authors"] if a != "others"]
    if len(family) == 2 and "others" not in entry["authors"]:
        names = f"{family[0]} and {family[1]}"
    else:
        names = family[0] + (" et al." if len(entry["authors"]) > 1 else "")
    return f"{names} {entry['year']}"


def source_link(entry: dict) -> str:
    return f"https://arxiv.org/abs/{entry['eprint']}" if entry.get("eprint") else entry.get("url", "")


def collect_bibliography(claims: list[dict], warnings: list[str], path: Path | None = None) -> dict:
    """{key: entry} of reproductions/sources.yaml for every source the claims cite, in order of first
    citation; each claim's sources get their label and link. A key the bibliography lacks (a verdict
    older than it) is dropped with a warning."""
    from ..claims import DEFAULT_REPRO_DIR, SOURCES, load_sources

    path = Path(path) if path is not None else DEFAULT_REPRO_DIR / SOURCES
    cited = [s["key"] for c in claims for s in c["sources"]]
    if not cited:
        return {}
    known = load_sources(path) if path.is_file() else {}
    if not known:
        warnings.append(f"no bibliography at {path}: the claims' sources are left out")
    bibliography = {}
    for c in claims:
        kept = []
        for s in c["sources"]:
            if s["key"] not in known:
                if known:
                    warnings.append(f"claim {c['claim']}: source {s['key']!r} is not in {path} (left out)")
                continue
            entry = known[s["key"]]
            bibliography.setdefault(s["key"], entry)
            kept.append({**s, "label": cite_label(entry), "link": source_link(entry)})
        c["sources"] = kept
        pub = (c["headline"] or {}).get("published") or {}
        if pub.get("source") in known:
            pub["label"], pub["link"] = cite_label(known[pub["source"]]), source_link(known[pub["source"]])
            bibliography.setdefault(pub["source"], known[pub["source"]])
        elif pub.get("source"):
            pub.pop("source")
    return bibliography


def assemble(source_dir: Path, scale: str, claims: list[dict], runs: list[dict], data: list[dict],
             stages: list[dict], prov: dict, warnings: list[str], reference: dict | None = None,
             sources: Path | None = None) -> dict:
    """The report's dict from what was read; ``reference`` (reference/report.py) marks a report of
    committed reference results: a provenance table per claim and stale marks; ``sources``: the
    bibliography (default reproductions/sources.yaml)."""
    bibliography = collect_bibliography(claims, warnings, sources)
    known = {r["anchor"] for r in runs}
    for c in claims:
        missing = [r for r in c["runs"] if c["run_anchor_prefix"] + r not in known]
        if missing:
            warnings.append(f"claim {c['claim']}: {len(missing)} run(s) without summary: "
                            + ", ".join(map(str, missing[:5])) + ("…" if len(missing) > 5 else ""))
    title = f"optclaims: published claims about LLM optimisers, tested at {scale} scale"
    return {
        "title": title + (" (reference results)" if reference else ""),
        "scale": scale,
        "scale_dir": source_dir,
        "evidential": bool(claims) and all(c["evidential"] for c in claims),
        "banner": _banner(scale, claims),
        "abstract": _abstract(scale, claims, runs, stages),
        "claims": claims,
        "runs": runs,
        "data": data,
        "stages": stages,
        "stages_total": {"jobs": sum(s["jobs"] for s in stages),
                         "seconds_text": f"{sum(s['seconds'] for s in stages):.1f}"},
        "provenance": _collect_provenance(prov, runs),
        "warnings": warnings,
        "reference": reference,
        "bibliography": bibliography,
    }


# ---------------------------------------------------------------- rendering

def _data_uri(path: Path) -> str:
    mime = IMAGE_MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


# Characters Markdown would read as markup: '\\', '`', '*', '|' (a table cell border) and '<' when
# it could open an HTML tag. A leading '>' would open a block quote. Brackets are left alone: we never
# write link definitions, so "[low, high]" stays plain text.
_MD_SPECIAL = re.compile(r"([\\`*|]|<(?=[A-Za-z/!?]))")


def _md(text) -> str:
    """Markdown-escape text so it shows literally, and keep it on one line."""
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    return "\\" + text if text.startswith((">", "#")) else text


escape_markdown = _md  # for Markdown written outside these templates (the README's reference table)


def _md_alt(text) -> str:
    """`_md` for a link's text, where brackets must be escaped too."""
    return _md(text).replace("[", "\\[").replace("]", "\\]")


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(md=_md, md_alt=_md_alt, data_uri=_data_uri,
                       label=lambda s: STATUS_LABELS.get(s, str(s)))
    return env


def render_html(report: dict) -> str:
    return _environment(autoescape=True).get_template("report.html").render(r=report)


def render_markdown(report: dict, out_dir: Path) -> str:
    def figure_link(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), out_dir)).as_posix()
    env = _environment(autoescape=False)
    env.filters["relpath"] = figure_link
    return env.get_template("report.md").render(r=report)


def build_report(scale_dir: Path | str, out_dir: Path | str | None = None,
                 sources: Path | str | None = None) -> tuple[Path, Path]:
    """Write out_dir/index.html, report.md and the LaTeX report (report.tex, references.bib, tables/,
    figures/; report/latex.py) (default out_dir: scale_dir/report)."""
    scale_dir = Path(scale_dir)
    return write_report(collect(scale_dir, sources), Path(out_dir) if out_dir is not None else scale_dir / "report")


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """Render a collected report into out_dir/index.html, out_dir/report.md and the LaTeX report
    beside them; the LaTeX first, so its warnings (a figure without a PDF) reach the HTML too."""
    from .latex import write_latex

    out_dir.mkdir(parents=True, exist_ok=True)
    write_latex(report, out_dir)
    html, markdown = render_html(report), render_markdown(report, out_dir.resolve())
    html_path, md_path = out_dir / "index.html", out_dir / "report.md"
    write_text(html_path, html)
    write_text(md_path, markdown)
    return html_path, md_path
