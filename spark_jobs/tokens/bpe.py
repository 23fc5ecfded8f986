"""The byte-level BPE tokenizer (HF tokenizers), trained on the driver.

Byte-level means every byte has a token, so no text is ever out of vocabulary. The two
special tokens come first, so their ids are fixed: ``<|endoftext|>`` = 0 separates
documents in the packed stream, ``<|pad|>`` = 1 pads batches in fine-tuning.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2):
    """A trained byte-level BPE (see :mod:`spark_jobs.tokens.trainers` for the other families)."""
    from ops.lake.vocab import BPE
    from spark_jobs.tokens.trainers import train_tokenizer

    return train_tokenizer(texts, BPE, vocab_size, min_frequency=min_frequency)


def special_ids(tokenizer) -> tuple[int, int]:
    eos, pad = tokenizer.token_to_id(EOS), tokenizer.token_to_id(PAD)
    if eos is None or pad is None:
        raise ValueError(f"tokenizer lacks {EOS} or {PAD}; train it with spark_jobs.tokens.bpe.train_bpe")
    return eos, pad


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
