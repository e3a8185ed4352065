"""Shared fixtures: a tiny data set built by the real data stage, and a small run config."""

from pathlib import Path

import pytest

from optclaims.data.corpus import build_corpus
from optclaims.data.shards import tokenize_corpus
from optclaims.data.tokenizer import train_tokenizer
from optclaims.runs import make_run_config

TINY_VOCAB = 320


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """<data_dir>/{corpus,tokenizer.json,tokens} from 300 kB of the interpreter's own source."""
    data = tmp_path_factory.mktemp("data")
    build_corpus("pycode", data / "corpus", max_bytes=300_000, val_fraction=0.2)
    train_tokenizer(data / "corpus", data / "tokenizer.json", vocab_size=TINY_VOCAB)
    tokenize_corpus(data / "corpus", data / "tokenizer.json", data / "tokens")
    return data


@pytest.fixture
def tiny_run():
    def make(**fields):
        return make_run_config({
            "data": "tiny", "vocab_size": TINY_VOCAB, "optimizer": "adamw", "d_model": 32, "n_layers": 2,
            "n_heads": 2, "seq_len": 32, "batch_size": 4, "steps": 30, "warmup_steps": 3, "lr": 3e-3,
            "log_every": 5, "eval_every": 10, "ckpt_every": 10, "val_batches": 2, "seed": 0, **fields})
    return make


class Killed(Exception):
    """What ``kill_at`` raises inside the training loop, as a kill would end it."""


@pytest.fixture
def kill_at(monkeypatch):
    """kill_at(n): the next training loop dies when it asks for the batches of step n (0-based, so
    after n steps and any checkpoint written at step n), once; a later call trains normally."""
    from optclaims import train

    def arm(n: int) -> type[Killed]:
        real, fired = train._member_batches, []

        def batches(data, cfgs, step, device):
            if step == n and not fired:
                fired.append(step)
                raise Killed(f"killed before step {n + 1}")
            return real(data, cfgs, step, device)

        monkeypatch.setattr(train, "_member_batches", batches)
        return Killed

    return arm
