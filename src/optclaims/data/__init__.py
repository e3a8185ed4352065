"""Data stage: corpus (``corpus``, pinned package sources in ``pinned``) -> byte-level BPE
tokenizer (``tokenizer``) -> flat token shards (``shards``). Import from the submodule:
``corpus`` pulls in neither torch nor tokenizers, so configs validate without them."""
