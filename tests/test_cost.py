"""What a plan costs before anything runs: `optclaims bench-population` (its JSON and the rows it
records in the cost table), `cost.throughput` (choice of row, conversion between shapes),
`cost.plan_cost` on the repository's own workflow config, `cost.data_seconds`, and
`optclaims plan --cost`. CPU only, seconds."""

import copy
import csv
import datetime as dt
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from optclaims import bench, cost
from optclaims.claims import list_claims, load_claim_module
from optclaims.cli import main
from optclaims.model import GPT
from optclaims.shape import flops_per_token
from optclaims.parametrization import member_init
from optclaims.plan import build_plan
from optclaims.runs import make_run_config
from optclaims.shape import model_config

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "reproductions"
TABLE = ROOT / "workflows/throughput.csv"
CONFIG = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())
CLAIMS = list_claims(REPRO)  # the config plans every claim folder


def table_rows(path: Path) -> list[dict]:
    """The cost table's rows as the csv module reads them (comment lines skipped)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def config(scale: str) -> dict:
    return {**copy.deepcopy(CONFIG), "scale": scale}


@pytest.fixture(scope="module")
def smoke_plan():
    return build_plan(config("smoke"), REPRO)


@pytest.fixture(scope="module")
def gpu_plan():
    return build_plan(config("gpu"), REPRO)


# ---------------------------------------------------------------- bench-population


BENCH_ARGS = ["--members", "1,2", "--optimizers", "adamw,muon", "--steps", "1", "--warmup", "1", "--batch-size", "2"]


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_bench_population_on_cpu_writes_json_and_records_rows(tmp_path, cpu_only):
    out, table = tmp_path / "bench.json", tmp_path / "throughput.csv"
    original = TABLE.read_text(encoding="utf-8")
    table.write_text(original, encoding="utf-8")
    before = dt.date.today().isoformat()
    assert main(["bench-population", *BENCH_ARGS, "--json", str(out), "--record", str(table)]) == 0
    dates = {before, dt.date.today().isoformat()}

    results = json.loads(out.read_text())["results"]
    assert sorted((r["optimizer"], r["members"]) for r in results) == [("adamw", 1), ("adamw", 2), ("muon", 1), ("muon", 2)]
    for r in results:
        assert r["tokens_per_s"] > 0 and r["step_ms"] > 0
        assert r["mfu"] is None  # no peak FLOP/s on CPU
        assert r["batch_size"] == 2
        assert r["tokens_per_s"] == pytest.approx(r["members"] * 2 * r["seq_len"] / (r["step_ms"] / 1e3), rel=1e-6)

    text = table.read_text(encoding="utf-8")
    assert text.startswith(original)  # comment lines, header and earlier rows kept as they were
    added = list(csv.reader(text[len(original):].splitlines()))
    assert len(added) == 4
    header = next(csv.reader([next(line for line in original.splitlines() if not line.startswith("#"))]))
    assert all(len(row) == len(header) for row in added)
    added = [dict(zip(header, row)) for row in added]
    assert sorted((r["optimizer"], int(r["members"])) for r in added) == [("adamw", 1), ("adamw", 2), ("muon", 1), ("muon", 2)]
    by_key = {(r["optimizer"], r["members"]): r for r in results}
    for r in added:
        assert r["measured"] == "true" and r["date"] in dates and r["device"] == "CPU"
        assert int(r["batch_size"]) == 2
        assert float(r["tokens_per_s"]) == round(by_key[r["optimizer"], int(r["members"])]["tokens_per_s"])
    assert len(cost.load_table(table)) == len(cost.load_table(TABLE)) + 4  # still a table plan --cost reads


@pytest.mark.parametrize("flag, value, named", [("--members", "0", r"--members\W+0\b"),
                                                ("--optimizers", "lion", r"\blion\b"),
                                                ("--steps", "0", r"--steps 0\b"),
                                                ("--warmup", "0", r"--warmup 0\b.*--record")])
def test_bench_population_rejects_bad_input_before_benchmarking(tmp_path, cpu_only, monkeypatch, capsys, flag, value, named):
    calls = []
    monkeypatch.setattr(bench, "bench_population", lambda *a, **k: calls.append(a) or pytest.fail("benchmarked"))
    out, table = tmp_path / "bench.json", tmp_path / "throughput.csv"
    table.write_text(TABLE.read_text(encoding="utf-8"), encoding="utf-8")
    args = [*BENCH_ARGS, "--json", str(out), "--record", str(table)]
    args[args.index(flag) + 1] = value
    assert main(["bench-population", *args]) == 2
    err = capsys.readouterr().err
    assert re.search(named, err), err
    assert not calls and not out.exists()
    assert table.read_text(encoding="utf-8") == TABLE.read_text(encoding="utf-8")


# ---------------------------------------------------------------- cost.throughput


def write_table(path: Path, rows: list[dict]) -> "cost.pd.DataFrame":
    defaults = {"device": "CPU", "optimizer": "adamw", "d_model": 64, "n_layers": 2, "seq_len": 64, "vocab_size": 2048,
                "batch_size": 4, "members": 1, "tokens_per_s": 10000, "startup_s": 1.0, "compile_s": 0.0,
                "compiled": "false", "measured": "true", "date": "2026-01-01", "source": "test"}
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write("# a test table\n")
        writer = csv.DictWriter(f, cost.COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: {**defaults, **r}[c] for c in cost.COLUMNS})
    return cost.load_table(path)


def run_cfg(d_model=64, n_layers=2, n_heads=2, seq_len=64, vocab_size=2048, optimizer="adamw"):
    return make_run_config({"data": "d", "vocab_size": vocab_size, "d_model": d_model, "n_layers": n_layers,
                            "n_heads": n_heads, "seq_len": seq_len, "batch_size": 4, "steps": 10,
                            "optimizer": optimizer, "lr": 1e-3, "seed": 0})


def model_fpt(cfg: dict) -> float:
    """FLOPs per token as bench-population reports them: from the built model's own parameters."""
    model = GPT(model_config(cfg), [member_init(cfg)], [0])
    return flops_per_token(model.cfg, model.num_params())


def tps(table, cfg, members, device="CPU"):
    return cost.throughput(table, device, cfg, members, compiled=False)


def test_throughput_converts_shapes_at_equal_flops_per_second(tmp_path):
    table = write_table(tmp_path / "t.csv", [{"members": 4, "tokens_per_s": 20000}])
    row_fpt = model_fpt(run_cfg())
    assert tps(table, run_cfg(), 4)["tokens_per_s"] == pytest.approx(20000)
    for other in (run_cfg(d_model=128, n_layers=3, n_heads=4, seq_len=128, vocab_size=4096), run_cfg(d_model=32)):
        t = tps(table, other, 4)
        assert t["tokens_per_s"] * model_fpt(other) == pytest.approx(20000 * row_fpt, rel=1e-9)
    assert tps(table, run_cfg(d_model=128, n_heads=4), 4)["tokens_per_s"] < 20000  # a bigger model: fewer tokens/s


def test_throughput_prefers_the_nearest_population_size(tmp_path):
    table = write_table(tmp_path / "t.csv", [{"members": k, "tokens_per_s": 1000 * k} for k in (1, 4, 16)])
    for members, row in [(1, 1), (4, 4), (3, 4), (6, 4), (12, 16), (64, 16)]:
        assert tps(table, run_cfg(), members)["tokens_per_s"] == pytest.approx(1000 * row), members
    # the optimizer's own rows first
    table = write_table(tmp_path / "t.csv", [{"members": 4, "tokens_per_s": 4000},
                                             {"members": 1, "tokens_per_s": 7777, "optimizer": "muon"}])
    assert tps(table, run_cfg(optimizer="muon"), 4)["tokens_per_s"] == pytest.approx(7777)


def test_throughput_prefers_measured_rows_at_equal_distance(tmp_path):
    # the estimate listed first, so a choice by order alone would take it
    table = write_table(tmp_path / "t.csv", [{"members": 4, "tokens_per_s": 1111, "measured": "false"},
                                             {"members": 4, "tokens_per_s": 2222, "measured": "true"}])
    t = tps(table, run_cfg(), 4)
    assert t["tokens_per_s"] == pytest.approx(2222) and t["measured"] is True
    table = write_table(tmp_path / "t.csv", [{"members": 2, "tokens_per_s": 1111, "measured": "false"},
                                             {"members": 8, "tokens_per_s": 2222, "measured": "true"}])
    t = tps(table, run_cfg(), 4)  # both a factor 2 away
    assert t["tokens_per_s"] == pytest.approx(2222) and t["measured"] is True
    table = write_table(tmp_path / "t.csv", [{"members": 4, "tokens_per_s": 1111, "measured": "false"}])
    assert tps(table, run_cfg(), 4)["measured"] is False  # an estimate is said to be one


def test_throughput_takes_the_latest_of_equally_near_rows_and_weighs_batch_size(tmp_path):
    table = write_table(tmp_path / "t.csv", [{"tokens_per_s": 10000, "date": "2026-01-01"},
                                             {"tokens_per_s": 20000, "date": "2026-02-01"},
                                             {"tokens_per_s": 50000, "batch_size": 64}])
    cfg = {"optimizer": "adamw", "d_model": 64, "n_layers": 2, "n_heads": 2, "seq_len": 64, "vocab_size": 2048, "batch_size": 4}
    assert cost.throughput(table, "CPU", cfg, 1, False)["tokens_per_s"] == pytest.approx(20000)  # a re-measurement wins
    assert cost.throughput(table, "CPU", {**cfg, "batch_size": 64}, 1, False)["tokens_per_s"] == pytest.approx(50000)


def test_throughput_and_data_seconds_name_a_device_without_rows(tmp_path):
    table = write_table(tmp_path / "t.csv", [{"members": 1}])
    with pytest.raises(ValueError, match="A100"):
        tps(table, run_cfg(), 1, device="A100")
    with pytest.raises(ValueError, match="CPU"):  # no data row
        cost.data_seconds(table, "CPU", 10**6)


# ---------------------------------------------------------------- plan_cost on the workflow config


def test_plan_cost_of_the_smoke_scale(smoke_plan, monkeypatch):
    monkeypatch.chdir(ROOT)
    plan, table = smoke_plan, cost.load_table(TABLE)
    frame = cost.plan_cost(plan, table, REPRO).set_index("claim")
    assert list(frame.index) == [*CLAIMS, "all"]

    unstaged = "adam_update_rms"
    assert unstaged not in plan.staged
    runs = {r: plan.runs[r] for r in plan.claims[unstaged]}
    assert frame.loc[unstaged, "runs"] == len(runs)
    assert frame.loc[unstaged, "populations"] == len(plan.group(runs))

    staged = "muon_efficiency"
    assert plan.stages[staged] == 3  # coordinate descent, the tuned re-sweep, the budgets
    stage1 = {r: plan.runs[r] for r in plan.claims[staged]}
    later = cost.later_stages_stand_in(staged, plan.claim_specs[staged], plan.scale, load_claim_module(staged, REPRO),
                                       stage1, plan.common, plan.selections(staged))
    assert len(later) == 3 and all(later)  # each stage chooses from the stand-ins of every earlier one
    every = {**stage1, **{r: c for chosen in later for r, c in chosen.items()}}
    assert frame.loc[staged, "runs"] == len(every)
    assert frame.loc[staged, "populations"] > len(plan.group(stage1))
    block = plan.claim_specs[staged]["scales"]["smoke"]
    budgets = {(c["d_model"], c["steps"]) for c in later[-1].values()}
    assert budgets == {(s["d_model"], max(2, round(b * s["steps"]))) for s in block["sizes"].values() for b in block["budgets"]}

    claims = frame.drop(index="all")
    assert (claims.minutes_CPU > 0).all() and claims.measured_CPU.all()
    for col in ("runs", "populations", "tokens", "flops", "minutes_CPU"):
        assert frame.loc["all", col] == pytest.approx(claims[col].sum()), col
    assert frame.loc["all", "measured_CPU"] == claims.measured_CPU.all()

    slower = table.astype({"tokens_per_s": float})
    training = slower.optimizer != "data"
    slower.loc[training, "tokens_per_s"] = slower.loc[training, "tokens_per_s"] / 2
    slow = cost.plan_cost(plan, slower, REPRO).set_index("claim")
    assert (slow.minutes_CPU > frame.minutes_CPU).all()
    assert (slow.minutes_CPU < 2 * frame.minutes_CPU).all()  # start-up and data stay as they were
    assert (slow[["runs", "populations", "tokens", "flops"]] == frame[["runs", "populations", "tokens", "flops"]]).all().all()


def test_plan_cost_marks_estimates(smoke_plan, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    table = cost.load_table(TABLE)
    table.loc[(table.device == "CPU") & (table.optimizer == "adamw"), "measured"] = False
    frame = cost.plan_cost(smoke_plan, table, REPRO).set_index("claim")
    assert frame.loc["adam_update_rms", "measured_CPU"] == False  # noqa: E712 (a numpy bool)
    assert frame.loc["all", "measured_CPU"] == False  # noqa: E712


# ---------------------------------------------------------------- data preparation


def test_data_seconds_grow_linearly_with_corpus_bytes(monkeypatch):
    monkeypatch.chdir(ROOT)
    table = cost.load_table(TABLE)
    row = next(r for r in table_rows(TABLE) if r["device"] == "CPU" and r["optimizer"] == "data")
    s = {b: cost.data_seconds(table, "CPU", b)[0] for b in (0, 10**6, 2 * 10**6, 8 * 10**6)}
    assert s[0] == pytest.approx(float(row["startup_s"]))
    step = s[10**6] - s[0]
    assert step == pytest.approx(10**6 / float(row["tokens_per_s"]))
    assert s[2 * 10**6] - s[0] == pytest.approx(2 * step)
    assert s[8 * 10**6] - s[0] == pytest.approx(8 * step)


def test_gpu_data_preparation_is_the_table_rows(gpu_plan, monkeypatch):
    monkeypatch.chdir(ROOT)
    corpus_bytes = CONFIG["scales"]["gpu"]["corpus"]["max_bytes"]
    assert gpu_plan.data.max_bytes == corpus_bytes
    table = cost.load_table(TABLE)
    rows = {r["device"]: r for r in table_rows(TABLE) if r["optimizer"] == "data"}
    for device in cost.DEVICES["gpu"]:
        seconds, measured = cost.data_seconds(table, device, corpus_bytes)
        row = rows[device]
        assert seconds == pytest.approx(float(row["startup_s"]) + corpus_bytes / float(row["tokens_per_s"]))
        assert measured == (row["measured"] == "true")

    # and the claim's minutes carry exactly that: halve the H100 data row's rate, and only H100 grows, by one corpus
    claim = "adam_update_rms"
    base = cost.claim_cost(gpu_plan, claim, table, REPRO)
    slower = table.astype({"tokens_per_s": float})
    data_row = (slower.device == "H100") & (slower.optimizer == "data")
    slower.loc[data_row, "tokens_per_s"] = slower.loc[data_row, "tokens_per_s"] / 2
    slow = cost.claim_cost(gpu_plan, claim, slower, REPRO)
    extra = corpus_bytes / float(rows["H100"]["tokens_per_s"])  # 2·B/r − B/r
    assert 60 * (slow["minutes_H100"] - base["minutes_H100"]) == pytest.approx(extra)
    assert slow["minutes_H200"] == pytest.approx(base["minutes_H200"])


# ---------------------------------------------------------------- optclaims plan --cost


def cost_lines(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.strip() and not line.startswith(("-", "*", "claim"))}


def test_plan_cost_cli_prints_each_claim_and_marks_estimates(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--scale", "gpu", "--cost"]) == 0
    out = capsys.readouterr().out
    lines = cost_lines(out)
    assert set(lines) == {*CLAIMS, "all"}
    assert "H100" in out and "H200" in out
    for claim, line in lines.items():  # every GPU row is an estimate: both devices' minutes starred
        assert re.search(r"\d\*\s+[\d.]+\*$", line), line
    assert sum(int(lines[c].split()[1]) for c in CLAIMS) == int(lines["all"].split()[1])  # runs
    assert "estimated" in out.splitlines()[-1]

    measured = cost.load_table(TABLE)
    measured["measured"] = True
    measured.to_csv(tmp_path / "measured.csv", index=False)
    assert main(["plan", "--scale", "gpu", "--cost", "--cost-table", str(tmp_path / "measured.csv")]) == 0
    lines = cost_lines(capsys.readouterr().out)
    assert set(lines) == {*CLAIMS, "all"}
    assert not any("*" in line for line in lines.values()), lines


@pytest.mark.parametrize("shape", [{}, {"d_model": 128, "n_layers": 3, "n_heads": 4, "vocab_size": 4096}])
def test_matmul_params_counts_what_the_built_model_counts(shape):
    from optclaims.population import matmul_params

    cfg = run_cfg(**shape)
    assert matmul_params(cfg) == GPT(model_config(cfg), [member_init(cfg)], [0]).num_params()


def test_bench_population_takes_every_optimizer_a_run_can_have(tmp_path, cpu_only):
    """The optimizers bench-population accepts are the run schema's (sgd included, clip_norm's control)."""
    out = tmp_path / "bench.json"
    assert main(["bench-population", "--members", "1", "--optimizers", "sgd", "--steps", "1", "--warmup", "1",
                 "--batch-size", "2", "--json", str(out)]) == 0
    assert [r["optimizer"] for r in json.loads(out.read_text())["results"]] == ["sgd"]
