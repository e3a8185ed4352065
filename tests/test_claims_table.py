"""The README's claim table is written from the claim folders (optclaims claims-table), so a new
claim folder is a new row and a changed claim.yaml a changed one; the committed README is current."""

import shutil
from pathlib import Path

import pytest
import yaml

from optclaims.analysis import fill_thresholds
from optclaims.claims import list_claims
from optclaims.claims_table import TABLE, out_of_sync, table_block, write_table
from optclaims.cli import main
from optclaims.errors import ConfigError
from optclaims.report.build import escape_markdown

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "reproductions"


def rows(block: str) -> dict[str, list[str]]:
    return {line.split("`")[1]: [c.strip() for c in line.strip("|").split(" | ")]
            for line in block.splitlines() if line.startswith("| `")}


def test_the_readme_claim_table_is_the_claim_folders():
    assert out_of_sync(ROOT / "README.md", REPRO) == []
    table = rows(TABLE.current(ROOT / "README.md"))
    assert list(table) == list_claims(REPRO) and len(table) >= 5
    for claim, (name, source, status) in table.items():
        spec = yaml.safe_load((REPRO / claim / "claim.yaml").read_text())
        assert name == f"`{claim}`: {escape_markdown(spec['title'])}" and source == escape_markdown(spec["source"])
        assert status == f"implemented: {escape_markdown(fill_thresholds(spec['implemented'], spec['thresholds']))}"
    assert "90% interval" in table["adam_update_rms"][2]  # {size_interval:.0%}, from its thresholds


def test_a_new_claim_folder_is_a_new_row_and_the_check_fails_until_it_is_written(tmp_path, capsys):
    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)
    shutil.copytree(repro / "clip_norm", repro / "clip_twin")
    spec = repro / "clip_twin" / "claim.yaml"
    spec.write_text(spec.read_text().replace("claim: clip_norm\n", "claim: clip_twin\n", 1)
                    .replace('implemented: "settled norms', 'implemented: "τ = {tau}, settled norms', 1))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    assert out_of_sync(readme, repro) and "clip_twin" not in rows(TABLE.current(readme))
    args = ["claims-table", "--readme", str(readme), "--repro-dir", str(repro)]
    assert main([*args, "--check"]) == 1 and "claim table differs" in capsys.readouterr().err
    assert main(args) == 0 and main([*args, "--check"]) == 0
    assert not write_table(readme, repro) and out_of_sync(readme, repro) == []
    assert rows(TABLE.current(readme))["clip_twin"][2].startswith("implemented: τ = 1, settled norms")
    assert readme.read_text().replace(table_block(repro), "") == (ROOT / "README.md").read_text().replace(table_block(REPRO), "")


def test_a_claim_without_its_table_fields_or_block_is_refused(tmp_path):
    repro = tmp_path / "reproductions"
    shutil.copytree(REPRO, repro)
    spec = repro / "mup_transfer" / "claim.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("at ≥ {min_tokens_per_param} tokens", "at ≥ {min_token_per_param} tokens", 1))
    with pytest.raises(ConfigError, match=r"implemented does not exist: .*min_token_per_param"):
        table_block(repro)
    spec.write_text("\n".join(line for line in text.splitlines() if not line.startswith("implemented:")) + "\n")
    with pytest.raises(ConfigError, match="'implemented' is a required property"):
        table_block(repro)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text().replace(TABLE.end, ""))
    with pytest.raises(ValueError, match="needs exactly one claim-table block"):
        write_table(readme, REPRO)
