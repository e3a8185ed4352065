"""Token shards: each split of a corpus as one flat array of token ids, and a sampler over it.

Layout of out_dir/<split>.bin: raw little-endian uint16 (uint32 if the vocabulary is larger
than 65536) ids, no header; each document is followed by <|endoftext|>:
    doc_1 EOT doc_2 EOT ... doc_n EOT
out_dir/shards.json records the dtype, token and byte counts and checksums.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_output, file_sha256, write_json
from ..errors import CorruptFileError
from .corpus import read_text_batches
from .tokenizer import eot_id, load_tokenizer

SPLITS = ("train", "val")
ENCODE_BATCH_DOCS = 512


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def tokenize_corpus(corpus_dir: Path, tokenizer_path: Path, out_dir: Path) -> dict:
    """Encode corpus_dir/{train,val}.jsonl into out_dir/{train,val}.bin and out_dir/shards.json."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(tokenizer_path)
    dtype = token_dtype(tok.get_vocab_size())
    splits = {split: _write_split(tok, corpus_dir, split, out_dir / f"{split}.bin", dtype) for split in SPLITS}
    manifest = json.loads((corpus_dir / "manifest.json").read_text(encoding="utf-8"))
    info = {
        "dtype": dtype.name,
        "vocab_size": tok.get_vocab_size(),
        "splits": splits,
        "tokenizer_sha256": hashlib.sha256(Path(tokenizer_path).read_bytes()).hexdigest(),
        "corpus_hash": manifest["hash"],
    }
    write_json(out_dir / "shards.json", info)
    return info


def _write_split(tok, corpus_dir: Path, split: str, bin_path: Path, dtype: np.dtype) -> dict:
    eot = eot_id(tok)
    n_tokens = n_bytes = 0
    digest = hashlib.sha256()
    with atomic_output(bin_path) as tmp, open(tmp, "wb") as f:
        for texts in read_text_batches(corpus_dir, split, ENCODE_BATCH_DOCS):
            ids: list[int] = []
            for enc in tok.encode_batch_fast(texts, add_special_tokens=False):
                ids.extend(enc.ids)
                ids.append(eot)
            chunk = np.asarray(ids, dtype=dtype).tobytes()
            f.write(chunk)
            digest.update(chunk)
            n_tokens += len(ids)
            n_bytes += sum(len(t.encode("utf-8")) for t in texts)
    return {"n_tokens": n_tokens, "n_bytes": n_bytes, "sha256": digest.hexdigest()}


class TokenShard:
    """One split of a token-shard directory, memory-mapped read-only. ``verify`` checks the file
    against the sha256 shards.json records (a training job does, before its first step)."""

    def __init__(self, shard_dir: Path, split: str, verify: bool = False):
        shard_dir = Path(shard_dir)
        info = json.loads((shard_dir / "shards.json").read_text(encoding="utf-8"))
        if split not in info["splits"]:
            raise ValueError(f"no split {split!r} in {shard_dir}; have {sorted(info['splits'])}")
        self.split = split
        self.vocab_size: int = info["vocab_size"]
        self.n_bytes: int = info["splits"][split]["n_bytes"]
        dtype = np.dtype(info["dtype"])
        n_tokens = info["splits"][split]["n_tokens"]
        path = shard_dir / f"{split}.bin"
        # np.memmap cannot map an empty file
        self.tokens = np.memmap(path, dtype=dtype, mode="r") if n_tokens else np.zeros(0, dtype)
        if len(self.tokens) != n_tokens:
            raise CorruptFileError(f"{path} holds {len(self.tokens)} tokens, shards.json says {n_tokens}: truncated "
                                   "or overwritten; delete the token shards and rerun to rebuild them")
        if verify:
            actual = file_sha256(path)
            if actual != info["splits"][split]["sha256"]:
                raise CorruptFileError(f"{path} does not match its checksum in shards.json (sha256 {actual[:12]}…, "
                                       f"recorded {info['splits'][split]['sha256'][:12]}…); delete the token shards "
                                       "and rerun to rebuild them")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of text per token: bits/byte = (nats/token) / (ln 2 * bytes_per_token)."""
        return self.n_bytes / len(self) if len(self) else float("nan")

    def batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows (x, y = x shifted by one) that depend only on (seed, step).

        Because no sampler state carries over between steps, a resumed run sees exactly the
        batches an uninterrupted one would.
        """
        self._check_fits(seq_len)
        rng = np.random.default_rng([seed, step])
        starts = rng.integers(0, len(self) - seq_len, size=batch_size)
        return self._windows(starts, seq_len)

    def eval_batches(self, n_batches: int, batch_size: int, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed set of non-overlapping windows spread evenly over the split.

        Asks for n_batches * batch_size windows; a short split gives fewer (the last batch
        may then be smaller than batch_size).
        """
        self._check_fits(seq_len)
        window = seq_len + 1
        n_windows = min(n_batches * batch_size, len(self) // window)
        # Evenly spaced starts; the spacing is >= window because n_windows * window <= len.
        span = len(self) - window
        starts = np.array([i * span // max(n_windows - 1, 1) for i in range(n_windows)], dtype=np.int64)
        return [self._windows(starts[i:i + batch_size], seq_len) for i in range(0, n_windows, batch_size)]

    def _windows(self, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(self.tokens[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int64)
        windows = torch.from_numpy(rows)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def _check_fits(self, seq_len: int) -> None:
        if len(self) < seq_len + 1:
            raise ValueError(
                f"{self.split} split has {len(self)} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                f"use a shorter seq_len or a larger corpus"
            )
