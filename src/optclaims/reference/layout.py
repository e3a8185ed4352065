"""Names and limits of the reference layout (see the package docstring); one definition each."""

from __future__ import annotations

from pathlib import Path

REFERENCE_DIR = Path("results/reference/gpu")
SCALE = "gpu"
MAX_ARCHIVE_BYTES = 16 * 2**20        # what one short GPU slot may bring back
MAX_UNPACKED_BYTES = 512 * 2**20      # an archive that unpacks to more is refused (a bomb, not results)
PROVENANCE = "provenance.json"
VERDICT = "verdict.json"
RUNS = "runs"
DATA = "data"
REPORT = "report"                     # results/reference/gpu/report/: report.md (tracked), index.html
# Per run: what redraws its figures and states where it came from; never checkpoints or shards.
RUN_FILES = ("config.json", "summary.json", "metrics.parquet", "eval.json")
REQUIRED_RUN_FILES = ("config.json", "summary.json", "metrics.parquet")
# Per data set: the corpus manifest (its hash) and the shard index (vocabulary, token counts).
DATA_FILES = ("corpus/manifest.json", "tokens/shards.json")
# Files of results/<scale>/claims/<claim>/ that never enter a reference.
CLAIM_FILES_EXCLUDED = (".tmp",)
METRICS_COMPRESSION = {"compression": "zstd", "compression_level": 19}


def claim_dirs(ref_dir: Path) -> list[Path]:
    """The claim folders of a reference directory (those holding a verdict.json), sorted by name."""
    ref_dir = Path(ref_dir)
    return sorted(p.parent for p in ref_dir.glob(f"*/{VERDICT}") if not p.parent.name.startswith("."))
