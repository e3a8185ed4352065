"""The lm-eval adapter against direct torch computations, the local tasks, and evaluate_run."""

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from optclaims.checkpoint import save_member
from optclaims.errors import ConfigError, HubUnavailableError
from optclaims.evaluate import build_tasks, evaluate_run
from optclaims.evaluate.__main__ import prepare_optclaims_run
from optclaims.evaluate.lm import OptclaimsLM
from optclaims.model import GPT, GPTConfig, MemberInit

SEQ_LEN = 32
README = Path(__file__).resolve().parents[1] / "README.md"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
CPU_ONLY = {**os.environ, **OFFLINE, "CUDA_VISIBLE_DEVICES": ""}  # a machine without a GPU, as far as torch sees


def python_file(k: int) -> str:
    """A small, varied Python source file."""
    body = [f'"""Module {k}: helpers for case {k}."""', "import math", ""]
    for f in range(3 + k % 4):
        name = f"compute_{k}_{f}"
        body += [
            f"def {name}(x, y={f}):",
            f"    total = x * {k + f} + y",
            f"    for i in range({f + 2}):",
            f"        total += math.sqrt(i + {k})",
            f"    return total - {f}  # value {k * f}",
            "",
        ]
    body += ["if __name__ == '__main__':", f"    print(compute_{k}_0({k}))"]
    return "\n".join(body) + "\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    docs = [{"path": f"pkg/mod_{k}.py", "text": python_file(k)} for k in range(12)]
    data = root / "data"
    (data / "corpus").mkdir(parents=True)
    (data / "corpus" / "val.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([d["text"] for d in docs], trainer)
    tok.save(str(data / "tokenizer.json"))
    assert tok.token_to_id("<|endoftext|>") == 0

    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), d_model=32, n_layers=2, n_heads=2, seq_len=SEQ_LEN)
    run = root / "run_ok"
    run.mkdir()
    # member 1 of a population, saved as a model of its own
    population = GPT(cfg, [MemberInit(init_std=0.02), MemberInit(init_std=0.5)], seeds=[1, 0])
    save_member(population, 1, run / "model.safetensors")
    (run / "summary.json").write_text(json.dumps({"status": "ok"}))
    lm = OptclaimsLM.create_from_arg_string(
        f"run_dir={run},tokenizer={data / 'tokenizer.json'},device=cpu,batch_size=3,max_gen_toks=24"
    )
    return {"root": root, "data": data, "docs": docs, "run": run, "tok": tok, "lm": lm}


def request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def summed_logprob(model, inputs: list[int], targets: list[int]) -> float:
    """log p(targets) from one forward pass: they are the last len(targets) next tokens of inputs."""
    with torch.no_grad():
        logits = model(torch.tensor([[inputs]]))[0][0, 0]  # a population of one, a batch of one
    logp = F.log_softmax(logits[-len(targets) :].double(), dim=-1)
    return logp[torch.arange(len(targets)), torch.tensor(targets)].sum().item()


def test_constructed_from_arg_string(env):
    lm = env["lm"]
    assert (lm.batch_size, lm.max_gen_toks, lm.max_length) == (3, 24, SEQ_LEN)
    assert not lm.model.training and lm.model.n_members == 1
    assert lm.model.members[0].init_std == 0.5  # the saved member, not its neighbour


def test_loglikelihood_matches_direct_logprobs(env):
    lm, tok = env["lm"], env["tok"]
    text = env["docs"][3]["text"]
    cases = [
        ("def f(x):", "\n    return x"),
        ("def f(x):\n", "    return x"),  # trailing whitespace moves into the continuation
        ("import", " math"),
        ("x = 1", " + 2"),
        (text[:400], text[400:420]),  # context far longer than SEQ_LEN: left-truncated
    ]
    got = lm.loglikelihood([request("loglikelihood", c, x) for c, x in cases])
    assert len(ids(tok, cases[-1][0])) > SEQ_LEN
    for (ctx, cont), (ll, greedy) in zip(cases, got):
        ctx, cont = ctx.rstrip(), ctx[len(ctx.rstrip()) :] + cont  # lm-eval's word-boundary rule
        seq = ids(tok, ctx) + ids(tok, cont)
        n = len(ids(tok, cont))
        inputs = seq[-(SEQ_LEN + 1) : -1]
        assert ll == pytest.approx(summed_logprob(lm.model, inputs, seq[-n:]), abs=1e-4)
        assert isinstance(greedy, bool)


def test_loglikelihood_empty_context_conditions_on_eot(env):
    lm, tok = env["lm"], env["tok"]
    [(ll, _)] = lm.loglikelihood([request("loglikelihood", "", "import math")])
    cont = ids(tok, "import math")
    assert ll == pytest.approx(summed_logprob(lm.model, [0] + cont[:-1], cont), abs=1e-4)


def test_pairs_are_encoded_whole_then_split(env):
    """lm-eval's TemplateLM rule for causal models: encode context + continuation as one string;
    the continuation is what follows the context's own tokens. Mid-word, that differs from
    encoding the continuation alone."""
    lm, tok = env["lm"], env["tok"]
    ctx, cont = "import ma", "th.sqrt(x)"
    split = ids(tok, ctx + cont)[len(ids(tok, ctx)) :]
    assert split and split != ids(tok, cont)
    [(ll, _)] = lm.loglikelihood([request("loglikelihood", ctx, cont)])
    seq = ids(tok, ctx) + split
    assert ll == pytest.approx(summed_logprob(lm.model, seq[:-1], split), abs=1e-4)


def test_is_greedy_flag(env):
    lm, tok = env["lm"], env["tok"]
    # tokens that come back as themselves when their text is re-encoded
    whole = [t for t in range(1, tok.get_vocab_size()) if ids(tok, tok.decode([t])) == [t]]
    # a context whose greedy next token is such a token (an untrained model's argmax may not be)
    for ctx in ("def f(x):", "import math", "x = 1", "return total", "for i in range(3):"):
        with torch.no_grad():
            logits = lm.model(torch.tensor([[ids(tok, ctx)]]))[0][0, 0, -1]
        if int(logits.argmax()) in whole:
            break
    best, worst = int(logits.argmax()), min(whole, key=lambda t: logits[t])
    assert best in whole
    out = lm.loglikelihood([request("loglikelihood", ctx, tok.decode([t])) for t in (best, worst)])
    assert [g for _, g in out] == [True, False]


def test_loglikelihood_rolling_matches_direct(env):
    lm, tok = env["lm"], env["tok"]
    short, long = "import math\n", env["docs"][5]["text"]
    toks_short, toks_long = ids(tok, short), ids(tok, long)
    assert len(toks_short) < SEQ_LEN < 3 * SEQ_LEN < len(toks_long)
    got_short, got_long = lm.loglikelihood_rolling([request("loglikelihood_rolling", t) for t in (short, long)])

    assert got_short == pytest.approx(summed_logprob(lm.model, [0] + toks_short[:-1], toks_short), abs=1e-4)
    # Disjoint chunks of SEQ_LEN predicted tokens; each chunk is read with the SEQ_LEN tokens
    # before its last token as input, [EOT] standing before the document.
    seq, want = [0] + toks_long, 0.0
    for start in range(0, len(toks_long), SEQ_LEN):
        stop = min(start + SEQ_LEN, len(toks_long))
        want += summed_logprob(lm.model, seq[max(0, stop - SEQ_LEN) : stop], toks_long[start:stop])
    assert got_long == pytest.approx(want, abs=1e-4)
    # a continuation longer than the context is scored with the same chunks
    [(ll, _)] = lm.loglikelihood([request("loglikelihood", "", long)])
    assert ll == pytest.approx(want, abs=1e-4)


def test_generate_until_is_greedy_and_stops(env):
    lm = env["lm"]
    [free] = lm.generate_until([request("generate_until", "def compute(x):\n", {"until": ["<never>"]})])
    assert isinstance(free, str) and len(free) >= 6
    stop = free[3:5]
    [cut, short] = lm.generate_until(
        [
            request("generate_until", "def compute(x):\n", {"until": ["<never>", stop]}),
            request("generate_until", "def compute(x):\n", {"until": "<never>", "max_gen_toks": 2}),
        ]
    )
    assert cut == free[: free.find(stop)] and stop not in cut
    assert free.startswith(short) and len(short) < len(free)


def test_device_auto_is_the_cpu_without_cuda(env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lm = OptclaimsLM(run_dir=env["run"], tokenizer=env["data"] / "tokenizer.json")  # the default: auto
    assert lm.device == torch.device("cpu") and next(lm.model.parameters()).device.type == "cpu"
    with pytest.raises(ConfigError, match='device = "cuda:0", but no CUDA device'):
        OptclaimsLM(run_dir=env["run"], tokenizer=env["data"] / "tokenizer.json", device="cuda:0")


@pytest.mark.parametrize("value", ["auto", "auto:4", "0", "-2", "1.5", 0])
def test_batch_size_must_be_a_positive_integer(env, value):
    with pytest.raises(ConfigError, match="batch_size") as err:
        OptclaimsLM.create_from_arg_string(
            f"run_dir={env['run']},tokenizer={env['data'] / 'tokenizer.json'}", {"batch_size": value, "device": "cpu"}
        )
    assert repr(value) in str(err.value)


def test_batch_size_as_lm_eval_passes_it(env):
    args = f"run_dir={env['run']},tokenizer={env['data'] / 'tokenizer.json'}"
    assert OptclaimsLM.create_from_arg_string(args, {"batch_size": "8", "device": "cpu"}).batch_size == 8
    with pytest.raises(ConfigError, match="max_batch_size = 32"):
        OptclaimsLM.create_from_arg_string(args, {"batch_size": "auto", "max_batch_size": 32, "device": "cpu"})


def test_wrong_paths_are_named(env, tmp_path):
    tokenizer = env["data"] / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match=re.escape(f"tokenizer {tmp_path / 'nope.json'}: no such file")):
        OptclaimsLM(run_dir=env["run"], tokenizer=tmp_path / "nope.json", device="cpu")
    with pytest.raises(FileNotFoundError, match=re.escape(f"run_dir = {tmp_path / 'nope'}: no such directory")):
        OptclaimsLM(run_dir=tmp_path / "nope", tokenizer=tokenizer, device="cpu")
    with pytest.raises(FileNotFoundError, match=re.escape(f"run_dir = {tmp_path} holds no summary.json")):
        OptclaimsLM(run_dir=tmp_path, tokenizer=tokenizer, device="cpu")


def lm_eval_args(*argv):
    from lm_eval._cli import HarnessCLI

    return HarnessCLI()._parser.parse_args(["run", *argv])


def test_the_lm_eval_command_defaults_the_optclaims_device_to_auto(env, tmp_path):
    model = ["--model_args", f"run_dir={env['run']},tokenizer={env['data'] / 'tokenizer.json'}", "--tasks", "x"]
    args = lm_eval_args("--model", "optclaims", *model)
    prepare_optclaims_run(args)
    assert args.device == "auto"  # not lm-eval's own default, cuda:0
    args = lm_eval_args("--model", "optclaims", *model, "--device", "cpu")
    prepare_optclaims_run(args)
    assert args.device == "cpu"
    config = tmp_path / "config.yaml"  # a device in the --config file is the user's choice too
    config.write_text("model: optclaims\ndevice: cpu\n")
    args = lm_eval_args("--config", str(config), *model)
    prepare_optclaims_run(args)
    assert args.device is None
    args = lm_eval_args("--model", "hf", "--model_args", "pretrained=gpt2", "--tasks", "x")
    prepare_optclaims_run(args)
    assert args.device is None  # lm-eval's other models keep lm-eval's defaults


def test_the_lm_eval_command_checks_the_model_arguments(env):
    run, tokenizer = env["run"], env["data"] / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match=re.escape(f"run_dir = {run}x: no such directory")):
        prepare_optclaims_run(lm_eval_args("--model", "optclaims", "--model_args", f"run_dir={run}x,tokenizer={tokenizer}"))
    with pytest.raises(ConfigError, match="batch_size = 'auto'"):
        prepare_optclaims_run(lm_eval_args("--model", "optclaims", "--model_args", f"run_dir={run},tokenizer={tokenizer}",
                                           "--batch_size", "auto"))
    with pytest.raises(ConfigError, match="give it as --batch_size"):
        prepare_optclaims_run(lm_eval_args("--model", "optclaims", "--model_args",
                                           f"run_dir={run},tokenizer={tokenizer},batch_size=4"))
    with pytest.raises(ConfigError, match="lacks tokenizer"):
        prepare_optclaims_run(lm_eval_args("--model", "optclaims", "--model_args", f"run_dir={run}"))


def test_build_tasks_deterministic_and_gold_right(env, tmp_path):
    val = env["data"] / "corpus" / "val.jsonl"
    out = tmp_path / "tasks"
    info = build_tasks(val, out, n_docs=5, n_cloze=30, n_choices=4, snippet_chars=200, max_doc_chars=300)
    assert info["tasks"] == ["optclaims_ppl", "optclaims_cloze"] and info["n_cloze"] == 30
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    build_tasks(val, out, n_docs=5, n_cloze=30, n_choices=4, snippet_chars=200, max_doc_chars=300)
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == first
    assert not any(name.endswith(".tmp") for name in first)

    ppl = [json.loads(line) for line in (out / "optclaims_ppl.jsonl").read_text().splitlines()]
    assert [r["path"] for r in ppl] == [d["path"] for d in env["docs"][:5]]
    assert all(len(r["text"]) <= 300 and r["text"].endswith("\n") for r in ppl)

    sources = {d["path"]: d["text"].splitlines() for d in env["docs"]}
    rows = [json.loads(line) for line in (out / "optclaims_cloze.jsonl").read_text().splitlines()]
    for row in rows:
        lines = sources[row["path"]]
        assert row["choices"][row["gold"]] == lines[row["line"]].rstrip()
        assert len(row["choices"]) == 4 and len({c.strip() for c in row["choices"]}) == 4
        assert "".join(line + "\n" for line in lines[: row["line"]]).endswith(row["context"])
        assert len(row["context"]) <= 200
    assert len({r["gold"] for r in rows}) > 1  # shuffled, not always in one slot

    other = build_tasks(val, tmp_path / "seed1", n_docs=5, n_cloze=30, seed=1)
    assert other["n_cloze"] == 30
    assert (tmp_path / "seed1" / "optclaims_cloze.jsonl").read_bytes() != first["optclaims_cloze.jsonl"]


def test_evaluate_run_end_to_end(env, tmp_path):
    tasks_dir = tmp_path / "tasks"
    build_tasks(env["data"] / "corpus" / "val.jsonl", tasks_dir, n_docs=6, n_cloze=20, max_doc_chars=400)
    out = tmp_path / "eval" / "eval.json"
    start = time.time()
    rec = evaluate_run(
        env["run"], env["data"] / "tokenizer.json", tasks_dir, ["optclaims_ppl", "optclaims_cloze"], out,
        limit=20, batch_size=8,
    )
    print(f"evaluate_run (both tasks, limit 20): {time.time() - start:.2f} s")
    assert json.loads(out.read_text()) == rec
    assert rec["status"] == "ok" and rec["run_id"] == "run_ok"
    ppl, cloze = rec["results"]["optclaims_ppl"], rec["results"]["optclaims_cloze"]
    assert 0.0 <= cloze["acc,none"] <= 1.0 and 0.0 <= cloze["acc_norm,none"] <= 1.0
    assert rec["n_samples"]["optclaims_cloze"]["effective"] == 20

    # bits per byte recomputed from the adapter's own document log-likelihoods
    docs = [json.loads(line)["text"] for line in (tasks_dir / "optclaims_ppl.jsonl").read_text().splitlines()]
    lls = env["lm"].loglikelihood_rolling([request("loglikelihood_rolling", d) for d in docs])
    n_bytes = sum(len(d.encode()) for d in docs)
    assert ppl["bits_per_byte,none"] == pytest.approx(-sum(lls) / n_bytes / math.log(2), rel=1e-5)
    assert ppl["byte_perplexity,none"] > 1.0 and ppl["word_perplexity,none"] > 1.0


def test_diverged_run_is_recorded_not_evaluated(env, tmp_path):
    tasks_dir = tmp_path / "tasks"
    build_tasks(env["data"] / "corpus" / "val.jsonl", tasks_dir, n_docs=2, n_cloze=4)
    run = tmp_path / "run_bad"
    run.mkdir()  # no checkpoint: evaluating would fail
    (run / "summary.json").write_text(json.dumps({"status": "diverged"}))
    rec = evaluate_run(run, env["data"] / "tokenizer.json", tasks_dir, ["optclaims_ppl"], tmp_path / "eval.json")
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved == rec and saved["status"] == "diverged" and saved["results"] is None


def test_unknown_task_lists_local_tasks(env, tmp_path):
    tasks_dir = tmp_path / "tasks"
    build_tasks(env["data"] / "corpus" / "val.jsonl", tasks_dir, n_docs=2, n_cloze=4)
    with pytest.raises(ValueError, match="optclaims_cloze") as err:
        evaluate_run(env["run"], env["data"] / "tokenizer.json", tasks_dir, ["nope"], tmp_path / "eval.json")
    assert "nope" in str(err.value)
    assert not (tmp_path / "eval.json").exists()


def test_hub_task_offline_fails_in_one_plain_line(env, tmp_path, monkeypatch):
    tasks_dir = tmp_path / "tasks"
    build_tasks(env["data"] / "corpus" / "val.jsonl", tasks_dir, n_docs=2, n_cloze=4)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError) as err:
        evaluate_run(
            env["run"], env["data"] / "tokenizer.json", tasks_dir, ["optclaims_ppl"], tmp_path / "eval.json",
            hub_tasks=["lambada_openai"],
        )
    msg = str(err.value)
    assert "\n" not in msg and "lambada_openai" in msg and "hub is unreachable" in msg
    assert not (tmp_path / "eval.json").exists()


def test_registered_with_lm_eval(env):
    from lm_eval.api.registry import get_model

    assert get_model("optclaims") is OptclaimsLM
    assert get_model("dummy").__name__ == "DummyLM"  # lm-eval's own models still resolve


def readme_lm_eval_command() -> str:
    [command] = re.findall(r"`(optclaims-lm-eval run [^`]*)`", README.read_text())
    return command


def lm_eval_command_line(command: str, run: Path, data: Path) -> list[str]:
    """The README's command with its placeholders filled in, run with the installed script: the one
    beside this interpreter (its venv's), else the one on PATH (a ``pip install --target`` puts it in
    the target's bin/, as run-gpu.sh does on the GPU host)."""
    argv = shlex.split(command.replace("RUN", str(run)).replace("DATA", str(data)))
    script = shutil.which("optclaims-lm-eval", path=str(Path(sys.executable).parent)) or shutil.which("optclaims-lm-eval")
    assert script, "optclaims-lm-eval is installed neither beside this interpreter nor on PATH"
    return [script, *argv[1:]]


def test_lm_eval_cli_with_the_optclaims_model(env, tmp_path):
    """The README's lm-eval command, as written, on a machine without CUDA: lm-eval's own command
    line (with our model registered) runs a local task on a checkpoint."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(env["data"] / "tokenizer.json", data / "tokenizer.json")
    build_tasks(env["data"] / "corpus" / "val.jsonl", data / "tasks", n_docs=3, n_cloze=4, max_doc_chars=300)
    argv = lm_eval_command_line(readme_lm_eval_command(), env["run"], data) + ["--limit", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=CPU_ONLY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bits_per_byte" in proc.stdout


def test_lm_eval_cli_names_a_wrong_tokenizer_path_at_once(env, tmp_path):
    argv = lm_eval_command_line(readme_lm_eval_command(), env["run"], tmp_path)  # no tokenizer, no tasks there
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=CPU_ONLY, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"optclaims-lm-eval: error: tokenizer {tmp_path}/tokenizer.json: no such file"
    assert "Traceback" not in proc.stderr and "Selected Tasks" not in proc.stderr  # before any task was loaded
