"""Data stage: corpus -> byte-level BPE tokenizer -> flat token shards.

Names are imported lazily so that `parse_corpus_spec` (used to validate configs) does not
pull in torch or tokenizers.
"""

from importlib import import_module

_EXPORTS = {
    "parse_corpus_spec": "corpus",
    "build_corpus": "corpus",
    "read_documents": "corpus",
    "EOT": "tokenizer",
    "train_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "eot_id": "tokenizer",
    "tokenize_corpus": "shards",
    "TokenShard": "shards",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
