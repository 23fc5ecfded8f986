"""Train the byte-level BPE tokenizer (HF tokenizers) on the driver.

Byte-level means every byte has a token, so no text is ever out of vocabulary. The two
special tokens come first, so their ids are fixed: ``<|endoftext|>`` = 0 separates
documents in the packed stream, ``<|pad|>`` = 1 pads batches in fine-tuning.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, PAD]


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2):
    """A trained tokenizers.Tokenizer; ``texts`` is consumed once (an iterator is fine)."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise RuntimeError("tokenizer training needs tokenizers: pip install 'crawl2model[spark]'") from exc
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"--vocab-size {vocab_size} is below the 256 byte tokens + specials; "
                         "use 512 or more")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def special_ids(tokenizer) -> tuple[int, int]:
    eos, pad = tokenizer.token_to_id(EOS), tokenizer.token_to_id(PAD)
    if eos is None or pad is None:
        raise ValueError(f"tokenizer lacks {EOS} or {PAD}; train it with spark_jobs.tokenize.bpe.train_bpe")
    return eos, pad


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
