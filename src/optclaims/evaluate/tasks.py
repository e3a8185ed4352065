"""Local lm-eval tasks built from a dataset's held-out files.

``build_tasks`` writes, for each task, a short YAML (from ``templates/``) and the jsonl it reads
through the ``json`` dataset builder, so evaluating them never touches the Hugging Face hub:

- ``optclaims_ppl``: rolling log-likelihood of whole files → word/byte perplexity, bits per byte.
- ``optclaims_cloze``: next-line multiple choice. The context is the end of a file's prefix (whole
  lines, at most ``snippet_chars``), the gold choice its true next line, the distractors lines
  taken from other files at the same relative place (same fraction of their length), so they look
  like plausible code at that depth. Chance accuracy is 1/n_choices.

Everything is drawn from ``random.Random(seed)`` over the file order of ``val.jsonl``, so the same
inputs give byte-identical files. Each file is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from string import Template

from ..atomic import write_text

TEMPLATES = Path(__file__).parent / "templates"
PPL_TASK, CLOZE_TASK = "optclaims_ppl", "optclaims_cloze"
MIN_CONTEXT_LINES = 3


def build_tasks(
    val_jsonl: Path,
    out_dir: Path,
    *,
    n_docs: int,
    n_cloze: int,
    n_choices: int = 4,
    snippet_chars: int = 600,
    max_doc_chars: int | None = None,
    min_line_chars: int = 8,
    seed: int = 0,
) -> dict:
    """Write both tasks into ``out_dir`` and return a manifest (also saved as manifest.json).

    ``max_doc_chars`` truncates perplexity documents at a line boundary (keeps smoke scale fast);
    ``min_line_chars`` is the least non-blank characters a cloze line (gold or distractor) has."""
    if n_choices < 2:
        raise ValueError("a multiple-choice task needs n_choices >= 2")
    docs = [d for d in _read_jsonl(Path(val_jsonl)) if d["text"].strip()]
    if not docs:
        raise ValueError(f"{val_jsonl} holds no non-empty documents")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    ppl_rows = [{"path": d["path"], "text": _truncate(d["text"], max_doc_chars)} for d in docs[:n_docs]]
    rng = random.Random(seed)
    cloze_rows = _cloze_rows(docs, n_cloze, n_choices, snippet_chars, min_line_chars, rng)
    if not cloze_rows:
        raise ValueError(f"no cloze item could be built from {val_jsonl} with {n_choices} choices")

    for task, rows in ((PPL_TASK, ppl_rows), (CLOZE_TASK, cloze_rows)):
        data_file = out_dir / f"{task}.jsonl"
        write_text(data_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        yaml = Template((TEMPLATES / f"{task}.yaml").read_text())
        write_text(out_dir / f"{task}.yaml", yaml.substitute(data_file=json.dumps(str(data_file))))

    manifest = {
        "tasks": [PPL_TASK, CLOZE_TASK],
        "dir": str(out_dir),
        "n_docs": len(ppl_rows),
        "n_cloze": len(cloze_rows),
        "n_choices": n_choices,
        "chance_acc": 1.0 / n_choices,
        "seed": seed,
    }
    write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _cloze_rows(docs, n_items, n_choices, snippet_chars, min_line_chars, rng) -> list[dict]:
    lines = [d["text"].splitlines() for d in docs]

    def usable(line: str) -> bool:
        return len(line.strip()) >= min_line_chars

    # Candidate gold lines per file, drawn round-robin over files so long files do not dominate.
    queues = []
    for ls in lines:
        q = [i for i in range(MIN_CONTEXT_LINES, len(ls)) if usable(ls[i])]
        rng.shuffle(q)
        queues.append(q)
    order = list(range(len(docs)))
    rng.shuffle(order)

    rows: list[dict] = []
    while len(rows) < n_items and any(queues):
        for d in order:
            if len(rows) == n_items:
                break
            if not queues[d]:
                continue
            i = queues[d].pop()
            gold = lines[d][i].rstrip()
            choices = [gold] + _distractors(d, i / len(lines[d]), gold, lines, n_choices - 1, usable, rng)
            if len(choices) < n_choices:
                continue  # not enough other files with a usable, different line there
            rng.shuffle(choices)
            rows.append(
                {
                    "path": docs[d]["path"],
                    "line": i,
                    "context": _tail_lines(lines[d][:i], snippet_chars),
                    "choices": choices,
                    "gold": choices.index(gold),
                }
            )
    return rows


def _distractors(d, rel, gold, lines, k, usable, rng) -> list[str]:
    """Up to k lines from other files, each the first usable line at or after the same relative
    place, all different from the gold line and each other (compared without indentation)."""
    taken = {gold.strip()}
    others = [j for j in range(len(lines)) if j != d]
    rng.shuffle(others)
    picked = []
    for j in others:
        start = int(rel * len(lines[j]))
        for line in lines[j][start:]:
            if usable(line) and line.strip() not in taken:
                picked.append(line.rstrip())
                taken.add(line.strip())
                break
        if len(picked) == k:
            break
    return picked


def _tail_lines(prefix: list[str], max_chars: int) -> str:
    """The last whole lines of ``prefix`` that fit in max_chars (at least one), newline-ended."""
    kept, size = [], 0
    for line in reversed(prefix):
        if kept and size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    return "".join(line + "\n" for line in reversed(kept))


def _truncate(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[: cut + 1] if cut > 0 else text[:max_chars]


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
