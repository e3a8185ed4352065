"""`optclaims`: one subcommand per workflow stage. The Snakemake rules call these and stay thin;
each also works by hand (``optclaims train --config run.json --data DIR --out DIR``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .atomic import read_json, write_json
from .errors import HubUnavailableError
from .runs import make_run_config, run_id


def _corpus(a):
    from .data.corpus import build_corpus

    m = build_corpus(a.spec, Path(a.out), max_bytes=a.max_bytes, val_fraction=a.val_fraction,
                     expected_hash=a.expect_hash)
    print(f"corpus {a.spec}: {m['n_files']} files, {m['n_bytes']} bytes, hash {m['hash'][:12]}")


def _tokenizer(a):
    from .data.tokenizer import train_tokenizer

    train_tokenizer(Path(a.corpus), Path(a.out), vocab_size=a.vocab_size)


def _tokenize(a):
    from .data.shards import tokenize_corpus

    meta = tokenize_corpus(Path(a.corpus), Path(a.tokenizer), Path(a.out))
    print(json.dumps({k: v["n_tokens"] for k, v in meta["splits"].items()}))


def _train(a):
    fields = json.loads(a.config_json) if a.config_json else read_json(a.config)
    cfg = make_run_config(fields)
    out = Path(a.out) if a.out else Path("results") / "runs" / run_id(cfg)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    from .devices import assigned_device
    from .train import train_run

    with assigned_device(a.jobs_per_gpu, wanted=cfg["device"]):
        s = train_run(cfg, out, Path(a.data))
    print(f"run {s['run_id']}: {s['status']}, val loss {s['final_val_loss']}, {s['tokens_per_s'] or 0:.0f} tokens/s -> {out}")


def _train_population(a):
    configs = [make_run_config(fields) for fields in json.loads(a.configs_json)]
    runs_dir = Path(a.runs_dir)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    from .devices import assigned_device
    from .train import Member, train_population

    members = [Member(cfg, runs_dir / run_id(cfg)) for cfg in configs]
    with assigned_device(a.jobs_per_gpu, wanted=configs[0]["device"]):  # a shared key of a population
        summaries = train_population(members, Path(a.data), Path(a.state_dir), a.id)
    for s in summaries:
        print(f"run {s['run_id']}: {s['status']}, val loss {s['final_val_loss']}")
    if a.out:
        write_json(Path(a.out), {"id": a.id, "members": [{"run_id": s["run_id"], "status": s["status"],
                                                          "final_val_loss": s["final_val_loss"]} for s in summaries]})


def _tasks(a):
    from .evaluate.tasks import build_tasks

    build_tasks(Path(a.val), Path(a.out), n_docs=a.n_docs, n_cloze=a.n_cloze)


def _eval(a):
    from .devices import assigned_device
    from .evaluate.run import evaluate_run

    data = Path(a.data)
    with assigned_device(a.jobs_per_gpu, wanted=a.device):
        evaluate_run(Path(a.run), data / "tokenizer.json", Path(a.tasks_dir), a.tasks, Path(a.out), limit=a.limit,
                     device=a.device, batch_size=a.batch_size, hub_tasks=a.hub_tasks)


def _analyze(a):
    from .analysis import run_analysis
    from .claims import load_claim

    spec = load_claim(a.claim, Path(a.repro_dir))
    runs_dir = Path(a.scale_dir) / "runs"
    v = run_analysis(a.claim, spec, a.scale, a.evidential, [runs_dir / r for r in a.runs],
                     Path(a.scale_dir) / "claims" / a.claim, Path(a.repro_dir), protocol_overrides=a.protocol_overrides)
    print(f"{a.claim} ({a.scale}): {v['status']}")


def _select(a):
    from .analysis import run_selection
    from .claims import load_claim

    spec = load_claim(a.claim, Path(a.repro_dir))
    runs_dir = Path(a.scale_dir) / "runs"
    chosen = run_selection(a.claim, spec, a.scale, [runs_dir / r for r in a.runs], json.loads(a.common),
                           Path(a.out), Path(a.repro_dir), a.stage)
    print(f"{a.claim} ({a.scale}): {len(chosen)} runs selected for stage {a.stage}")


def _report(a):
    from .report import build_report

    html, _ = build_report(Path(a.scale_dir), Path(a.out) if a.out else None, Path(a.sources))
    print(html)


def _report_pdf(a):
    from .report.latex import build_pdf

    report_dir = Path(a.report_dir) if a.report_dir else Path(a.scale_dir) / "report"
    print(build_pdf(report_dir))


def _plan(a):
    import yaml

    from .plan import build_plan

    config = yaml.safe_load(Path(a.config).read_text())
    for kv in a.set or []:
        key, _, value = kv.partition("=")
        config[key] = yaml.safe_load(value)
    if a.scale:
        config["scale"] = a.scale
    plan = build_plan(config, Path(a.repro_dir))
    if a.cost:
        from .cost import TABLE, format_cost, load_table, plan_cost

        print(format_cost(plan_cost(plan, load_table(Path(a.cost_table) if a.cost_table else TABLE), Path(a.repro_dir)),
                          plan.scale))
        return
    print(json.dumps({"scale": plan.scale, "data_id": plan.data.data_id, "claims": plan.claims,
                      "populations": plan.populations, "runs": plan.runs}, indent=2))


def _regression_figures(a):
    from .regression.figures import collect

    figures = collect(Path(a.scale_dir), a.scale, a.claims, json.loads(a.references), json.loads(a.tolerance),
                      a.threads)
    write_json(Path(a.out), figures)
    print(f"{len(figures['claims'])} claims, {len(figures['reference_runs'])} reference runs -> {a.out}")


def _regress(a):
    from .regression.compare import compare
    from .regression.history import write_report

    result = compare(read_json(Path(a.baseline)), read_json(Path(a.figures)))
    md = write_report(result, Path(a.out_dir))
    print(f"regression check, {result['scale']}: {'passed' if result['passed'] else 'FAILED'} "
          f"({result['n_failed']} of {result['n_checked']} checks failed) -> {md}")


def _compare(a):
    from .comparison.report import write_comparison

    md, page, result = write_comparison(Path(a.a), Path(a.b), Path(a.out))
    c = result["figure_counts"]
    print(f"compare ({result['scale']}): {len(result['flips'])} verdict flip(s), {c['differ']} of {result['n_figures']} "
          f"headline figures differ, {c['agree']} agree, {c['no interval']} without interval -> {page}\n{md}")


def _regression_gate(a):
    """Exit 1 when the regression report says the check failed, naming every failed figure."""
    result = read_json(Path(a.report))
    for r in result["rows"]:
        if r["verdict"] == "fail":
            print(f"REGRESSION {r['claim']} · {r['name']}: baseline {r['baseline']}, current {r['current']}, "
                  f"tolerance {r['tolerance']} ({r['note']})", file=sys.stderr)
    print(f"regression check, {result['scale']}: {'passed' if result['passed'] else 'FAILED'}; "
          f"report: {Path(a.report).with_suffix('.md')}")
    return 0 if result["passed"] else 1


def _bless(a):
    from .regression.baseline import bless_file

    baseline = bless_file(Path(a.figures), Path(a.baseline), a.reason, [Path(p) for p in a.replica])
    n = sum(len(c["figures"]) for c in baseline["claims"].values()) + len(baseline["reference_runs"])
    print(f"blessed {a.baseline}: {len(baseline['claims'])} claims, {n} figures, because: {baseline['blessed']['reason']}")


def _pack_reference(a):
    from .reference.pack import pack_reference

    packed = pack_reference(Path(a.scale_dir), a.claims, Path(a.out), Path(a.root))
    sizes = ", ".join(f"{c} {n / 2**20:.2f} MiB" for c, n in packed["claims"].items())
    print(f"packed {len(packed['claims'])} claim reference(s) ({sizes} unpacked) into {a.out}: "
          f"{packed['bytes'] / 2**20:.2f} MiB")


def _file_reference(a):
    from .reference.filing import file_reference

    filed = file_reference(Path(a.archive), Path(a.reference), Path(a.root))
    print(f"filed {', '.join(filed)} into {a.reference}; then `make reference-report readme-table` and commit it")


def _reference_report(a):
    from .reference.report import build_reference_report

    html, md = build_reference_report(Path(a.reference), Path(a.out) if a.out else None, Path(a.root))
    print(f"{html}\n{md}")


def _readme_table(a):
    from .reference.readme import out_of_sync, write_table

    if a.check:
        problems = out_of_sync(Path(a.readme), Path(a.reference), Path(a.root))
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    changed = write_table(Path(a.readme), Path(a.reference), Path(a.root))
    print(f"{a.readme}: gpu reference table {'rewritten' if changed else 'already in sync'}")


def _run_fields(a):
    from .run_fields import out_of_sync, write_table

    if a.check:
        problems = out_of_sync(Path(a.readme))
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    changed = write_table(Path(a.readme))
    print(f"{a.readme}: table of run fields {'rewritten' if changed else 'already in sync'}")


def _claims_table(a):
    from .claims_table import out_of_sync, write_table

    if a.check:
        problems = out_of_sync(Path(a.readme), Path(a.repro_dir))
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    changed = write_table(Path(a.readme), Path(a.repro_dir))
    print(f"{a.readme}: claim table {'rewritten' if changed else 'already in sync'}")


def _reference_figures(a):
    import yaml

    from .plan import build_plan
    from .reference.baseline import reference_figures
    from .reference.layout import claim_dirs

    claims = [d.name for d in claim_dirs(Path(a.reference))]
    if not claims:
        raise ValueError(f"reference: no claim reference in {a.reference} yet; nothing to bless")
    config = yaml.safe_load(Path(a.config).read_text())
    config.update(scale="gpu", claims=claims)
    plan = build_plan(config, Path(a.root) / "reproductions")
    figures = reference_figures(Path(a.reference), plan.claims, plan.runs, plan.settings.get("regression") or {},
                                Path(a.root))
    write_json(Path(a.out), figures)
    print(f"{len(figures['claims'])} claims, {len(figures['reference_runs'])} reference runs from {a.reference} -> {a.out}")


def _claims_list(s: str) -> list[str]:
    """Claims separated by commas or spaces."""
    return [x for x in s.replace(",", " ").split() if x]


def _csv(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def _jobs_per_gpu_argument(c: argparse.ArgumentParser) -> None:
    c.add_argument("--jobs-per-gpu", type=int, default=1,
                   help="jobs that may share one GPU; each job reserves its own (device, share) slot")


def _claim_parser(sub, name: str, help_: str) -> argparse.ArgumentParser:
    """A subcommand that works on one claim's runs at one scale."""
    c = sub.add_parser(name, help=help_)
    c.add_argument("claim")
    c.add_argument("--scale", required=True)
    c.add_argument("--scale-dir", required=True)
    c.add_argument("--runs", nargs="+", required=True)
    c.add_argument("--repro-dir", default="reproductions")
    return c


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optclaims", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("corpus", help="build a corpus: train/val documents and a manifest")
    c.add_argument("--spec", default="pinned", help="pinned | pycode | hf:<dataset>[:<config>] | files:<glob>")
    c.add_argument("--max-bytes", type=int)
    c.add_argument("--val-fraction", type=float, default=0.1)
    c.add_argument("--expect-hash", help="the manifest hash the corpus must have; another writes nothing and fails")
    c.add_argument("--out", required=True)
    c.set_defaults(func=_corpus)

    c = sub.add_parser("tokenizer", help="train a byte-level BPE on a corpus's train split")
    c.add_argument("--corpus", required=True)
    c.add_argument("--vocab-size", type=int, default=8192)
    c.add_argument("--out", required=True)
    c.set_defaults(func=_tokenizer)

    c = sub.add_parser("tokenize", help="write token shards for training")
    c.add_argument("--corpus", required=True)
    c.add_argument("--tokenizer", required=True)
    c.add_argument("--out", required=True)
    c.set_defaults(func=_tokenize)

    c = sub.add_parser("train", help="train one run from its config")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="run config JSON file")
    g.add_argument("--config-json", help="run config as a JSON string")
    c.add_argument("--data", required=True, help="data directory (tokens/ inside)")
    c.add_argument("--out", help="run directory (default results/runs/<run_id>)")
    c.add_argument("--threads", type=int)
    _jobs_per_gpu_argument(c)
    c.set_defaults(func=_train)

    c = sub.add_parser("train-population", help="train runs that share a shape as one stacked model")
    c.add_argument("--configs-json", required=True, help="the member run configs, a JSON list")
    c.add_argument("--data", required=True, help="data directory (tokens/ inside)")
    c.add_argument("--runs-dir", required=True, help="each member's outputs go to RUNS_DIR/<run_id>")
    c.add_argument("--state-dir", required=True, help="where the population's resumable train_state.pt lives")
    c.add_argument("--id", help="the population's id (default: a hash of its members' run_ids)")
    c.add_argument("--out", help="population.json: the members and their statuses, written last")
    c.add_argument("--threads", type=int)
    _jobs_per_gpu_argument(c)
    c.set_defaults(func=_train_population)

    c = sub.add_parser("tasks", help="build the local lm-eval tasks from a held-out split")
    c.add_argument("--val", required=True, help="val.jsonl of a corpus")
    c.add_argument("--out", required=True)
    c.add_argument("--n-docs", type=int, default=100)
    c.add_argument("--n-cloze", type=int, default=200)
    c.set_defaults(func=_tasks)

    c = sub.add_parser("eval", help="evaluate a trained run with lm-evaluation-harness")
    c.add_argument("--run", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--tasks-dir", required=True)
    c.add_argument("--tasks", type=_csv, default=["optclaims_ppl", "optclaims_cloze"])
    c.add_argument("--hub-tasks", type=_csv, default=[])
    c.add_argument("--limit", type=int)
    c.add_argument("--device", default="auto", help="auto (CUDA where available, else the CPU), cpu, cuda or cuda:N")
    c.add_argument("--batch-size", type=int, default=16)
    _jobs_per_gpu_argument(c)
    c.add_argument("--out", required=True)
    c.set_defaults(func=_eval)

    c = _claim_parser(sub, "analyze", "analyse a claim from its runs; writes verdict.json, table.csv, figures/")
    c.add_argument("--evidential", action="store_true")
    c.add_argument("--protocol-overrides", type=_csv, default=[],
                   help="run fields the workflow's run_overrides changed (steps, batch_size, ...): the verdict is then no evidence")
    c.set_defaults(func=_analyze)

    c = _claim_parser(sub, "select", "a claim's runs of a later stage, chosen from the results of the earlier ones")
    c.add_argument("--stage", type=int, default=2, help="the stage to choose (2 = the first selection)")
    c.add_argument("--common", required=True, help="JSON fields every run config gets (data, vocab, overrides)")
    c.add_argument("--out", required=True)
    c.set_defaults(func=_select)

    c = sub.add_parser("report", help="build the report of one scale (HTML, Markdown and LaTeX)")
    c.add_argument("--scale-dir", required=True)
    c.add_argument("--out")
    c.add_argument("--sources", default="reproductions/sources.yaml", help="the bibliography the claims cite")
    c.set_defaults(func=_report)

    c = sub.add_parser("report-pdf", help="report.pdf from a report's report.tex (latexmk, or pdflatex and bibtex)")
    where = c.add_mutually_exclusive_group(required=True)
    where.add_argument("--scale-dir", help="results/<scale>: builds results/<scale>/report/report.pdf")
    where.add_argument("--report-dir", help="a report folder holding report.tex")
    c.set_defaults(func=_report_pdf)

    c = sub.add_parser("regression-figures", help="what a nightly compares: statuses, figures, reference-run losses")
    c.add_argument("--scale", required=True)
    c.add_argument("--scale-dir", required=True)
    c.add_argument("--claims", nargs="+", required=True)
    c.add_argument("--references", required=True, help="JSON {key: [run_id, its seed siblings...]}")
    c.add_argument("--tolerance", default="{}", help="JSON: the scale's regression settings")
    c.add_argument("--threads", type=int, required=True, help="the scale's train.threads (environment fingerprint)")
    c.add_argument("--out", required=True)
    c.set_defaults(func=_regression_figures)

    c = sub.add_parser("regress", help="compare figures with a baseline; writes report.md, report.json, history/")
    c.add_argument("--figures", required=True)
    c.add_argument("--baseline", required=True)
    c.add_argument("--out-dir", required=True)
    c.set_defaults(func=_regress)

    c = sub.add_parser("compare", help="two results folders of one scale side by side (results/<scale> or "
                       "results/reference/gpu): verdict flips, headline figures and their agreement, figures overlaid; "
                       "writes compare.md, compare.html and figures/ (reports, never gates: exit 0)")
    c.add_argument("a", help="side A: results/<scale>, or a reference folder such as results/reference/gpu")
    c.add_argument("b", help="side B, of the same scale")
    c.add_argument("--out", required=True, help="the folder to write compare.md, compare.html, compare.json, figures/")
    c.set_defaults(func=_compare)

    c = sub.add_parser("regression-gate", help="exit 1 if a regression report failed (the nightly's exit status)")
    c.add_argument("report", help="regression/report.json")
    c.set_defaults(func=_regression_gate)

    c = sub.add_parser("bless", help="make these figures the scale's baseline, recording why")
    c.add_argument("--figures", required=True, help="results/<scale>/regression/figures.json")
    c.add_argument("--baseline", required=True, help="results/baselines/<scale>.json")
    c.add_argument("--reason", required=True, help="what changed and why the new figures are right")
    c.add_argument("--replica", action="append", default=[], help="figures.json of the same suite in another "
                   "environment (repeatable): the statistical tolerances cover the spread over them")
    c.set_defaults(func=_bless)

    c = sub.add_parser("pack-reference", help="pack the gpu results of some claims into one archive of the "
                       "reference layout (on the GPU host, after the run); refuses what is no reference or too big")
    c.add_argument("--scale-dir", default="results/gpu")
    c.add_argument("--claims", type=_claims_list, required=True, help="comma- or space-separated claim ids")
    c.add_argument("--out", required=True, help="the archive to write (.tgz, at most 16 MiB)")
    c.add_argument("--root", default=".", help="the checkout the runs were made with (claim-code hash)")
    c.set_defaults(func=_pack_reference)

    c = sub.add_parser("file-reference", help="check an archive from pack-reference, then replace each of its "
                       "claims' folders under results/reference/gpu (whole or not at all)")
    c.add_argument("archive")
    c.add_argument("--reference", default="results/reference/gpu")
    c.add_argument("--root", default=".")
    c.set_defaults(func=_file_reference)

    c = sub.add_parser("reference-report", help="the HTML and Markdown report of the committed gpu references (no training)")
    c.add_argument("--reference", default="results/reference/gpu")
    c.add_argument("--out", help="default: <reference>/report")
    c.add_argument("--root", default=".")
    c.set_defaults(func=_reference_report)

    c = sub.add_parser("readme-table", help="rewrite the README's gpu reference table from the references "
                       "(--check: exit 1 if it, or the reference report.md, is out of sync)")
    c.add_argument("--readme", default="README.md")
    c.add_argument("--reference", default="results/reference/gpu")
    c.add_argument("--root", default=".")
    c.add_argument("--check", action="store_true")
    c.set_defaults(func=_readme_table)

    c = sub.add_parser("run-fields", help="rewrite the README's table of run fields from the run schema "
                       "(--check: exit 1 if it is out of sync)")
    c.add_argument("--readme", default="README.md")
    c.add_argument("--check", action="store_true")
    c.set_defaults(func=_run_fields)

    c = sub.add_parser("claims-table", help="rewrite the README's claim table from reproductions/*/claim.yaml "
                       "(--check: exit 1 if it is out of sync)")
    c.add_argument("--readme", default="README.md")
    c.add_argument("--repro-dir", default="reproductions")
    c.add_argument("--check", action="store_true")
    c.set_defaults(func=_claims_table)

    c = sub.add_parser("reference-figures", help="what the nightly compares, from the committed gpu references "
                       "(bless it into results/baselines/gpu.json)")
    c.add_argument("--reference", default="results/reference/gpu")
    c.add_argument("--config", default="workflows/config/config.yaml")
    c.add_argument("--root", default=".")
    c.add_argument("--out", required=True)
    c.set_defaults(func=_reference_figures)

    from . import bench

    c = sub.add_parser("bench-population", help="aggregate tokens/s and MFU of populations of K = 1, 2, 4, ... "
                       "members, AdamW and Muon, with the trainer's own step, on this machine")
    bench.add_arguments(c)
    c.set_defaults(func=bench.run)

    c = sub.add_parser("plan", help="print the runs and populations a workflow config asks for, or (--cost) what they cost")
    c.add_argument("--config", default="workflows/config/config.yaml")
    c.add_argument("--scale", help="the scale to plan (default: the config's)")
    c.add_argument("--cost", action="store_true", help="per claim: runs, populations, tokens, FLOPs, estimated minutes")
    c.add_argument("--cost-table", help="the measured throughput table (default workflows/throughput.csv)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.add_argument("--repro-dir", default="reproductions")
    c.set_defaults(func=_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, HubUnavailableError) as e:  # ConfigError is a ValueError
        print(f"optclaims {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
