"""Byte-level BPE tokenizer (GPT-2 style) trained on a corpus's train split.

Byte level means every string is encodable and decode(encode(text)) == text exactly.
The single special token <|endoftext|> has id 0; the shard writer inserts it between
documents, while a literal "<|endoftext|>" inside a document is encoded as plain text.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .corpus import atomic_output, read_text_batches

EOT = "<|endoftext|>"


def train_tokenizer(corpus_dir: Path, out_path: Path, vocab_size: int = 8192) -> None:
    """Train a byte-level BPE of at most vocab_size tokens on corpus_dir/train.jsonl."""
    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + {EOT}), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],  # first special token -> id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )
    tok.train_from_iterator(read_text_batches(corpus_dir, "train"), trainer=trainer)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path) as tmp:
        tok.save(str(tmp))


def load_tokenizer(path: Path) -> Tokenizer:
    if not Path(path).is_file():  # the tokenizers library's own error names no path
        raise FileNotFoundError(f"tokenizer {path}: no such file")
    tok = Tokenizer.from_file(str(path))
    # Not stored in tokenizer.json: treat "<|endoftext|>" inside text as text, not as EOT.
    tok.encode_special_tokens = True
    return tok


def eot_id(tok: Tokenizer) -> int:
    token_id = tok.token_to_id(EOT)
    if token_id is None:
        raise ValueError(f"tokenizer has no {EOT} token")
    return token_id
